#!/usr/bin/env bash
# scripts/keycloak.sh — a real Keycloak 26 for the end-to-end tests, without Docker.
#
#   keycloak.sh fetch
#       Download org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:tar.gz with mvn into
#       the cache, unpack it once and run `kc.sh build` once (production profile, the
#       build-time options below), so that every start is `kc.sh start --optimized`.
#       Idempotent; a second run takes milliseconds. Prints the Keycloak home directory.
#   keycloak.sh path
#       Print the Keycloak home directory if `fetch` has completed; exit 3 (and say to run
#       `fetch`) if not. Never downloads.
#   keycloak.sh start --port PORT --dir RUNDIR [--realm FILE]... [--mgmt-port PORT]
#                     [--keep-data] [--dev] [--timeout SECONDS] [--watch-pid PID]
#       Start Keycloak on 127.0.0.1:PORT with the hostname pinned to http://127.0.0.1:PORT
#       (so iss = http://127.0.0.1:PORT/realms/<realm> whatever Host header a client
#       sends), management interface (health) on 127.0.0.1:MGMT (default PORT+1),
#       --cache=local, heap -Xms64m -Xmx448m, bootstrap admin admin/admin.
#       Each RUNDIR gets its own Keycloak home (RUNDIR/keycloak-home: symlinks into the
#       shared distribution plus its own data/ and lib/quarkus), so runs never write into
#       the cache. The H2 database starts empty unless --keep-data (then a restart keeps
#       realms, users and signing keys). Realm files (default: test/keycloak/realm-postgres.json
#       and realm-other.json) are imported at start. Log: RUNDIR/keycloak.log, pid (the
#       kc.sh process, leader of its own process group): RUNDIR/keycloak.pid.
#       Waits (default 240 s) until /realms/<first realm>/.well-known/openid-configuration
#       answers, then prints that realm's issuer. On failure prints the log tail and stops.
#       --dev uses `kc.sh start-dev` instead (re-augments on every start: slower).
#       --watch-pid PID: a detached watcher stops this Keycloak once process PID is gone
#       (tests pass their own pid, so a killed test binary leaves no Keycloak behind).
#   keycloak.sh stop --dir RUNDIR
#       TERM the process group, wait up to 30 s, then KILL; wait until the ports are closed.
#
# Environment: OAUTH_JWT_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/oauth_jwt),
# KEYCLOAK_VERSION (default 26.7.3), KEYCLOAK_JAVA_HOME (force a JDK), KEYCLOAK_START_TIMEOUT.
# JDK choice: KEYCLOAK_JAVA_HOME, else the best of $JAVA_HOME, /usr/lib/jvm/*, /opt/*, /opt/*/*:
# 25 first, then 21, then another >= 21, then 17 (Keycloak 26 supports 17, 21 and 25).
# All progress goes to stderr; stdout carries only the result (home dir or issuer).
set -euo pipefail

version=${KEYCLOAK_VERSION:-26.7.3}
cache=${OAUTH_JWT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth_jwt}
kcroot=$cache/keycloak
dist=$kcroot/keycloak-$version
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

# Options fixed at build time (kc.sh build); everything else is given at start.
build_opts=(--db=dev-file --health-enabled=true)
build_stamp="version=$version opts=${build_opts[*]}"

log() { printf 'keycloak: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-2}"; }

# java_major JAVA_HOME -> prints the feature version (17, 21, 25, ...) or nothing.
java_major() {
	local h=$1 v=""
	[ -x "$h/bin/java" ] || return 0
	if [ -f "$h/release" ]; then
		v=$(sed -n 's/^JAVA_VERSION="\([^"]*\)".*/\1/p' "$h/release" | head -n1)
	fi
	if [ -z "$v" ]; then
		v=$("$h/bin/java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
	fi
	v=${v#1.} # 1.8 style
	printf '%s\n' "${v%%[.+-]*}"
}

choose_java() {
	if [ -n "${KEYCLOAK_JAVA_HOME:-}" ]; then
		[ -x "$KEYCLOAK_JAVA_HOME/bin/java" ] || die "KEYCLOAK_JAVA_HOME=$KEYCLOAK_JAVA_HOME has no bin/java"
		export JAVA_HOME=$KEYCLOAK_JAVA_HOME
		return
	fi
	local best="" bestrank=0 h m r
	for h in ${JAVA_HOME:+"$JAVA_HOME"} /usr/lib/jvm/* /opt/* /opt/*/*; do
		[ -d "$h" ] && [ -x "$h/bin/java" ] && [ -x "$h/bin/javac" -o -f "$h/release" ] || continue
		h=$(readlink -f "$h")
		m=$(java_major "$h")
		case "$m" in
		25) r=4 ;; 21) r=3 ;; 17) r=1 ;;
		'' | *[!0-9]*) r=0 ;;
		*) if [ "$m" -gt 21 ]; then r=2; else r=0; fi ;;
		esac
		if [ "$r" -gt "$bestrank" ]; then best=$h; bestrank=$r; fi
	done
	if [ -z "$best" ] && command -v java >/dev/null; then
		h=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
		m=$(java_major "$h")
		if [ -n "$m" ] && [ "$m" -ge 17 ] 2>/dev/null; then best=$h; fi
	fi
	[ -n "$best" ] || die "no JDK 17, 21 or 25 found (set KEYCLOAK_JAVA_HOME)"
	export JAVA_HOME=$best
}

