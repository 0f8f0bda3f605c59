#!/usr/bin/env bash
# The run command: the whole system on this machine. Installs and starts the local stack,
# builds the four services and starts them, then waits until each one's /ready answers 200.
#
#   deploy/local/system.sh up        stack + command-api, query-api, realtime, projector
#   deploy/local/system.sh down      stop the services (SIGTERM, graceful), then the stack
#   deploy/local/system.sh status    one line per service
#
# Environment: AGORA_PROFILE (release|dev, default release); the services read the AGORA_*
# variables the README lists (defaults: the local stack and the contract's ports).
# Logs: .local/system/logs/<service>.log; pids: .local/system/run/<service>.pid
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd)

PROFILE=${AGORA_PROFILE:-release}
SYS_DIR=$ROOT/.local/system
LOG_DIR=$SYS_DIR/logs
RUN_DIR=$SYS_DIR/run
WAIT_SECS=${AGORA_SYSTEM_WAIT_SECS:-60}
STOP_SECS=${AGORA_SYSTEM_STOP_SECS:-20}

SERVICES=(command-api query-api realtime projector)

say() { printf '[system] %s\n' "$*"; }
die() {
	printf '[system] ERROR: %s\n' "$*" >&2
	exit 1
}

addr_of() {
	case $1 in
	command-api) echo "${AGORA_COMMAND_ADDR:-127.0.0.1:8081}" ;;
	query-api) echo "${AGORA_QUERY_ADDR:-127.0.0.1:8082}" ;;
	realtime) echo "${AGORA_REALTIME_ADDR:-127.0.0.1:8083}" ;;
	projector) echo "${AGORA_PROJECTOR_ADDR:-127.0.0.1:8084}" ;;
	esac
}

pid_of() {
	local f=$RUN_DIR/$1.pid
	[[ -f $f ]] || return 1
	local pid
	pid=$(<"$f")
	kill -0 "$pid" 2>/dev/null || return 1
	echo "$pid"
}

ready() { # service -> 0 if /ready answers 200
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$(addr_of "$1")/ready" || true)
	[[ $code == 200 ]]
}

bin_dir() {
	if [[ $PROFILE == release ]]; then echo "$ROOT/target/release"; else echo "$ROOT/target/debug"; fi
}

cmd_up() {
	command -v curl >/dev/null 2>&1 || die "curl is needed to check /ready (apt-get install -y curl)"
	deploy/local/build-deps.sh
	deploy/local/stack.sh up
	local flags=()
	[[ $PROFILE == release ]] && flags+=(--release)
	say "building the services (cargo build ${flags[*]})"
	cargo build "${flags[@]}" -p agora-command-api -p agora-query-api -p agora-realtime -p agora-projector
	mkdir -p "$LOG_DIR" "$RUN_DIR"
	local s pid
	for s in "${SERVICES[@]}"; do
		if pid=$(pid_of "$s"); then
			say "$s: already running (pid $pid)"
			continue
		fi
		say "$s: starting on $(addr_of "$s") (log $LOG_DIR/$s.log)"
		nohup setsid "$(bin_dir)/agora-$s" >>"$LOG_DIR/$s.log" 2>&1 </dev/null &
		echo $! >"$RUN_DIR/$s.pid"
	done
	for s in "${SERVICES[@]}"; do
		local deadline=$((SECONDS + WAIT_SECS))
		until ready "$s"; do
			if ! pid_of "$s" >/dev/null; then
				tail -n 20 "$LOG_DIR/$s.log" >&2 || true
				die "$s exited during start; read $LOG_DIR/$s.log"
			fi
			if ((SECONDS >= deadline)); then
				tail -n 20 "$LOG_DIR/$s.log" >&2 || true
				die "$s not ready after ${WAIT_SECS}s (GET http://$(addr_of "$s")/ready); read $LOG_DIR/$s.log"
			fi
			sleep 0.5
		done
		say "$s: ready at http://$(addr_of "$s")"
	done
	say "the system is up: command-api :8081, query-api :8082, realtime :8083 (ws /v1/stream), projector :8084"
}

cmd_down() {
	local s pid
	for s in "${SERVICES[@]}"; do
		if pid=$(pid_of "$s"); then
			say "$s: stopping (SIGTERM, pid $pid)"
			kill -TERM "$pid" 2>/dev/null || true
		fi
	done
	for s in "${SERVICES[@]}"; do
		if pid=$(pid_of "$s"); then
			local deadline=$((SECONDS + STOP_SECS))
			while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
			if kill -0 "$pid" 2>/dev/null; then
				say "$s: still running after ${STOP_SECS}s; SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
			fi
		fi
		rm -f "$RUN_DIR/$s.pid"
	done
	deploy/local/stack.sh down
}

cmd_status() {
	local s pid all=0
	for s in "${SERVICES[@]}"; do
		if pid=$(pid_of "$s"); then
			if ready "$s"; then state=ready; else state="up, not ready"; fi
			printf '%-12s %-14s pid %-8s http://%s\n' "$s" "$state" "$pid" "$(addr_of "$s")"
		else
			printf '%-12s %-14s\n' "$s" down
			all=3
		fi
	done
	deploy/local/stack.sh status || all=3
	return $all
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
	echo "usage: deploy/local/system.sh up|down|status" >&2
	exit 2
	;;
esac
