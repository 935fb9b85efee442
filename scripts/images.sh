#!/usr/bin/env bash
# scripts/images.sh — the images docker/Dockerfile and docker/compose.yaml build from:
# the official ones when the engine has them or can pull them, stand-ins built here when
# it cannot (machines without an image registry, like our CI machines).
#
#   images.sh resolve
#       For each of PostgreSQL ($PG_MAJOR, default 18), Go and Keycloak: use the official
#       image (postgres:$PG_MAJOR, golang:1.26-bookworm, quay.io/keycloak/keycloak:26.7.3)
#       if the engine has it or `docker pull` gets it; otherwise build the stand-in (once:
#       a stand-in whose recipe did not change is reused). Prints, on stdout,
#           OJW_PG_IMAGE=...  OJW_GO_IMAGE=...  OJW_KEYCLOAK_IMAGE=...
#       one per line: the build arguments PG_IMAGE / GO_IMAGE of docker/Dockerfile and
#       the variables POSTGRES_IMAGE / GO_IMAGE / KEYCLOAK_IMAGE of docker/compose.yaml.
#   images.sh standins
#       Build (or reuse) every stand-in without trying the official images.
#
# Stand-ins are tagged oauth_jwt-standin/<what>:<version>, never with an official name,
# whatever engine this is: a registry-less machine then cannot confuse them with the real
# images, and the official names keep meaning what they mean. Their recipes:
#   base      Debian sid by `debootstrap --variant=minbase`, imported with `docker import`;
#             apt told that the archive may be a dated snapshot (Check-Valid-Until off) and
#             the machine's extra CA certificates (/usr/local/share/ca-certificates, the
#             egress proxy's) trusted, for the image steps that download over https.
#   postgres  docker/standin/postgres.Dockerfile (+ postgres-entrypoint.sh)
#   golang    docker/standin/golang.Dockerfile
#   keycloak  docker/standin/keycloak.Dockerfile, from the distribution scripts/keycloak.sh
#             caches (waits while another process is still fetching it)
#
# Environment: DOCKER_HOST (scripts/docker.sh start prints it), PG_MAJOR (18 or 19),
# OJW_PULL=never (do not try the registry), GOPROXY/GOFLAGS (passed to the Go stand-in),
# OAUTH_JWT_CACHE (keycloak.sh's cache), OJW_STANDIN_DIR (work dir for debootstrap,
# default /var/cache/oauth_jwt/standin). Progress on stderr, build logs in that directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
standin=$repo/docker/standin
work=${OJW_STANDIN_DIR:-/var/cache/oauth_jwt/standin}
pg_major=${PG_MAJOR:-18}
go_version=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$repo/go.mod")
kc_version=${KEYCLOAK_VERSION:-26.7.3}
suite=sid
mirror=${OJW_DEBIAN_MIRROR:-http://deb.debian.org/debian}

official_pg=postgres:$pg_major
official_go=golang:1.26-bookworm
official_kc=quay.io/keycloak/keycloak:$kc_version

base_tag=oauth_jwt-standin/debian:$suite
pg_tag=oauth_jwt-standin/postgres:$pg_major
go_tag=oauth_jwt-standin/golang:$go_version
kc_tag=oauth_jwt-standin/keycloak:$kc_version

log() { printf 'images.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-2}"; }

command -v docker >/dev/null || die "no docker CLI (scripts/docker.sh start installs docker.io)"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
	die "no Docker engine reachable (DOCKER_HOST=${DOCKER_HOST:-unset}): run scripts/docker.sh start and export DOCKER_HOST"
mkdir -p "$work"

# recipe_hash FILE... : what a stand-in is built from; stored as a label, so that a changed
# recipe is rebuilt and an unchanged one never is.
recipe_hash() { cat "$@" | sha256sum | cut -c1-16; }
label_of() { docker image inspect --format '{{index .Config.Labels "oauth_jwt.standin.recipe"}}' "$1" 2>/dev/null || true; }
have() { docker image inspect "$1" >/dev/null 2>&1; }

# official IMAGE: the engine has it or can pull it.
official() {
	local img=$1
	have "$img" && return 0
	[ "${OJW_PULL:-auto}" = never ] && return 1
	if timeout 600 docker pull -q "$img" >/dev/null 2>"$work/pull.err"; then return 0; fi
	log "cannot pull $img ($(tail -n1 "$work/pull.err")): using a stand-in"
	return 1
}

build_base() {
	local hash
	hash=$(recipe_hash <(declare -f build_base) <(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true) <(echo "$suite $mirror"))
	[ "$(label_of "$base_tag")" = "$hash" ] && return 0
	[ "$(id -u)" = 0 ] || die "building the stand-in base needs root (debootstrap)"
	command -v debootstrap >/dev/null || {
		log "installing debootstrap"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2 ||
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2; }
	}
	local t0=$SECONDS root=$work/rootfs-$suite
	log "building $base_tag: debootstrap --variant=minbase $suite (log $work/debootstrap.log)"
	rm -rf "$root"
	debootstrap --variant=minbase --include=ca-certificates "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed (log $work/debootstrap.log)"; }
	cat >"$root/etc/apt/apt.conf.d/90oauth_jwt-standin" <<-'EOF'
		// oauth_jwt stand-in base: the archive may be a dated snapshot whose Release files
		// are past their Valid-Until; keep the image small.
		Acquire::Check-Valid-Until "false";
		APT::Install-Recommends "false";
		APT::Install-Suggests "false";
	EOF
	# As the official Debian images do (their docker-clean): no package caches left in
	# the layers of `apt-get update && apt-get install` (pkgcache.bin alone is ~50 MB for sid).
	cat >"$root/etc/apt/apt.conf.d/docker-clean" <<-'EOF'
		DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		Dir::Cache::pkgcache "";
		Dir::Cache::srcpkgcache "";
	EOF
	if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
		cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
		chroot "$root" update-ca-certificates >/dev/null
	fi
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/log/* "$root/debootstrap"
	tar -C "$root" --numeric-owner -c . | docker import \
		--change "LABEL oauth_jwt.standin.recipe=$hash" \
		--change 'LABEL org.opencontainers.image.description="oauth_jwt stand-in: Debian '"$suite"' minbase (debootstrap)"' \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
		--change 'CMD ["bash"]' - "$base_tag" >/dev/null
	rm -rf "$root"
	log "built $base_tag in $((SECONDS - t0))s"
}

# build_standin TAG DOCKERFILE CONTEXT HASHFILES... -- BUILDARGS...
build_standin() {
	local tag=$1 dockerfile=$2 context=$3
	shift 3
	local files=() args=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do files+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	args=("$@")
	build_base
	local hash
	hash=$(recipe_hash "$dockerfile" "${files[@]}" <(printf '%s\n' "${args[@]}" "$(docker image inspect --format '{{.Id}}' "$base_tag")"))
	[ "$(label_of "$tag")" = "$hash" ] && return 0
	local t0=$SECONDS name
	name=$(basename "$dockerfile" .Dockerfile)
	log "building $tag from ${dockerfile#"$repo"/} (log $work/$name.log)"
	local buildargs=(--build-arg "BASE=$base_tag" --label "oauth_jwt.standin.recipe=$hash")
	for a in "${args[@]}"; do buildargs+=(--build-arg "$a"); done
	docker build "${buildargs[@]}" -f "$dockerfile" -t "$tag" "$context" >"$work/$name.log" 2>&1 ||
		{ tail -n 30 "$work/$name.log" >&2; die "building $tag failed (log $work/$name.log)"; }
	log "built $tag in $((SECONDS - t0))s"
}

build_pg() {
	build_standin "$pg_tag" "$standin/postgres.Dockerfile" "$standin" "$standin/postgres-entrypoint.sh" -- "PG_MAJOR=$pg_major"
}

build_go() {
	build_standin "$go_tag" "$standin/golang.Dockerfile" "$standin" -- "GO_VERSION=$go_version" \
		"GOPROXY=${GOPROXY:-$(go env GOPROXY 2>/dev/null || echo https://proxy.golang.org,direct)}" \
		"GOSUMDB=${GOSUMDB:-$(go env GOSUMDB 2>/dev/null || echo sum.golang.org)}"
}

build_kc() {
	local home
	# Another process (make test, a test suite) may be fetching it right now: wait.
	if ! home=$(OAUTH_JWT_CACHE=${OAUTH_JWT_CACHE:-} KEYCLOAK_VERSION=$kc_version "$repo/scripts/keycloak.sh" path 2>/dev/null); then
		if pgrep -f 'keycloak.sh fetch' >/dev/null; then
			log "waiting for another scripts/keycloak.sh fetch to finish"
			for _ in $(seq 600); do
				home=$("$repo/scripts/keycloak.sh" path 2>/dev/null) && break
				sleep 2
			done
		fi
		[ -n "${home:-}" ] || home=$("$repo/scripts/keycloak.sh" fetch)
	fi
	build_standin "$kc_tag" "$standin/keycloak.Dockerfile" "$home" "$home/version.txt" -- "KEYCLOAK_VERSION=$kc_version"
}

cmd_resolve() {
	local pg go kc
	if official "$official_pg"; then pg=$official_pg; else build_pg; pg=$pg_tag; fi
	if official "$official_go"; then go=$official_go; else build_go; go=$go_tag; fi
	if official "$official_kc"; then kc=$official_kc; else build_kc; kc=$kc_tag; fi
	printf 'OJW_PG_IMAGE=%s\nOJW_GO_IMAGE=%s\nOJW_KEYCLOAK_IMAGE=%s\n' "$pg" "$go" "$kc"
}

cmd_standins() {
	build_base
	build_pg
	build_go
	build_kc
	printf 'OJW_PG_IMAGE=%s\nOJW_GO_IMAGE=%s\nOJW_KEYCLOAK_IMAGE=%s\n' "$pg_tag" "$go_tag" "$kc_tag"
}

# prune_old: stand-ins replaced by a rebuild (their recipe changed) are left dangling; only
# images carrying the stand-in label are removed.
prune_old() { docker image prune -f --filter label=oauth_jwt.standin.recipe >/dev/null 2>&1 || true; }

case "${1:-}" in
resolve) cmd_resolve; prune_old ;;
standins) cmd_standins; prune_old ;;
base) build_base; echo "$base_tag" ;;
-h | --help | help) usage 0 ;;
*) usage ;;
esac
