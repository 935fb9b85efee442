#!/usr/bin/env bash
# scripts/docker.sh — a Docker engine for the container suite (docker/e2e_test.go).
#
#   docker.sh start
#       Use a reachable engine as it is: $DOCKER_HOST if set, else the default socket
#       (/var/run/docker.sock). When none answers, start a private dockerd (as root;
#       installs Debian's docker.io with apt-get first when dockerd is missing) with all
#       its state under $OAUTH_JWT_DOCKER_DIR (default /var/cache/oauth_jwt/docker):
#       data-root, exec-root, socket, pidfile, log, its own (empty) daemon.json. It never
#       reads or writes /etc/docker, /var/lib/docker or /var/run/docker.sock. Waits until
#       the engine answers (default 120 s, DOCKER_START_TIMEOUT). Prints the engine's
#       address (a DOCKER_HOST value) on stdout.
#   docker.sh env
#       Print `export DOCKER_HOST=...` for the engine start would use (for eval); exit 3
#       when there is none.
#   docker.sh stop
#       Stop the private dockerd (TERM by its pid, KILL after 30 s) if this script started
#       one; an engine it did not start is left alone.
#   docker.sh prune
#       Remove the private engine's dangling images and build cache older than a day (the
#       container suite builds layers on every source change). Other engines: nothing.
#   docker.sh purge
#       stop, then delete $OAUTH_JWT_DOCKER_DIR (every image and container of the private
#       engine). The docker.io package and the docker0 bridge stay (README says how to
#       remove them).
#
# What a private engine changes on the machine (README "Containers"): the docker.io
# package (with containerd, runc, iptables) when it was missing; while it runs, the bridge
# docker0 (172.17.0.0/16) and iptables NAT/FILTER rules (chains DOCKER, DOCKER-USER,
# DOCKER-ISOLATION-*) so that containers reach the outside; net.ipv4.ip_forward=1.
# All progress goes to stderr; stdout carries only the result.
set -euo pipefail

dir=${OAUTH_JWT_DOCKER_DIR:-/var/cache/oauth_jwt/docker}
sock=$dir/docker.sock
pidfile=$dir/dockerd.pid
private_host=unix://$sock
timeout=${DOCKER_START_TIMEOUT:-120}

log() { printf 'docker.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-2}"; }

# answers HOST: the engine at HOST answers the API (docker CLI if present, else curl/bash).
answers() {
	local host=$1
	if command -v docker >/dev/null; then
		DOCKER_HOST=$host timeout 20 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
		return
	fi
	case "$host" in
	unix://*) command -v curl >/dev/null && curl -fsS --max-time 10 --unix-socket "${host#unix://}" http://d/_ping >/dev/null 2>&1 ;;
	*) return 1 ;;
	esac
}

# existing: prints the address of an engine that answers without us, if any.
existing() {
	if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "$private_host" ]; then
		answers "$DOCKER_HOST" && { echo "$DOCKER_HOST"; return 0; }
		die "DOCKER_HOST=$DOCKER_HOST does not answer (unset it to let this script start a private engine)"
	fi
	if [ -S /var/run/docker.sock ] && answers unix:///var/run/docker.sock; then
		echo unix:///var/run/docker.sock
		return 0
	fi
	return 1
}

private_pid() {
	local pid
	[ -f "$pidfile" ] || return 1
	pid=$(cat "$pidfile")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$(command -v dockerd)" 2>/dev/null)" ] || return 1
	echo "$pid"
}

install_engine() {
	command -v dockerd >/dev/null && return 0
	[ "$(id -u)" = 0 ] || die "no Docker engine reachable and dockerd is not installed; as root this script installs Debian's docker.io (or install Docker yourself and set DOCKER_HOST)"
	command -v apt-get >/dev/null || die "no Docker engine reachable and no apt-get to install one: install Docker (https://docs.docker.com/engine/install/) and set DOCKER_HOST"
	log "installing docker.io with apt-get (dockerd, containerd, runc, iptables)"
	# The package's postinst would start the system's docker service (its socket, its
	# /var/lib/docker): policy-rc.d forbids service starts during the installation.
	local policy=/usr/sbin/policy-rc.d made_policy=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 0755 "$policy" && made_policy=1
	fi
	local rc=0
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >&2; } || rc=$?
	[ -z "$made_policy" ] || rm -f "$policy"
	[ "$rc" = 0 ] || die "apt-get install docker.io failed"
	command -v dockerd >/dev/null || die "docker.io installed but no dockerd on PATH"
}