is_fetched() { [ -f "$dist/.oauth_jwt-built" ] && [ "$(cat "$dist/.oauth_jwt-built")" = "$build_stamp" ]; }

cmd_fetch() {
	mkdir -p "$kcroot"
	if is_fetched; then echo "$dist"; return 0; fi
	exec 9>"$kcroot/.lock"
	flock -n 9 || { log "waiting for the cache lock $kcroot/.lock"; flock 9; }
	if is_fetched; then echo "$dist"; return 0; fi
	if [ ! -f "$dist/.oauth_jwt-unpacked" ]; then
		command -v mvn >/dev/null || die "mvn (Maven) is needed to download Keycloak"
		local dl=$kcroot/download tgz
		tgz=$dl/keycloak-quarkus-dist-$version.tar.gz
		if [ ! -s "$tgz" ]; then
			log "downloading org.keycloak:keycloak-quarkus-dist:$version:tar.gz with mvn (~170 MB)"
			mkdir -p "$dl"
			# Run from the download dir so no project pom is picked up; -C fails on bad checksums.
			(cd "$dl" && mvn -q -B -C -Dstyle.color=never dependency:copy \
				-Dartifact="org.keycloak:keycloak-quarkus-dist:$version:tar.gz" \
				-DoutputDirectory="$dl" >"$kcroot/mvn.log" 2>&1) ||
				{ tail -n 40 "$kcroot/mvn.log" >&2; die "mvn dependency:copy failed (log: $kcroot/mvn.log)"; }
			[ -s "$tgz" ] || die "mvn did not produce $tgz"
		fi
		log "unpacking $(basename "$tgz")"
		local tmp
		tmp=$(mktemp -d "$kcroot/unpack.XXXXXX")
		tar -xzf "$tgz" -C "$tmp" || { rm -rf "$tmp"; die "cannot unpack $tgz"; }
		[ -x "$tmp/keycloak-$version/bin/kc.sh" ] || { rm -rf "$tmp"; die "$tgz has no keycloak-$version/bin/kc.sh"; }
		rm -rf "$dist"
		mv "$tmp/keycloak-$version" "$dist"
		rmdir "$tmp"
		touch "$dist/.oauth_jwt-unpacked"
		# The tarball stays in the local Maven repository; no second copy here.
		rm -f "$tgz"
	fi
	choose_java
	log "kc.sh build ${build_opts[*]} (JAVA_HOME=$JAVA_HOME; once, ~30 s)"
	rm -f "$dist/.oauth_jwt-built"
	(
		unset JAVA_OPTS KC_DB KC_HEALTH_ENABLED KC_FEATURES KC_FEATURES_DISABLED
		"$dist/bin/kc.sh" build "${build_opts[@]}" >"$kcroot/build.log" 2>&1
	) || { tail -n 40 "$kcroot/build.log" >&2; die "kc.sh build failed (log: $kcroot/build.log)"; }
	printf '%s' "$build_stamp" >"$dist/.oauth_jwt-built"
	echo "$dist"
}

