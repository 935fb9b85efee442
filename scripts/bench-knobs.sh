#!/usr/bin/env bash
# scripts/bench-knobs.sh — paired runs of the Go runtime's start-up knobs (issue 15,
# docs/benchmarks.md "Paired runs").
#
#   scripts/bench-knobs.sh [MAJOR] [BASE_REV]
#
# Builds, for PostgreSQL MAJOR (18 or 19, default 18), the production module of this tree
# and variants of it that each leave one knob out, plus the module and the Go no-op of
# BASE_REV (default 13857f8, the last commit before the knobs) from a scratch worktree,
# then logs in to all of them side by side on one server with BenchmarkLoginAB (shuffled
# order, each login after the previous backend is gone). OJW_AB_ROUNDS sets the rounds
# (default here 400); RUNS the number of such runs (default 3). Output: one table per run,
# p50 and p99 per library and the p50 ratio to the C no-op of the same run.
#
# Variants (all from this tree's sources, only the knob differs):
#   new_jwt / new_go     this tree's oauth_jwt and Go no-op, as `make` builds them
#   no_godebug_jwt       the archive without memprofilerate=0,decoratemappings=0
#   no_arena_jwt         cshim/oauth_jwt_start.c without mallopt(M_ARENA_MAX, 1)
#   no_stack_jwt         linked without --wrap=pthread_getattr_np (glibc reads /proc/self/maps)
#   no_narrow_jwt        the runtime's threads not narrowed to one CPU at all
#   base_jwt / base_go   BASE_REV's builds (the main thread pinned while the runtime starts)
set -euo pipefail

major=${1:-18}
base_rev=${2:-13857f8}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
out=$repo/build/knobs/$major
mkdir -p "$out"
log() { printf 'bench-knobs: %s\n' "$*" >&2; }

pgc=$(PG_CONFIG= "$repo/scripts/pg.sh" "$major")
cd "$repo"
make -s test-modules PG_MAJOR="$major" PG_CONFIG="$pgc" >/dev/null

# The compiler flags make uses for the shim of this major (printed by make -n).
plan=$(make -n -B test-modules PG_MAJOR="$major" PG_CONFIG="$pgc" 2>/dev/null)
cc=$(sed -n "s|^\([^ ]*gcc\) .* -c cshim/oauth_jwt_start.c -o build/$major/test/oauth_jwt_start.o$|\1|p" <<<"$plan" | head -n1)
cflags=$(sed -n "s|^[^ ]*gcc \(.*\) -c cshim/oauth_jwt_start.c -o build/$major/test/oauth_jwt_start.o$|\1|p" <<<"$plan" | head -n1)
[ -n "$cc" ] && [ -n "$cflags" ] || { log "cannot read the compiler flags from make -n"; exit 1; }
ldflags=$(sed -n "s|^[^ ]*gcc -shared -o build/$major/oauth_jwt.so build/$major/oauth_jwt.o \(.*\) build/libojw.a .*|\1|p" <<<"$plan" | head -n1)
tail_ld="-Wl,--version-script=cshim/exports.map -Wl,-z,nodelete"

# link NAME ARCHIVE START_OBJ WRAPS...: the production shim object with an archive and a start object.
link() {
	local name=$1 archive=$2 start=$3; shift 3
	# shellcheck disable=SC2086
	"$cc" -shared -o "$out/$name.so" "build/$major/oauth_jwt.o" $ldflags "$archive" "$start" \
		"build/$major/test/oauth_jwt_late.o" $tail_ld "$@" -lpthread
}
wrap_all="-Wl,--wrap=pthread_create -Wl,--wrap=pthread_getattr_np"

cp "build/$major/oauth_jwt.so" "$out/new_jwt.so"
cp "build/$major/test/oauth_gonoop.so" "$out/new_go.so"

log "no_godebug: archive without memprofilerate=0,decoratemappings=0"
CGO_ENABLED=1 CGO_CFLAGS="-O2 -g" go build -buildmode=c-archive -trimpath -tags netgo,osusergo,ojw_backend \
	-ldflags='-X=runtime.godebugDefault=asyncpreemptoff=1,updatemaxprocs=0' -o "$out/godebug-old.a" ./validator/capi
# shellcheck disable=SC2086
link no_godebug_jwt "$out/godebug-old.a" "build/$major/test/oauth_jwt_start.o" $wrap_all

log "no_arena: no mallopt"
sed 's/^\t(void) mallopt(M_ARENA_MAX, 1);$/\t\/* knob left out *\//' cshim/oauth_jwt_start.c >"$out/start-noarena.c"
! grep -q 'mallopt(M_ARENA' "$out/start-noarena.c" || { log "sed missed the mallopt line"; exit 1; }
# shellcheck disable=SC2086
"$cc" $cflags -Icshim -c "$out/start-noarena.c" -o "$out/start-noarena.o"
# shellcheck disable=SC2086
link no_arena_jwt build/libojw.a "$out/start-noarena.o" $wrap_all

log "no_stack: glibc's pthread_getattr_np"
sed 's/__real_pthread_getattr_np/pthread_getattr_np/g; s/__wrap_pthread_getattr_np/ojw_unused_getattr_np/g' \
	cshim/oauth_jwt_start.c >"$out/start-nostack.c"
# shellcheck disable=SC2086
"$cc" $cflags -Icshim -c "$out/start-nostack.c" -o "$out/start-nostack.o"
link no_stack_jwt build/libojw.a "$out/start-nostack.o" -Wl,--wrap=pthread_create

log "no_narrow: threads keep the loading thread's CPUs"
sed 's/^\tcpu = sched_getcpu();$/\tcpu = -1;/' cshim/oauth_jwt_start.c >"$out/start-nonarrow.c"
grep -q '^	cpu = -1;$' "$out/start-nonarrow.c" || { log "sed missed the sched_getcpu line"; exit 1; }
# shellcheck disable=SC2086
"$cc" $cflags -Icshim -c "$out/start-nonarrow.c" -o "$out/start-nonarrow.o"
# shellcheck disable=SC2086
link no_narrow_jwt build/libojw.a "$out/start-nonarrow.o" $wrap_all

log "base: $base_rev"
wt=$repo/build/knobs/base-$base_rev
if [ ! -f "$wt/build/$major/oauth_jwt.so" ]; then
	[ -d "$wt" ] || git worktree add --detach "$wt" "$base_rev" >/dev/null
	make -s -C "$wt" test-modules PG_MAJOR="$major" PG_CONFIG="$pgc" >/dev/null
fi
cp "$wt/build/$major/oauth_jwt.so" "$out/base_jwt.so"
cp "$wt/build/$major/test/oauth_gonoop.so" "$out/base_go.so"

mods=
for m in base_jwt new_jwt no_godebug_jwt no_arena_jwt no_stack_jwt no_narrow_jwt base_go new_go; do
	mods="$mods${mods:+,}$m=$out/$m.so"
done
for run in $(seq 1 "${RUNS:-3}"); do
	log "run $run of ${RUNS:-3}"
	OJW_AB_ROUNDS=${OJW_AB_ROUNDS:-400} OJW_AB_MODULES=$mods OJW_PG_CONFIG=$pgc OJW_BUILD_DIR=$repo/build/$major \
		go test -count=1 -run '^$' -bench LoginAB -benchtime 1x -v ./test/integration/ |
		grep -E '^\s+(\||[0-9]+ rounds)|FAIL|Error' || true
done
