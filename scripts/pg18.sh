#!/usr/bin/env bash
# scripts/pg18.sh — kept for old callers: scripts/pg.sh 18 (see there).
exec "$(dirname "${BASH_SOURCE[0]}")/pg.sh" 18 "$@"