cmd_path() {
	if is_fetched; then echo "$dist"; return 0; fi
	log "Keycloak $version is not in the cache $kcroot: run scripts/keycloak.sh fetch"
	exit 3
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive PID -> true while a process with this pid exists and is not a zombie.
pid_alive() {
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
	[ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]
}

realm_name() { # first "realm": "name" in a realm file (the top-level key comes first)
	sed -n 's/^[[:space:]]*"realm"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$1" | head -n1
}

cmd_start() {
	local port="" mgmt="" rundir="" keep=0 dev=0 timeout=${KEYCLOAK_START_TIMEOUT:-240} watch=""
	local realms=()
	while [ $# -gt 0 ]; do
		case "$1" in
		--port) port=${2:?}; shift 2 ;;
		--mgmt-port) mgmt=${2:?}; shift 2 ;;
		--dir) rundir=${2:?}; shift 2 ;;
		--realm) realms+=("${2:?}"); shift 2 ;;
		--keep-data) keep=1; shift ;;
		--dev) dev=1; shift ;;
		--timeout) timeout=${2:?}; shift 2 ;;
		--watch-pid) watch=${2:?}; shift 2 ;;
		*) usage ;;
		esac
	done
	[ -n "$port" ] && [ -n "$rundir" ] || usage
	case "$port$mgmt$timeout$watch" in *[!0-9]*) die "ports and timeout must be numbers" ;; esac
	mgmt=${mgmt:-$((port + 1))}
	if [ ${#realms[@]} -eq 0 ]; then
		realms=("$repo/test/keycloak/realm-postgres.json" "$repo/test/keycloak/realm-other.json")
	fi
	local f realm
	for f in "${realms[@]}"; do [ -f "$f" ] || die "no realm file $f"; done
	realm=$(realm_name "${realms[0]}")
	[ -n "$realm" ] || die "cannot read the realm name from ${realms[0]}"

	is_fetched || die "Keycloak $version is not in the cache $kcroot: run scripts/keycloak.sh fetch"
	command -v curl >/dev/null || die "curl is needed to wait for Keycloak"
	mkdir -p "$rundir"
	rundir=$(cd "$rundir" && pwd)
	if [ -f "$rundir/keycloak.pid" ] && pid_alive "$(cat "$rundir/keycloak.pid")"; then
		die "a Keycloak from $rundir is already running (pid $(cat "$rundir/keycloak.pid"))"
	fi
	port_open "$port" && die "127.0.0.1:$port is already in use"
	port_open "$mgmt" && die "127.0.0.1:$mgmt (management) is already in use"
	choose_java

	# Per-run Keycloak home: kc.sh derives kc.home.dir (and from it data/, providers/,
	# themes/) from its own resolved path, and lib/quarkus-run.jar finds the augmented
	# application in the lib/quarkus next to it. Copy what is written or small, link the rest.
	local home=$rundir/keycloak-home
	if [ "$keep" = 0 ]; then rm -rf "$home"; fi
	mkdir -p "$home/lib" "$home/data"
	rm -rf "$home/bin" "$home/lib/quarkus" "$home/data/import" "$home/data/tmp"
	cp -a "$dist/bin" "$home/bin"
	cp -a "$dist/lib/quarkus" "$home/lib/quarkus"
	cp -a "$dist/lib/quarkus-run.jar" "$home/lib/quarkus-run.jar"
	ln -sfn "$dist/lib/lib" "$home/lib/lib"
	ln -sfn "$dist/lib/app" "$home/lib/app"
	ln -sfn "$dist/themes" "$home/themes"
	ln -sfn "$dist/providers" "$home/providers"
	rm -rf "$home/conf" && cp -a "$dist/conf" "$home/conf"
	mkdir -p "$home/data/import"
	for f in "${realms[@]}"; do cp "$f" "$home/data/import/"; done

	local mode=(start --optimized --http-enabled=true)
	[ "$dev" = 1 ] && mode=(start-dev --health-enabled=true)
	local args=("${mode[@]}"
		--http-host=127.0.0.1 --http-port="$port"
		--hostname="http://127.0.0.1:$port"
		--http-management-port="$mgmt"
		--cache=local --import-realm)
	local logf=$rundir/keycloak.log
	log "starting Keycloak $version on 127.0.0.1:$port (management $mgmt, JAVA_HOME=$JAVA_HOME, ${mode[0]}), log $logf"
	(
		# Only our settings reach Keycloak: drop inherited KC_* and JAVA_OPTS overrides.
		for v in $(compgen -e | grep -E '^(KC_|JAVA_OPTS|JAVA_ADD_OPENS|JAVA_LOCALE|QUARKUS_)' || true); do unset "$v"; done
		export JAVA_OPTS_KC_HEAP="-Xms64m -Xmx448m"
		export KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD=admin
		cd "$rundir"
		# setsid: kc.sh leads its own process group (stop signals the whole group) and is
		# immune to the caller's terminal and process group.
		exec setsid "$home/bin/kc.sh" "${args[@]}" >"$logf" 2>&1 </dev/null
	) &
	local pid=$!
	echo "$pid" >"$rundir/keycloak.pid"
	echo "$port $mgmt" >"$rundir/keycloak.ports"
	if [ -n "$watch" ]; then
		setsid bash "${BASH_SOURCE[0]}" _watch "$watch" "$rundir" "$pid" >>"$rundir/watch.log" 2>&1 </dev/null &
		echo $! >"$rundir/keycloak.watcher"
	fi

	local url="http://127.0.0.1:$port/realms/$realm/.well-known/openid-configuration"
	local issuer="http://127.0.0.1:$port/realms/$realm"
	local t0=$SECONDS body=""
	while :; do
		if ! pid_alive "$pid"; then
			log "Keycloak exited during start-up; last lines of $logf:"
			tail -n 60 "$logf" >&2 || true
			rm -f "$rundir/keycloak.pid"
			exit 1
		fi
		if body=$(curl -fsS --max-time 5 "$url" 2>/dev/null); then break; fi
		if [ $((SECONDS - t0)) -ge "$timeout" ]; then
			log "Keycloak did not answer $url within $timeout s; last lines of $logf:"
			tail -n 60 "$logf" >&2 || true
			cmd_stop --dir "$rundir" || true
			exit 1
		fi
		sleep 0.5
	done
	case "$body" in
	*"\"issuer\":\"$issuer\""*) ;;
	*) log "discovery at $url does not name the issuer $issuer"; cmd_stop --dir "$rundir" || true; exit 1 ;;
	esac
	log "ready after $((SECONDS - t0)) s: $issuer"
	echo "$issuer"
}

