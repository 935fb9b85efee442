#!/usr/bin/env bash
# Configures oauth_jwt in a new data directory. docker-entrypoint.sh runs it once, as the
# postgres user, after initdb and while a temporary server listens on the Unix socket only;
# the real server then starts with what is written here.
#
# Environment (all optional; the defaults are the demo of docker/compose.yaml):
#
#   OAUTH_JWT_ISSUER          pg_hba issuer, byte for byte the token's iss
#                             (default http://localhost:8080/realms/postgres)
#   OAUTH_JWT_SCOPE           pg_hba scope, what libpq asks for (default openid)
#   OAUTH_JWT_DELEGATED_ROLES roles whose logins the token alone decides
#                             (delegate_ident_mapping=1; default dba,reader,app_writer; never a superuser:
#                             oauth_jwt refuses superuser targets in delegated mode);
#                             every other role goes through pg_ident map "sso"
#   OAUTH_JWT_DEMO_ROLES      on (default): create roles alice, bob, dba, reader, app_writer
#   OAUTH_JWT_<SETTING>       any oauth_jwt.<setting> (README "Settings"), e.g.
#                             OAUTH_JWT_AUDIENCE=postgres-db, OAUTH_JWT_JWKS_URI=...
#
# Settings are read once, when the data directory is created: to change them later edit
# postgresql.conf / pg_hba.conf and reload, or start from an empty volume.
set -Eeuo pipefail

die() { echo "10-oauth_jwt.sh: $*" >&2; exit 1; }

issuer="${OAUTH_JWT_ISSUER:-http://localhost:8080/realms/postgres}"
scope="${OAUTH_JWT_SCOPE:-openid}"
delegated="${OAUTH_JWT_DELEGATED_ROLES:-dba,reader,app_writer}"
demo_roles="${OAUTH_JWT_DEMO_ROLES:-on}"

case "$issuer" in
	https://?* | http://?*) ;;
	*) die "OAUTH_JWT_ISSUER must be an http(s) URL, got '$issuer'" ;;
