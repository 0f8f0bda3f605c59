#!/usr/bin/env bash
# Push benchmark (issue 5, "Measure"): Agora's realtime tier beside the old system's stack,
# Socket.IO 4 with its Redis adapter (loadtests/socketio/), with the same sockets and the same
# event rates, in one run:
#   1. memory per socket on one server process (10K, then 19K sockets);
#   2. 100K sockets over 6 server processes (client processes on 127.0.0.x source addresses);
#   3. push latency p50/p99/p99.9, frames lost and events per server CPU-second at a steady
#      1,000 events/s;
#   4. Socket.IO's rate ramp (x2 steps) to the rate R where its p99 passes 100 ms, Agora's own
#      ramp, and Agora at 5R.
# Needs only the local stack (deploy/local/stack.sh up); it starts its own realtime and
# Socket.IO processes under a topic/Redis prefix of its own, and stops them at the end.
# Loopback only; every phase is bounded in count and time, the whole run by --max-minutes.
#
#   loadtests/bench-push.sh [agora-bench-push flags]    results in .local/bench/push.json
#
# A small run: loadtests/bench-push.sh --memory-steps 500,1000 --sockets 2000 --servers 2 \
#   --steady-secs 10 --ramp-secs 5 --ramp-start 500 --ramp-max 4000 --agora-ramp false
# Flags: see the header of loadtests/src/bin/agora-bench-push.rs and loadtests/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=.local/bench
mkdir -p "$OUT"
say() { printf '[bench-push] %s\n' "$*" >&2; }

STATUS=$(deploy/local/stack.sh status 2>&1) || true
for svc in kafka redis ferretdb; do
	if ! awk -v s="$svc" '$1 == s && $2 == "up" { found = 1 } END { exit !found }' <<<"$STATUS"; then
		say "$svc is not up: start the local stack first (deploy/local/stack.sh up)"
		printf '%s\n' "$STATUS" >&2
		exit 1
	fi
done
KAFKA_PID=$(awk '$1 == "kafka" && $2 == "up" && $3 == "pid" { print $4 }' <<<"$STATUS")

say "building agora-realtime and agora-bench-push (release)"
cargo build -q --release -p agora-realtime -p agora-loadtests --bin agora-realtime --bin agora-bench-push

SIO=loadtests/socketio
if [[ ! -d $SIO/node_modules || $SIO/package-lock.json -nt $SIO/node_modules/.package-lock.json ]]; then
	say "installing the Socket.IO stack (npm ci in $SIO)"
	(cd "$SIO" && npm ci --no-audit --no-fund --loglevel=error)
fi

PREFIX=benchpush$(date +%s%3N)
say "creating the topics of prefix $PREFIX"
deploy/local/stack.sh topics "$PREFIX" >/dev/null

target/release/agora-bench-push run --prefix "$PREFIX" --out "$OUT/push.json" ${KAFKA_PID:+--kafka-pid "$KAFKA_PID"} "$@"
say "results in $OUT/push.json; logs in $OUT/push-logs/$PREFIX (the run's Redis keys are deleted; its topics, $PREFIX.*, stay until Kafka's retention)"
