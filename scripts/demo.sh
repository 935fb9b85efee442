#!/usr/bin/env bash
# scripts/demo.sh — PostgreSQL 18 with oauth_jwt and a Keycloak on this machine, and a psql
# single sign-on login through the OAuth device flow.
#
#   scripts/demo.sh [--auto | --interactive]
#       Build oauth_jwt.so (make), find or build PostgreSQL 18 or 19 (scripts/pg.sh $PG_MAJOR), fetch and
#       start Keycloak on 127.0.0.1:18080 with the realm "postgres" (scripts/keycloak.sh;
#       the issuer http://127.0.0.1:18080/realms/postgres is the one in the example files),
#       create a cluster configured from postgresql.conf.example and pg_hba.conf.example
#       (plus pg_ident.conf map "sso": alice -> alice), roles alice, reader and app_writer,
#       start it on 127.0.0.1:55432 (or the next free port), then log in with psql as alice.
#       psql prints a URL and a code: open it in a browser and log in as alice /
#       alice-password. --auto (the default when stdin is not a terminal, as in CI)
#       approves the code by itself. Ends with the result of
#       `select current_user, system_user`. Everything already running is reused.
#   scripts/demo.sh stop
#       Stop the demo's PostgreSQL and Keycloak (their files stay in the demo directory).
#
# Environment: OJW_DEMO_DIR (default build/demo in the repository), PG_CONFIG (a
# PostgreSQL 18/19 pg_config to use instead of scripts/pg.sh's choice), PG_MAJOR (18 or 19, default 18), OAUTH_JWT_CACHE.
# Run as root, PostgreSQL runs as the unprivileged user "ojwtest" (created if missing);
# Keycloak runs as the calling user.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

kc_port=18080
issuer="http://127.0.0.1:$kc_port/realms/postgres"
pg_port_wanted=55432
me=$(id -un)
if [ "$(id -u)" = 0 ]; then server_user=ojwtest; else server_user=$me; fi

