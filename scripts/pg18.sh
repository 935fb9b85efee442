#!/usr/bin/env bash
# scripts/pg18.sh — print the path of a PostgreSQL 18 pg_config, building one if needed.
#
# Order: $PG_CONFIG if it names an 18.x server; `pg_config` on PATH if it is 18.x; a
# previous build in the cache; otherwise download Debian's postgresql-18 source package
# (unstable suite, through a private apt configuration: the system's sources are never
# edited) and build it into the cache with libcurl (libpq-oauth: the psql device flow)
# and OpenSSL.  The cache survives between runs, so the second run is instant.
#
# Environment: OAUTH_JWT_CACHE (default ~/.cache/oauth_jwt; /var/cache/oauth_jwt for root,
# because the server runs as an unprivileged user that cannot enter /root), PG_CONFIG.
# All progress goes to stderr; stdout carries only the pg_config path.
set -euo pipefail

if [ "$(id -u)" = 0 ]; then
	cache=${OAUTH_JWT_CACHE:-/var/cache/oauth_jwt}
else
	cache=${OAUTH_JWT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth_jwt}
fi
prefix=$cache/pg18
log() { printf 'pg18: %s\n' "$*" >&2; }

is18() { # $1 = pg_config path
	[ -x "$1" ] || return 1
	case "$("$1" --version 2>/dev/null)" in "PostgreSQL 18"*) ;; *) return 1 ;; esac
	# must have server headers (PGXS) and a server binary
	[ -f "$("$1" --pgxs 2>/dev/null)" ] && [ -x "$("$1" --bindir)/postgres" ]
}

if [ -n "${PG_CONFIG:-}" ]; then
	if is18 "$PG_CONFIG"; then echo "$PG_CONFIG"; exit 0; fi
	log "PG_CONFIG=$PG_CONFIG is not a PostgreSQL 18 with server headers; using the cache"
fi
if command -v pg_config >/dev/null && is18 "$(command -v pg_config)"; then
	command -v pg_config; exit 0
fi
if is18 "$prefix/bin/pg_config" && [ -f "$prefix/.complete" ]; then
	echo "$prefix/bin/pg_config"; exit 0
fi

# Build dependencies from the stable suite.
need=()
for p in bison flex libcurl4-openssl-dev libssl-dev zlib1g-dev libreadline-dev pkg-config dpkg-dev xz-utils bzip2 gpgv debian-archive-keyring binutils make gcc; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	log "installing build dependencies: ${need[*]}"
	[ "$(id -u)" = 0 ] || { log "need root (or sudo) to apt-get install ${need[*]}"; exit 1; }
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pg18-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Private apt configuration: the system's Debian mirror, suite unstable, deb-src only.
mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
	mirror=$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/debian.sources | grep -v -- '-security' | head -n1 || true)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
	mirror=$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { log "cannot find the system's Debian mirror in /etc/apt; set PG_CONFIG to a PostgreSQL 18 instead"; exit 1; }
mkdir -p "$work/lists/partial" "$work/parts" "$work/src"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror unstable main" >"$work/sources.list"
aptopts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/parts"
	-o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
log "fetching the postgresql-18 source package index (unstable)"
apt-get "${aptopts[@]}" update -qq >&2
log "downloading postgresql-18 source"
# Download only, then unpack without Debian's patches: they move pkglibdir and PGXS to
# /usr/lib/postgresql/18 and the default socket to /var/run, which would put the
# build outside the cache. Upstream sources are what we want.
(cd "$work/src" && apt-get "${aptopts[@]}" source --download-only -qq postgresql-18 >&2 &&
	dpkg-source --skip-patches -x ./postgresql-18_*.dsc >&2)
srcdir=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'postgresql-18*' | head -n1)
[ -n "$srcdir" ] || { log "apt-get source did not unpack postgresql-18"; exit 1; }
log "building $(basename "$srcdir") into $prefix (a few minutes on 2 cores)"
rm -rf "$prefix"
(
	cd "$srcdir"
	./configure --prefix="$prefix" --with-libcurl --with-openssl --without-icu \
		--enable-debug --disable-nls >"$work/configure.log" 2>&1 ||
		{ tail -n 40 "$work/configure.log" >&2; exit 1; }
	make -j"$(nproc)" -s >"$work/make.log" 2>&1 || { tail -n 60 "$work/make.log" >&2; exit 1; }
	make -s install >"$work/install.log" 2>&1 || { tail -n 40 "$work/install.log" >&2; exit 1; }
)
case "$("$prefix/bin/pg_config" --pkglibdir)" in "$prefix"/*) ;; *) log "pkglibdir is outside $prefix"; exit 1 ;; esac
[ -f "$prefix/lib/libpq-oauth-18.so" ] || { log "libpq-oauth-18.so was not built (libcurl missing?)"; exit 1; }
touch "$prefix/.complete"
log "installed PostgreSQL $("$prefix/bin/pg_config" --version) in $prefix"
echo "$prefix/bin/pg_config"
