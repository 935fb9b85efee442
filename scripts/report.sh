#!/usr/bin/env bash
# scripts/report.sh - regenerate docs/report.md and docs/latency-<major>.png, the
# benchmark, load, soak, fault, hostile-input and confidentiality report
# (issue 6, "Under load and under fire"), for every PostgreSQL major in TEST_MAJORS.
#
#   make report            (the Makefile target: test-modules for every major, then this)
#   scripts/report.sh      (after `make test-modules` for every major)
#
# It runs, against each major in turn, on this machine and on loopback only:
#   1. BenchmarkConnectionLatency (test/integration), OJW_BENCH_CONNECTIONS logins per kind one
#      at a time, then OJW_BENCH_THROUGHPUT_LOGINS per kind from OJW_BENCH_CLIENTS clients
#      (defaults in test/integration/bench_test.go; OJW_BENCH_SEED repeats a run's order);
#   2. test/load: the connection-churn load and the soak (sizes from OJW_LOAD_* and
#      OJW_SOAK_*, defaults 100 oauth_jwt clients for 60 s and a 3-minute soak);
#   3. test/faults, test/hostile and test/zz_confidentiality;
# each writing its figures as JSON (the types of test/results) into $OUT/<major>,
# then scripts/plot turns them into the report. About 8 minutes per major on two cores.
# A failing test still leaves its figures; the script then exits non-zero
# after writing the report, so that a failure is seen and documented.
#
# Environment: TEST_MAJORS (default "18 19"); PG_CONFIG (used for the major it names;
# the others come from scripts/pg.sh, which finds or builds them), OUT (default
# build/report), DOCS (default docs), GO (default go).
set -uo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
OUT=${OUT:-build/report}
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
DOCS=${DOCS:-docs}
MAJORS=${TEST_MAJORS:-18 19}

declare -A pgc
for major in $MAJORS; do
	if [ -n "${PG_CONFIG:-}" ] && [ "$("$PG_CONFIG" --version 2>/dev/null | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p')" = "$major" ]; then
		pgc[$major]=$PG_CONFIG
	else
		pgc[$major]=$(PG_CONFIG= scripts/pg.sh "$major") || { echo "report.sh: no PostgreSQL $major (scripts/pg.sh failed)" >&2; exit 1; }
	fi
	for f in build/$major/oauth_jwt.so build/$major/oauth_jwt_fetch build/$major/test/oauth_jwt.so build/$major/test/oauth_jwt_fetch build/$major/test/oauth_noop.so build/$major/test/oauth_gonoop.so; do
		[ -f "$f" ] || { echo "report.sh: $f is missing: run \`make test-modules PG_MAJOR=$major\` first (make report does)" >&2; exit 1; }
	done
done

status=0
for major in $MAJORS; do
	out=$OUT/$major
	echo "=== PostgreSQL $major: ${pgc[$major]}" >&2
	export OJW_PG_CONFIG="${pgc[$major]}" OJW_BUILD_DIR="$PWD/build/$major"
	mkdir -p "$out"
	rm -f "$out"/*.json "$out"/*.log
	run() { # name, then the command
		local name=$1; shift
		echo "== $name" >&2
		if ! "$@" >"$out/$name.log" 2>&1; then
			echo "report.sh: PostgreSQL $major: $name FAILED (see $out/$name.log)" >&2
			grep -E '^\s*--- FAIL|^FAIL|_test.go:[0-9]+:' "$out/$name.log" | head -20 >&2
			status=1
		fi
	}
	run bench env OJW_BENCH_OUT="$out/bench.json" OJW_BENCH_CONNECTIONS="${OJW_BENCH_CONNECTIONS:-300}" \
		"$GO" test -count=1 -run '^$' -bench ConnectionLatency -benchtime 1x -v ./test/integration/
	run load env OJW_LOAD_OUT="$out/load.json" OJW_SOAK_OUT="$out/soak.json" \
		"$GO" test -count=1 -timeout 30m -v ./test/load/
	run faults env OJW_FAULTS_OUT="$out/faults.json" "$GO" test -count=1 -timeout 20m -v ./test/faults/
	run hostile env OJW_HOSTILE_OUT="$out/hostile.json" "$GO" test -count=1 -timeout 20m -v ./test/hostile/
	run leak env OJW_LEAK_OUT="$out/leak.json" "$GO" test -count=1 -timeout 20m -v ./test/zz_confidentiality/
done

echo "== report" >&2
"$GO" run ./scripts/plot -in "$OUT" -majors "$MAJORS" -out "$DOCS" || status=1
exit $status