say() { printf '%s\n' "$*"; }
step() { printf '\n==> %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-2}"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]; }

# as_server CMD...: run a command as the server's OS user.
as_server() {
	if [ "$server_user" = "$me" ]; then "$@"; else runuser -u "$server_user" -- "$@"; fi
}

ensure_server_user() {
	[ "$server_user" = "$me" ] && return 0
	if ! id -u "$server_user" >/dev/null 2>&1; then
		say "creating the system user $server_user to run PostgreSQL (it refuses to run as root)"
		useradd --system --no-create-home --shell /usr/sbin/nologin "$server_user"
	fi
}

# demo_dir: OJW_DEMO_DIR, else build/demo; as root, when the server user cannot reach
# build/demo (a repository under /root), /var/tmp/oauth_jwt-demo.
demo_dir() {
	if [ -n "${OJW_DEMO_DIR:-}" ]; then
		mkdir -p "$OJW_DEMO_DIR"
		if [ "$server_user" != "$me" ] && id -u "$server_user" >/dev/null 2>&1 &&
			! runuser -u "$server_user" -- test -x "$OJW_DEMO_DIR" 2>/dev/null; then
			die "OJW_DEMO_DIR=$OJW_DEMO_DIR is not reachable by the server user $server_user"
		fi
		(cd "$OJW_DEMO_DIR" && pwd)
		return
	fi
	local d=$repo/build/demo
	mkdir -p "$d"
	if [ "$server_user" != "$me" ] && id -u "$server_user" >/dev/null 2>&1 &&
		! runuser -u "$server_user" -- test -x "$d" 2>/dev/null; then
		d=/var/tmp/oauth_jwt-demo
		mkdir -p "$d"
	fi
	echo "$d"
}

kc_running() { # our Keycloak answers with the expected issuer
	[ -f "$kcdir/keycloak.pid" ] && pid_alive "$(cat "$kcdir/keycloak.pid")" &&
		curl -fsS --max-time 5 "$issuer/.well-known/openid-configuration" 2>/dev/null | grep -q "\"issuer\":\"$issuer\""
}

pg_running() { [ -f "$data/postmaster.pid" ] && as_server "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; }

cmd_stop() {
	local stopped=0
	if [ -d "$data" ] && pg_running; then
		step "stopping PostgreSQL ($data)"
		as_server "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 stop
		stopped=1
	fi
	if [ -f "$kcdir/keycloak.pid" ]; then
		step "stopping Keycloak ($kcdir)"
		"$repo/scripts/keycloak.sh" stop --dir "$kcdir"
		stopped=1
	fi
	[ "$stopped" = 1 ] || say "nothing of the demo is running"
	say "The demo's files stay in $demo (remove the directory to start from scratch)."
}

write_configs() {
	local conf=$data/postgresql.conf
	{
		cat "$pgdir/postgresql.conf.initdb"
		printf '\n# ---- appended by scripts/demo.sh: postgresql.conf.example ----\n'
		cat "$repo/postgresql.conf.example"
		printf '\n# ---- appended by scripts/demo.sh: where this cluster runs ----\n'
		printf "listen_addresses = '127.0.0.1'\n"
		printf 'port = %s\n' "$pg_port"
		printf "unix_socket_directories = '%s'\n" "$pgdir/run"
		printf "dynamic_library_path = '%s:\$libdir'  # the oauth_jwt.so built by make\n" "$pgdir/lib"
	} >"$conf.new"
	{
		printf '# scripts/demo.sh: the OS user running the demo administers the cluster as postgres.\n'
		printf 'local   all       postgres            peer map=demo_admin\n\n'
		cat "$repo/pg_hba.conf.example"
	} >"$data/pg_hba.conf.new"
	{
		printf '# MAPNAME     SYSTEM-USERNAME  PG-USERNAME\n'
		printf '# pg_hba.conf.example: identities (oauth_jwt.authn_id_claim = preferred_username) -> roles\n'
		printf 'sso           alice            alice\n'
		printf '# scripts/demo.sh: local administration\n'
		printf 'demo_admin    %-16s postgres\n' "$me"
		[ "$server_user" = "$me" ] || printf 'demo_admin    %-16s postgres\n' "$server_user"
	} >"$data/pg_ident.conf.new"
	local f
	for f in postgresql.conf pg_hba.conf pg_ident.conf; do
		chmod 600 "$data/$f.new"
		[ "$server_user" = "$me" ] || chown "$server_user:" "$data/$f.new"
		mv -f "$data/$f.new" "$data/$f"
	done
}

free_pg_port() {
	local p
	for p in $(seq "$pg_port_wanted" $((pg_port_wanted + 100))); do
		port_open "$p" || { echo "$p"; return 0; }
	done
	die "no free port in $pg_port_wanted..$((pg_port_wanted + 100))"
}

cmd_start() {
	local auto=$1 t0 kc_new_keys=0

	step "PostgreSQL ${PG_MAJOR:-18} (scripts/pg.sh; cached after the first build)"
	local pgc oauthlib
	pgc=$("$repo/scripts/pg.sh" "${PG_MAJOR:-18}")
	bindir=$("$pgc" --bindir)
	say "pg_config: $pgc"
	echo "$bindir" >"$demo/bindir"
	oauthlib=$("$pgc" --libdir)/libpq-oauth-${PG_MAJOR:-18}.so
	[ -f "$oauthlib" ] || [ -f "$("$pgc" --libdir)/libpq-oauth.so" ] || die "$oauthlib is missing: psql cannot run the device flow (PostgreSQL must be built --with-libcurl, as scripts/pg.sh does)"

	step "building oauth_jwt.so (make; log $demo/make.log)"
	if ! make -C "$repo" PG_CONFIG="$pgc" >"$demo/make.log" 2>&1; then
		tail -n 30 "$demo/make.log" >&2
		die "make failed (log: $demo/make.log)"
	fi
	(cd "$repo" && go build -o "$demo/bin/approve" ./test/keycloak/cmd/approve) || die "building test/keycloak/cmd/approve failed"
	say "built $repo/oauth_jwt.so"

	step "Keycloak on 127.0.0.1:$kc_port (scripts/keycloak.sh; realm postgres)"
	"$repo/scripts/keycloak.sh" fetch >/dev/null
	if kc_running; then
		say "already running (pid $(cat "$kcdir/keycloak.pid")): reused"
	else
		if [ -f "$kcdir/keycloak.pid" ]; then "$repo/scripts/keycloak.sh" stop --dir "$kcdir" 2>/dev/null || true; fi
		if port_open "$kc_port" || port_open $((kc_port + 1)); then
			die "127.0.0.1:$kc_port or :$((kc_port + 1)) is in use by another program; the demo's issuer $issuer needs them"
		fi
		# --keep-data: the realm, its users and its signing keys survive a stop and start.
		[ -d "$kcdir/keycloak-home/data/h2" ] || kc_new_keys=1
		say "starting (about 20 s on 2 cores, longer under load; log $kcdir/keycloak.log)"
		t0=$SECONDS
		"$repo/scripts/keycloak.sh" start --port "$kc_port" --dir "$kcdir" --keep-data \
			--realm "$repo/test/keycloak/realm-postgres.json" >/dev/null
		say "Keycloak ready after $((SECONDS - t0)) s: issuer $issuer"
	fi

	step "PostgreSQL cluster $data (server user $server_user)"
	mkdir -p "$pgdir/lib" "$pgdir/run"
	chmod 700 "$pgdir"
	[ "$server_user" = "$me" ] || chown -R "$server_user:" "$pgdir"
	# The server reads the module from its own copy; rename makes the swap atomic for
	# backends that load it meanwhile.
	# oauth_jwt_fetch (the key fetch helper) goes beside it: the module starts it from there.
	for f in oauth_jwt.so oauth_jwt_fetch; do
		cp "$repo/$f" "$pgdir/lib/.$f.new"
		[ "$server_user" = "$me" ] || chown "$server_user:" "$pgdir/lib/.$f.new"
		mv -f "$pgdir/lib/.$f.new" "$pgdir/lib/$f"
	done
	if [ ! -f "$data/PG_VERSION" ]; then
		rm -rf "$data"
		as_server "$bindir/initdb" -D "$data" -U postgres --auth-local=peer --auth-host=reject \
			-E UTF8 --no-instructions >"$pgdir/initdb.log" 2>&1 ||
			{ tail -n 20 "$pgdir/initdb.log" >&2; die "initdb failed"; }
		as_server cp "$data/postgresql.conf" "$pgdir/postgresql.conf.initdb"
		say "initdb done"
	fi
	if [ "$kc_new_keys" = 1 ] && [ -d "$data/oauth_jwt_cache" ]; then
		# A new Keycloak database has new signing keys: drop the keys the cluster cached
		# from the previous one (else logins fail with unknown_kid until
		# oauth_jwt.kid_refetch_interval has passed).
		as_server rm -rf "$data/oauth_jwt_cache"
		say "new Keycloak database: cleared the cluster's key cache"
	fi
	pg_port=$(cat "$pgdir/port" 2>/dev/null || true)
	if pg_running; then
		write_configs
		as_server "$bindir/pg_ctl" -D "$data" reload >/dev/null
		say "already running on 127.0.0.1:$pg_port: configuration rewritten from the example files and reloaded"
	else
		if [ -z "$pg_port" ] || port_open "$pg_port"; then
			pg_port=$(free_pg_port)
			echo "$pg_port" >"$pgdir/port"
		fi
		write_configs
		as_server "$bindir/pg_ctl" -D "$data" -l "$pgdir/postgres.log" -w -t 60 start >/dev/null ||
			{ tail -n 20 "$pgdir/postgres.log" >&2; die "PostgreSQL did not start (log: $pgdir/postgres.log)"; }
		say "started on 127.0.0.1:$pg_port (log $pgdir/postgres.log)"
	fi
	"$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$pgdir/run" -p "$pg_port" -U postgres -d postgres >/dev/null <<-'SQL'
		set client_min_messages = warning;
		select format('create role %I login', r)
		  from unnest(array['alice', 'reader', 'app_writer']) as r
		 where not exists (select 1 from pg_roles where rolname = r)
		\gexec
		grant pg_read_all_data to reader;
		grant pg_read_all_data, pg_write_all_data to app_writer;
	SQL
	say "roles: alice (pg_ident map sso), reader and app_writer (delegated: groups / client), postgres"

	local conninfo="host=127.0.0.1 port=$pg_port dbname=postgres user=alice oauth_issuer=$issuer oauth_client_id=psql"
	step "psql single sign-on as alice (OAuth device flow)"
	say "\$ psql \"$conninfo\" -c 'select current_user, system_user'"
	say "(PGOAUTHDEBUG=UNSAFE because the demo issuer is plain http; its traces hold tokens and are filtered out)"
	if [ "$auto" = 1 ]; then
		say "non-interactive: the code is approved automatically as alice (test/keycloak/cmd/approve)"
	else
		say "Keycloak user: alice / alice-password (group dba). Waiting for you to approve in a browser..."
	fi
	say ""
	local approve_args=(-user alice) st
	[ "$auto" = 1 ] && approve_args+=(-auto)
	set +e
	{
		(
			for v in $(compgen -e | grep '^PG[A-Z]' || true); do unset "$v"; done
			export PGOAUTHDEBUG=UNSAFE
			if [ "$auto" = 1 ]; then
				exec timeout 300 "$bindir/psql" -X -w -d "$conninfo" -c "select current_user, system_user"
			else
				exec "$bindir/psql" -X -w -d "$conninfo" -c "select current_user, system_user"
			fi
		) 2>&1 1>&3 3>&- | "$demo/bin/approve" "${approve_args[@]}" 3>&-
		st=("${PIPESTATUS[@]}")
	} 3>&1
	set -e
	if [ "${st[0]}" != 0 ] || [ "${st[1]}" != 0 ]; then
		say ""
		say "The login failed (psql exit ${st[0]}, approver exit ${st[1]}). Server log: $pgdir/postgres.log"
		grep -E 'oauth_jwt|OAuth|DETAIL' "$pgdir/postgres.log" | tail -n 6 || true
		exit 1
	fi

	say ""
	say "Logged in: current_user is the database role, system_user the identity oauth_jwt took"
	say "from the token (oauth_jwt.authn_id_claim = preferred_username)."
	say ""
	say "Running now:"
	say "  Keycloak    $issuer  (admin console http://127.0.0.1:$kc_port/admin, admin / admin)"
	say "              users alice / alice-password (group dba), bob / bob-password (analysts), carol / carol-password"
	say "  PostgreSQL  127.0.0.1:$pg_port  data $data, log $pgdir/postgres.log"
	say "Try also (delegated mode: the token's groups decide the role):"
	say "  PGOAUTHDEBUG=UNSAFE $bindir/psql \"${conninfo/user=alice/user=reader}\" \\"
	say "      -c 'select current_user, system_user' 2> >(grep -v '^\\[' >&2)   # drops the debug traces (tokens)"
	say "Stop everything:  scripts/demo.sh stop   (or: make demo-stop)"
}

action=start auto=""
while [ $# -gt 0 ]; do
	case "$1" in
	stop) action=stop; shift ;;
	start) action=start; shift ;;
	--auto) auto=1; shift ;;
	--interactive) auto=0; shift ;;
	-h | --help | help) usage 0 ;;
	*) usage ;;
	esac
done
if [ -z "$auto" ]; then
	if [ -t 0 ]; then auto=0; else auto=1; fi
fi

[ "$action" = stop ] || ensure_server_user
demo=$(demo_dir)
kcdir=$demo/keycloak
pgdir=$demo/pg
data=$pgdir/data
mkdir -p "$demo/bin"

case "$action" in
stop)
	bindir=$(cat "$demo/bindir" 2>/dev/null || echo /nonexistent)
	cmd_stop
	;;
start) cmd_start "$auto" ;;
esac
