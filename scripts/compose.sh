#!/usr/bin/env bash
# scripts/compose.sh — a Docker Compose CLI for the compose demo and its test.
#
#   compose.sh path
#       Print the path of a compose CLI: `docker-compose` (v2 or later) on PATH if there is
#       one, else the one built here once from the Go module proxy into the cache
#       (github.com/docker/compose/v5 at $COMPOSE_VERSION, default v5.6.0, the newest whose
#       dependencies the module proxy serves in full; ~1 min of
#       downloads and several minutes of compiling on 2 cores). `go install` refuses that
#       module (its go.mod has exclude directives), so it is downloaded with
#       `go mod download` and built inside the downloaded module, with that module's own
#       go.mod and go.sum (checked against the checksum database like any module).
#   compose.sh [ARGS...]
#       Run that CLI with ARGS (it works standalone; no docker CLI plugin is installed).
#
# Environment: OAUTH_JWT_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/oauth_jwt; the binary
# lands in $OAUTH_JWT_CACHE/compose/<version>/docker-compose), COMPOSE_VERSION, GOPROXY.
set -euo pipefail

version=${COMPOSE_VERSION:-v5.6.0}
cache=${OAUTH_JWT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth_jwt}
dir=$cache/compose/$version
bin=$dir/docker-compose

log() { printf 'compose.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

find_cli() {
	local c
	if c=$(command -v docker-compose 2>/dev/null) && "$c" version --short 2>/dev/null | grep -Eq '^v?[2-9]'; then
		echo "$c"
		return 0
	fi
	if [ -x "$bin" ]; then echo "$bin"; return 0; fi
	return 1
}

build() {
	command -v go >/dev/null || die "go is needed to build the compose CLI"
	mkdir -p "$dir"
	exec 9>"$dir/.lock"
	flock -n 9 || { log "waiting for another build of the compose CLI"; flock 9; }
	[ -x "$bin" ] && return 0
	local t0=$SECONDS src
	log "building docker compose $version from the Go module proxy (log $dir/build.log)"
	# The module may need a newer Go than this one: GOTOOLCHAIN=auto fetches that toolchain
	# (the golang.org/toolchain module) from the same proxy.
	export GOTOOLCHAIN=${COMPOSE_GOTOOLCHAIN:-auto}
	src=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "github.com/docker/compose/v5@$version" 2>>"$dir/build.log" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || true
	[ -n "$src" ] && [ -d "$src" ] || { tail -n 20 "$dir/build.log" >&2; die "go mod download of compose $version failed"; }
	(cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
		-ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$version" \
		-o "$bin.tmp" ./cmd) >>"$dir/build.log" 2>&1 ||
		{ tail -n 20 "$dir/build.log" >&2; die "building compose $version failed (log $dir/build.log)"; }
	mv "$bin.tmp" "$bin"
	log "built $bin in $((SECONDS - t0))s"
}

case "${1:-}" in
path)
	find_cli && exit 0
	build
	echo "$bin"
	;;
-h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2 ;;
*)
	cli=$(find_cli) || { build; cli=$bin; }
	exec "$cli" "$@"
	;;
esac
