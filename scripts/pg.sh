#!/usr/bin/env bash
# scripts/pg.sh MAJOR — print the path of a PostgreSQL MAJOR (18 or 19) pg_config, building
# one if needed.
#
# Order: $PG_CONFIG if it names a MAJOR.x server; `pg_config` on PATH if it is MAJOR.x; a
# previous build in the cache; otherwise download Debian's postgresql-MAJOR source package
# through a private apt configuration (the system's sources are never edited) and build it
# into the cache with libcurl (libpq-oauth: the psql device flow) and OpenSSL. The cache
# survives between runs, so the second run is instant.
#
# Suites: 18 comes from unstable; 19 from unstable and experimental (19~rc1 lives in
# experimental today). When several suites offer the package, the newest version wins, so
# the script follows the archive when 19 moves on.
#
# Two runs for the same major take turns (flock on $cache/.pgMAJOR.lock): the second waits
# for the first and then uses its build instead of building into the same prefix.
#
# Environment: OAUTH_JWT_CACHE (default ~/.cache/oauth_jwt; /var/cache/oauth_jwt for root,
# because the server runs as an unprivileged user that cannot enter /root), PG_CONFIG,
# PG_SUITES (override the suites, e.g. "experimental").
# All progress goes to stderr; stdout carries only the pg_config path.
set -euo pipefail

major=${1:-}
case "$major" in
18) suites=${PG_SUITES:-unstable} ;;
19) suites=${PG_SUITES:-unstable experimental} ;;
*)
	echo "usage: scripts/pg.sh 18|19" >&2
	exit 2
	;;
esac
pkg=postgresql-$major

if [ "$(id -u)" = 0 ]; then
	cache=${OAUTH_JWT_CACHE:-/var/cache/oauth_jwt}
else
	cache=${OAUTH_JWT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oauth_jwt}
fi
prefix=$cache/pg$major
log() { printf 'pg%s: %s\n' "$major" "$*" >&2; }

ismajor() { # $1 = pg_config path
	[ -x "$1" ] || return 1
	case "$("$1" --version 2>/dev/null)" in "PostgreSQL $major"[!0-9]* | "PostgreSQL $major") ;; *) return 1 ;; esac
	# must have server headers (PGXS) and a server binary
	[ -f "$("$1" --pgxs 2>/dev/null)" ] && [ -x "$("$1" --bindir)/postgres" ]
}
cached() { ismajor "$prefix/bin/pg_config" && [ -f "$prefix/.complete" ]; }

if [ -n "${PG_CONFIG:-}" ]; then
	if ismajor "$PG_CONFIG"; then echo "$PG_CONFIG"; exit 0; fi
	log "PG_CONFIG=$PG_CONFIG is not a PostgreSQL $major with server headers; using the cache"
fi
if command -v pg_config >/dev/null && ismajor "$(command -v pg_config)"; then
	command -v pg_config; exit 0
fi
if cached; then echo "$prefix/bin/pg_config"; exit 0; fi

# One build per prefix at a time: wait for a concurrent run, then use what it built.
mkdir -p "$cache"
exec 9>"$cache/.pg$major.lock"
if ! flock -n 9; then
	log "another run is building PostgreSQL $major into $prefix; waiting for it"
	flock 9
fi
if cached; then echo "$prefix/bin/pg_config"; exit 0; fi

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

work=$(mktemp -d "${TMPDIR:-/tmp}/pg$major-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Private apt configuration: the system's Debian mirror, deb-src only.
mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
	mirror=$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/debian.sources | grep -v -- '-security' | head -n1 || true)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
	mirror=$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' /etc/apt/sources.list)
fi
[ -n "$mirror" ] || { log "cannot find the system's Debian mirror in /etc/apt; set PG_CONFIG to a PostgreSQL $major instead"; exit 1; }
mkdir -p "$work/lists/partial" "$work/parts" "$work/src"
for s in $suites; do
	echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $s main"
done >"$work/sources.list"
aptopts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=$work/parts"
	-o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
log "fetching the $pkg source package index ($suites)"
apt-get "${aptopts[@]}" update -qq >&2
# The newest version any of the suites offers.
version=""
for v in $(apt-cache "${aptopts[@]}" showsrc "$pkg" 2>/dev/null | awk -v p="$pkg" '$1=="Package:" {ok=($2==p)} ok && $1=="Version:" {print $2}'); do
	if [ -z "$version" ] || dpkg --compare-versions "$v" gt "$version"; then version=$v; fi