cmd_start() {
	local host
	if host=$(existing); then echo "$host"; return 0; fi
	if private_pid >/dev/null && answers "$private_host"; then echo "$private_host"; return 0; fi
	[ "$(id -u)" = 0 ] || die "no Docker engine reachable (DOCKER_HOST unset, /var/run/docker.sock absent or silent); run this as root to start a private one, or start Docker and set DOCKER_HOST"
	install_engine
	mkdir -p "$dir/data" "$dir/exec"
	exec 9>"$dir/.lock"
	flock 9
	if private_pid >/dev/null && answers "$private_host"; then echo "$private_host"; return 0; fi
	[ -f "$dir/daemon.json" ] || echo '{}' > "$dir/daemon.json"
	rm -f "$sock" "$pidfile"
	log "starting a private dockerd (state in $dir, log $dir/dockerd.log)"
	# setsid: its own session, so that the caller's terminal or make's signals do not reach it.
	setsid dockerd --config-file "$dir/daemon.json" --data-root "$dir/data" --exec-root "$dir/exec" \
		-H "$private_host" --pidfile "$pidfile" --storage-driver overlay2 \
		</dev/null >"$dir/dockerd.log" 2>&1 9>&- &
	local started=$SECONDS
	until answers "$private_host"; do
		if ! kill -0 $! 2>/dev/null; then
			tail -n 30 "$dir/dockerd.log" >&2
			die "dockerd exited (log: $dir/dockerd.log)"
		fi
		if [ $((SECONDS - started)) -ge "$timeout" ]; then
			tail -n 30 "$dir/dockerd.log" >&2
			kill $! 2>/dev/null || true
			die "dockerd did not answer within ${timeout}s (log: $dir/dockerd.log)"
		fi
		sleep 1
	done
	log "private dockerd up in $((SECONDS - started))s: DOCKER_HOST=$private_host"
	echo "$private_host"
}

cmd_env() {
	local host
	if host=$(existing 2>/dev/null); then :
	elif private_pid >/dev/null && answers "$private_host"; then host=$private_host
	else log "no Docker engine reachable: run scripts/docker.sh start"; exit 3
	fi
	printf 'export DOCKER_HOST=%q\n' "$host"
}

cmd_stop() {
	local pid
	pid=$(private_pid) || { log "no private dockerd running (an engine this script did not start is left alone)"; return 0; }
	log "stopping the private dockerd (pid $pid)"
	kill -TERM "$pid"
	for _ in $(seq 30); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
		sleep 1
	done
	log "dockerd $pid still running after 30 s: KILL"
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$pidfile"
}

cmd_prune() {
	private_pid >/dev/null && answers "$private_host" || { log "no private dockerd running: nothing pruned"; return 0; }
	DOCKER_HOST=$private_host docker image prune -f >&2
	DOCKER_HOST=$private_host docker builder prune -f --filter until=24h >&2
}

cmd_purge() {
	cmd_stop
	case "$dir" in /var/cache/oauth_jwt/* | */oauth_jwt/*) ;; *) die "refusing to delete $dir (not an oauth_jwt cache directory)" ;; esac
	# Mounts the engine left behind (overlay layers, netns) must go before the files.
	grep -o " $dir/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf "$dir"
	log "removed $dir"
}

case "${1:-}" in
start) cmd_start ;;
env) cmd_env ;;
stop) cmd_stop ;;
prune) cmd_prune ;;
purge) cmd_purge ;;
-h | --help | help) usage 0 ;;
*) usage ;;
esac