esac
[[ "$issuer" != *[[:space:]\"]* ]] || die "OAUTH_JWT_ISSUER must not contain spaces or double quotes"
[[ "$scope" != *\"* ]] || die "OAUTH_JWT_SCOPE must not contain double quotes"
[[ "$delegated" =~ ^[a-z_][a-z0-9_]*(,[a-z_][a-z0-9_]*)*$ ]] ||
	die "OAUTH_JWT_DELEGATED_ROLES must be a comma-separated list of lower-case role names, got '$delegated'"
[[ "$issuer" != */ ]] || echo "10-oauth_jwt.sh: note: the issuer ends with '/'; it must then also end with '/' in the tokens (Auth0 does, most providers do not)" >&2

# --- postgresql.conf -----------------------------------------------------------------------
# Demo defaults (the realm in test/keycloak/realm-postgres.json), each replaceable by
# OAUTH_JWT_<NAME>. require_https follows the issuer: off for a plain-http demo issuer
# (even off, oauth_jwt fetches plain http only from loopback hosts), on otherwise.
declare -A conf=(
	[audience]='postgres-db'
	[allowed_client_ids]='psql, pg-service'
	[authn_id_claim]='preferred_username'
	[role_claim]='groups'
	[role_map]='dba=dba, dba=reader, analysts=reader'
	[client_role_map]='pg-service=app_writer'
	[log_accepted]='on'
)
if [[ "$issuer" == http://* ]]; then conf[require_https]=off; fi

known=" audience allowed_client_ids required_scopes allowed_algorithms leeway accept_id_tokens
	jwks_uri discovery_url authn_id_claim role_claim role_map client_role_map role_from_identity
	enforce_hba_scope max_token_lifetime allow_privileged_roles jwks_file introspection
	introspection_endpoint introspection_client_id introspection_secret_file introspection_cache_ttl
	cache_dir cache_refresh_interval cache_max_stale kid_refetch_interval http_timeout ca_file
	http_proxy require_https log_accepted issuer_config "
for var in "${!OAUTH_JWT_@}"; do
	case "$var" in
		OAUTH_JWT_ISSUER | OAUTH_JWT_SCOPE | OAUTH_JWT_DELEGATED_ROLES | OAUTH_JWT_DEMO_ROLES) continue ;;
	esac
	name="${var#OAUTH_JWT_}"
	name="${name,,}"
	[[ "$known" == *[[:space:]]"$name"[[:space:]]* ]] || die "$var: oauth_jwt.$name is not an oauth_jwt setting"
	conf[$name]="${!var}"
done

quote() { local v="${1//\\/\\\\}"; printf "'%s'" "${v//\'/\'\'}"; }

{
	echo
	echo "# --- oauth_jwt (written by /docker-entrypoint-initdb.d/10-oauth_jwt.sh) ---"
	echo "# Loaded per connection; never in shared_preload_libraries."
	echo "oauth_validator_libraries = 'oauth_jwt'"
	for name in $(printf '%s\n' "${!conf[@]}" | sort); do
		echo "oauth_jwt.$name = $(quote "${conf[$name]}")"
	done
	echo "log_connections = 'authentication'"
} >> "$PGDATA/postgresql.conf"

# --- pg_hba.conf ---------------------------------------------------------------------------
# Rewritten, not appended to: the image's file ends with "host all all all scram-sha-256"
# and initdb's has "host all all 127.0.0.1/32 trust". Keycloak shares this container's
# network namespace in the demo, so 127.0.0.1 is not "only us": every TCP login is OAuth.
# The Unix-socket lines of initdb are kept (docker exec ... psql without -h).
hba="$PGDATA/pg_hba.conf"
local_lines="$(grep -E '^[[:space:]]*local[[:space:]]' "$hba" || true)"
cat > "$hba" <<EOF
# Written by /docker-entrypoint-initdb.d/10-oauth_jwt.sh (see docker/README.md).
# TYPE  DATABASE  USER  ADDRESS  METHOD  OPTIONS

# Inside the container only (docker exec ... psql), as initdb set it up.
$local_lines

# Delegated mode: the token alone decides (oauth_jwt.role_map, client_role_map).
host    all  $delegated  all  oauth issuer="$issuer" scope="$scope" delegate_ident_mapping=1

# pg_ident mode: the identity (oauth_jwt.authn_id_claim) must map to the role (pg_ident.conf).
host    all  all  all  oauth issuer="$issuer" scope="$scope" map=sso
EOF

# --- pg_ident.conf -------------------------------------------------------------------------
# A user may log in as the role named like their identity (alice -> alice). The roles of
# the delegated line above never reach this map.
cat >> "$PGDATA/pg_ident.conf" <<'EOF'

# Written by /docker-entrypoint-initdb.d/10-oauth_jwt.sh.
# MAPNAME  SYSTEM-USERNAME  PG-USERNAME
sso        /^(.*)$          \1
EOF

# --- Demo roles ----------------------------------------------------------------------------
# Realm postgres: alice (group dba), bob (group analysts), carol (no group, no role here),
# service account of client pg-service (-> app_writer). Role dba administers without being
# a superuser (delegated logins never reach a superuser).
if [[ "$demo_roles" == on ]]; then
	psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" <<'EOSQL'
CREATE ROLE dba LOGIN CREATEDB;   -- no CREATEROLE: delegated logins are refused roles that have it (privileged_role)
GRANT pg_read_all_data, pg_write_all_data, pg_monitor, pg_signal_backend TO dba;
CREATE ROLE reader LOGIN;
GRANT pg_read_all_data TO reader;
CREATE ROLE app_writer LOGIN;
GRANT pg_read_all_data, pg_write_all_data TO app_writer;
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
CREATE TABLE public.demo (id int PRIMARY KEY, note text);
INSERT INTO public.demo VALUES (1, 'written at initdb');
EOSQL
fi

echo "10-oauth_jwt.sh: oauth_jwt configured for issuer $issuer"
