#!/usr/bin/env bash
# docker-entrypoint.sh of the postgres stand-in (docker/standin/postgres.Dockerfile): the
# part of the official image's entrypoint that oauth_jwt's files rely on.
#
#   - started as root with "postgres ...": create and own PGDATA, then re-run as postgres;
#   - empty PGDATA: initdb (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_INITDB_ARGS), the
#     official pg_hba "host all all all scram-sha-256" (or POSTGRES_HOST_AUTH_METHOD), a
#     temporary server on the Unix socket only, POSTGRES_DB, /docker-entrypoint-initdb.d
#     (*.sh executable: run, else sourced; *.sql: psql), stop;
#   - exec the command (the server).
set -Eeo pipefail

die() { echo "docker-entrypoint.sh: $*" >&2; exit 1; }

if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA"
	chown postgres:postgres "$PGDATA"
	chmod 00700 "$PGDATA"
	mkdir -p /var/run/postgresql
	chown postgres:postgres /var/run/postgresql
	chmod 03775 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	export POSTGRES_USER="${POSTGRES_USER:-postgres}"
	export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
	auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
		die "Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the superuser,
       or POSTGRES_HOST_AUTH_METHOD=trust (not recommended)."
	fi
	pwfile=()
	if [ -n "${POSTGRES_PASSWORD:-}" ]; then
		umask 077
		printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pwfile
		umask 022
		pwfile=(--pwfile=/tmp/pwfile)
	fi
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image
	initdb --username="$POSTGRES_USER" "${pwfile[@]}" $POSTGRES_INITDB_ARGS
	rm -f /tmp/pwfile
	printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"

	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
	psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
	if [ "$POSTGRES_DB" != postgres ]; then
		"${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh)
			if [ -x "$f" ]; then
				echo "$0: running $f"
				"$f"
			else
				echo "$0: sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql) echo "$0: running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
		*) [ -e "$f" ] && echo "$0: ignoring $f" ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop
	echo
	echo 'PostgreSQL init process complete; ready for start up.'
	echo
fi

exec "$@"