done
[ -n "$version" ] || { log "no $pkg source package in $suites on $mirror; set PG_CONFIG to a PostgreSQL $major instead"; exit 1; }
# Source first (a build against this machine's libraries). When the archive lists the source
# package but will not serve it (the archive we reach answers 404 for postgresql-19's source
# files), fall back to Debian's binary packages of the same version: they need the glibc of
# the suite they were built in, so the package's shared libraries, that glibc and its loader
# are unpacked beside them and every program is pointed at them (patchelf: interpreter and
# RUNPATH). Nothing is installed on the system. PostgreSQL is relocatable, so pg_config,
# PGXS and the server find their files under the cache.
from_binaries() {
	local root=$prefix/root bins="$pkg postgresql-client-$major postgresql-server-dev-$major libpq5 libpq-dev libpq-oauth libc6"
	log "building from $pkg's source is not possible here; unpacking Debian's $version binary packages into $prefix"
	# patchelf, and the GSSAPI headers that Debian's server headers include (libpq-be.h)
	local bneed=() b
	for b in patchelf libkrb5-dev; do
		dpkg-query -W -f='${Status}' "$b" 2>/dev/null | grep -q 'install ok installed' || bneed+=("$b")
	done
	if [ ${#bneed[@]} -gt 0 ]; then
		[ "$(id -u)" = 0 ] || { log "need root (or sudo) to apt-get install ${bneed[*]}"; return 1; }
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${bneed[@]}" >&2 ||
			{ apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${bneed[@]}" >&2; }
	fi
	for s in $suites; do
		echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $s main"
	done >"$work/binary.list"
	local bopts=(-o "Dir::Etc::SourceList=$work/binary.list" -o "Dir::Etc::SourceParts=$work/parts"
		-o "Dir::State::Lists=$work/blists" -o "APT::Sandbox::User=root" -o "Dir::State::status=/dev/null"
		-o "Dir::Cache::pkgcache=$work/pkgcache.bin" -o "Dir::Cache::srcpkgcache=$work/srcpkgcache.bin"
		-o "APT::Default-Release=$(echo "$suites" | awk '{print $NF}')")
	mkdir -p "$work/blists/partial" "$work/debs"
	apt-get "${bopts[@]}" update -qq >&2
	# The closure of shared libraries the programs need (not the maintainer-script tools,
	# compilers or -dev packages: server-dev and libpq-dev are leaves).
	local -A seen=()
	local level=($bins) next p
	while [ ${#level[@]} -gt 0 ]; do
		next=()
		for p in "${level[@]}"; do seen[$p]=1; done
		# one apt-cache call per level of the dependency tree (each call reads the lists)
		for p in $(apt-cache "${bopts[@]}" depends --no-recommends --no-suggests --no-conflicts --no-breaks \
			--no-replaces --no-enhances $(printf '%s\n' "${level[@]}" | grep -v -e '^postgresql-server-dev-' -e '^libpq-dev$') 2>/dev/null |
			awk '$1 ~ /Depends:$/ && $2 !~ /^</ {print $2}' | sort -u); do
			case "$p" in lib*-dev | lib*-perl | libc-bin | libc-l10n | libpam-modules* | libc-gconv-modules-extra) continue ;; esac
			case "$p" in lib* | zlib1g) [ -n "${seen[$p]:-}" ] || next+=("$p") ;; esac
		done
		level=("${next[@]}")
	done
	local want=()
	for b in "${!seen[@]}"; do
		case "$b" in "$pkg" | postgresql-*-"$major" | libpq*) want+=("$b=$version") ;; *) want+=("$b") ;; esac
	done
	(cd "$work/debs" && apt-get "${bopts[@]}" download -qq "${want[@]}" >&2)
	rm -rf "$prefix"
	mkdir -p "$root"
	for b in "$work"/debs/*.deb; do dpkg-deb -x "$b" "$root"; done
	local lib=$root/usr/lib/x86_64-linux-gnu f
	[ -x "$lib/ld-linux-x86-64.so.2" ] || { log "no loader in $lib"; return 1; }
	while IFS= read -r -d '' f; do
		[ "$(head -c4 "$f" 2>/dev/null | tr -d '\177\000')" = ELF ] || continue
		case "$f" in */ld-linux-x86-64.so.2) continue ;; esac
		if patchelf --print-interpreter "$f" >/dev/null 2>&1; then
			patchelf --set-interpreter "$lib/ld-linux-x86-64.so.2" "$f"
		fi
		patchelf --set-rpath "$lib:$root/usr/lib/postgresql/$major/lib" "$f" 2>/dev/null || true
	done < <(find "$root" -type f -print0)
	mkdir -p "$prefix/bin"
	ln -s "$root/usr/lib/postgresql/$major/bin/pg_config" "$prefix/bin/pg_config"
	# libpq-oauth: Debian names it without the major.
	[ -f "$lib/libpq-oauth.so" ] || [ -f "$lib/libpq-oauth-$major.so" ] || { log "libpq-oauth is missing"; return 1; }
	echo "$pkg $version (Debian binary packages, private glibc)" >"$prefix/.source"
	touch "$prefix/.complete"
	log "installed PostgreSQL $("$prefix/bin/pg_config" --version) in $root"
	echo "$prefix/bin/pg_config"
}

log "downloading $pkg $version source"
# Download only, then unpack without Debian's patches: they move pkglibdir and PGXS to
# /usr/lib/postgresql/MAJOR and the default socket to /var/run, which would put the
# build outside the cache. Upstream sources are what we want.
if ! (cd "$work/src" && apt-get "${aptopts[@]}" source --download-only -qq "$pkg=$version" >"$work/source.log" 2>&1); then
	if grep -q '404' "$work/source.log"; then
		from_binaries
		exit
	fi
	cat "$work/source.log" >&2
	exit 1
fi
(cd "$work/src" && dpkg-source --skip-patches -x ./"${pkg}_${version#*:}".dsc >&2)
srcdir=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name "$pkg*" | head -n1)
[ -n "$srcdir" ] || { log "apt-get source did not unpack $pkg"; exit 1; }
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
[ -f "$prefix/lib/libpq-oauth-$major.so" ] || { log "libpq-oauth-$major.so was not built (libcurl missing?)"; exit 1; }
echo "$pkg $version" >"$prefix/.source"
touch "$prefix/.complete"
log "installed PostgreSQL $("$prefix/bin/pg_config" --version) ($pkg $version) in $prefix"
echo "$prefix/bin/pg_config"