cmd_stop() {
	local rundir=""
	while [ $# -gt 0 ]; do
		case "$1" in
		--dir) rundir=${2:?}; shift 2 ;;
		*) usage ;;
		esac
	done
	[ -n "$rundir" ] || usage
	local pidf=$rundir/keycloak.pid pid ports=""
	[ -f "$rundir/keycloak.ports" ] && ports=$(cat "$rundir/keycloak.ports")
	if [ ! -f "$pidf" ]; then
		log "no $pidf: nothing to stop"
		return 0
	fi
	pid=$(cat "$pidf")
	case "$pid" in '' | *[!0-9]*) die "bad pid file $pidf" ;; esac
	if pid_alive "$pid"; then
		log "stopping Keycloak (process group $pid)"
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		local i
		for i in $(seq 1 150); do pid_alive "$pid" || break; sleep 0.2; done
		if pid_alive "$pid"; then
			log "still running after 30 s: KILL"
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
			for i in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.2; done
		fi
	fi
	# The JVM is a child in the same process group: make sure nothing of it is left.
	if pgrep -g "$pid" >/dev/null 2>&1; then
		kill -KILL -- "-$pid" 2>/dev/null || true
		sleep 0.5
	fi
	local p i
	for p in $ports; do
		for i in $(seq 1 100); do port_open "$p" || break; sleep 0.2; done
		port_open "$p" && die "127.0.0.1:$p is still open after stopping Keycloak"
	done
	rm -f "$pidf"
	# The watcher (if any) has nothing left to watch; do not leave it behind for 2 s.
	if [ -f "$rundir/keycloak.watcher" ]; then
		local w
		w=$(cat "$rundir/keycloak.watcher")
		case "$w" in
		'' | *[!0-9]*) ;;
		*) # only if that pid is still our watcher of this run directory
			local wcmd
			wcmd=$(tr '\0' ' ' <"/proc/$w/cmdline" 2>/dev/null || true)
			if [ "$w" != "$$" ] && [[ "$wcmd" == *" _watch "*" $rundir "* ]]; then
				kill -TERM "$w" 2>/dev/null || true
			fi ;;
		esac
		rm -f "$rundir/keycloak.watcher"
	fi
	log "stopped"
}

# _watch WATCHPID RUNDIR KCPID: stop the Keycloak of RUNDIR when WATCHPID exits, unless it
# was stopped (or restarted: another pid) meanwhile.
cmd_watch() {
	local watch=$1 rundir=$2 kcpid=$3
	# pid_alive, not kill -0: an orphaned parent may linger as a zombie before init reaps it.
	while pid_alive "$watch" && [ "$(cat "$rundir/keycloak.pid" 2>/dev/null)" = "$kcpid" ]; do
		sleep 2
	done
	if [ "$(cat "$rundir/keycloak.pid" 2>/dev/null)" = "$kcpid" ]; then
		log "process $watch is gone: stopping its Keycloak"
		cmd_stop --dir "$rundir"
	fi
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
fetch) cmd_fetch "$@" ;;
path) cmd_path "$@" ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
_watch) cmd_watch "$@" ;;
-h | --help | help) usage 0 ;;
*) usage ;;
esac
