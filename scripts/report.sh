#!/usr/bin/env bash
# scripts/report.sh - regenerate docs/report.md and docs/latency.png, the
# benchmark, load, soak, fault, hostile-input and confidentiality report
# (issue 6, "Under load and under fire").
#
#   make report            (the Makefile target: report: test-modules; scripts/report.sh)
#   scripts/report.sh      (after `make test-modules`)
#
# It runs, on this machine and on loopback only:
#   1. BenchmarkConnectionLatency (test/integration), OJW_BENCH_CONNECTIONS logins per kind;
#   2. test/load: the connection-churn load and the soak (sizes from OJW_LOAD_* and
#      OJW_SOAK_*, defaults 100 oauth_jwt clients for 60 s and a 3-minute soak);
#   3. test/faults, test/hostile and test/zz_confidentiality;
# each writing its figures as JSON into $OUT (default build/report), then
# scripts/plot turns them into the report. About 8 minutes on two cores.
# A failing test still leaves its figures; the script then exits non-zero
# after writing the report, so that a failure is seen and documented.
#
# Environment: PG_CONFIG (a PostgreSQL 18 or 19 pg_config; otherwise scripts/pg.sh
# finds or builds PG_MAJOR, default 18), OUT, DOCS (default docs), GO (default go).
set -uo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
OUT=${OUT:-build/report}
DOCS=${DOCS:-docs}
if [ -z "${PG_CONFIG:-}" ] || ! "$PG_CONFIG" --version 2>/dev/null | grep -Eq '^PostgreSQL (18|19)'; then
	PG_CONFIG=$(PG_CONFIG= scripts/pg.sh "${PG_MAJOR:-18}") || { echo "report.sh: no PostgreSQL ${PG_MAJOR:-18} (scripts/pg.sh failed)" >&2; exit 1; }
fi
major=$("$PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p')
for f in build/$major/oauth_jwt.so build/$major/oauth_jwt_fetch build/$major/test/oauth_jwt.so build/$major/test/oauth_jwt_fetch build/$major/test/oauth_noop.so build/$major/test/oauth_gonoop.so; do
	[ -f "$f" ] || { echo "report.sh: $f is missing: run \`make test-modules\` first (make report does)" >&2; exit 1; }
done

export OJW_PG_CONFIG="$PG_CONFIG" OJW_BUILD_DIR="$PWD/build/$major"
mkdir -p "$OUT"
rm -f "$OUT"/bench.md "$OUT"/*.json
status=0
run() { # name, then the command
	local name=$1; shift
	echo "== $name" >&2
	if ! "$@" >"$OUT/$name.log" 2>&1; then
		echo "report.sh: $name FAILED (see $OUT/$name.log)" >&2
		grep -E '^\s*--- FAIL|^FAIL|_test.go:[0-9]+:' "$OUT/$name.log" | head -20 >&2
		status=1
	fi
}

run bench env OJW_BENCH_OUT="$PWD/$OUT/bench.md" OJW_BENCH_CONNECTIONS="${OJW_BENCH_CONNECTIONS:-300}" \
	"$GO" test -count=1 -run '^$' -bench ConnectionLatency -benchtime 1x -v ./test/integration/
run load env OJW_LOAD_OUT="$PWD/$OUT/load.json" OJW_SOAK_OUT="$PWD/$OUT/soak.json" \
	"$GO" test -count=1 -timeout 30m -v ./test/load/
run faults env OJW_FAULTS_OUT="$PWD/$OUT/faults.json" "$GO" test -count=1 -timeout 20m -v ./test/faults/
run hostile env OJW_HOSTILE_OUT="$PWD/$OUT/hostile.json" "$GO" test -count=1 -timeout 20m -v ./test/hostile/
run leak env OJW_LEAK_OUT="$PWD/$OUT/leak.json" "$GO" test -count=1 -timeout 20m -v ./test/zz_confidentiality/

echo "== report" >&2
"$GO" run ./scripts/plot -in "$OUT" -out "$DOCS" || status=1
exit $status
