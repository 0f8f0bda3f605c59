#!/usr/bin/env bash
# Write-path benchmark: accepted POST /v1/posts per second and p50/p99 at half that rate,
# beside Kafka's own ProducerPerformance (same jars, acks=all, idempotent) writing records of
# the size of a post.created event, in one run. Needs the system up (deploy/local/system.sh up).
# Loopback only; bounded by --seconds.
#
#   loadtests/bench-posts.sh [seconds]      default 15; results in .local/bench/
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECONDS_PER_PHASE=${1:-15}
OUT=.local/bench
mkdir -p "$OUT"
CACHE=${AGORA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agora}
LIBS=$(printf '%s\n' "$CACHE"/kafka-*/libs | sort -V | tail -n 1)
BROKERS=${AGORA_KAFKA_BROKERS:-127.0.0.1:9092}

say() { printf '[bench] %s\n' "$*" >&2; }

RUN_DIR=.local/system/run
pause_readers() { # SIGSTOP (or SIGCONT) the projector and the realtime tier of system.sh
	local s
	for s in projector realtime; do
		[[ -f $RUN_DIR/$s.pid ]] && kill "-$1" "$(cat "$RUN_DIR/$s.pid")" 2>/dev/null || true
	done
}
trap 'pause_readers CONT' EXIT

cargo build -q --release -p agora-loadtests
say "agora: POST /v1/posts, the whole system running (projector and realtime share the 2 cores)"
target/release/agora-bench-posts --seconds "$SECONDS_PER_PHASE" --users "${AGORA_BENCH_USERS:-400}" >"$OUT/posts.json"
cat "$OUT/posts.json" >&2
say "letting the projector catch up (30 s)"
sleep 30
say "agora: POST /v1/posts, the write tier alone (projector and realtime paused with SIGSTOP)"
pause_readers STOP
target/release/agora-bench-posts --seconds "$SECONDS_PER_PHASE" --users "${AGORA_BENCH_USERS:-400}" >"$OUT/posts-write-tier.json"
cat "$OUT/posts-write-tier.json" >&2

# One post.created event as stored, for the record size of the baseline.
RECORD_BYTES=$(kcat -b "$BROKERS" -C -t agora.posts -o -1 -c 1 -e -q -f '%S\n' 2>/dev/null | tail -n 1)
RECORD_BYTES=${RECORD_BYTES:-640}
# Enough records for ~10 s at Kafka's rate here: a short run measures the JVM's warm-up.
RECORDS=${AGORA_BENCH_KAFKA_RECORDS:-1000000}
say "kafka baseline (readers still paused, as for the write tier): ProducerPerformance, $RECORDS ${RECORD_BYTES}-byte records, acks=all, idempotent, linger.ms=2, lz4"
java -cp "$LIBS/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$BROKERS" --create --if-not-exists \
	--topic agora-bench.baseline --partitions 12 --config retention.ms=600000 >/dev/null
java -Xmx512m -cp "$LIBS/*" org.apache.kafka.tools.ProducerPerformance --topic agora-bench.baseline \
	--num-records "$RECORDS" --record-size "$RECORD_BYTES" --throughput -1 \
	--producer-props "bootstrap.servers=$BROKERS" acks=all enable.idempotence=true linger.ms=2 compression.type=lz4 \
	2>/dev/null | tail -n 1 | tee "$OUT/kafka-producer-perf.txt" >&2
pause_readers CONT
python3 - "$OUT" "$(nproc)" <<'PY'
import json, re, sys
out, cores = sys.argv[1], int(sys.argv[2])
full = json.load(open(f"{out}/posts.json"))
alone = json.load(open(f"{out}/posts-write-tier.json"))
line = open(f"{out}/kafka-producer-perf.txt").read()
kafka = float(re.search(r"([\d.]+) records/sec", line).group(1))
result = {
    "cores": cores,
    "agora_whole_system": full,
    "agora_write_tier_alone": alone,
    "kafka_records_per_s": round(kafka),
    "kafka_line": line.strip(),
    "ratio_whole_system_to_kafka": round(full["capacity_posts_per_s"] / kafka, 3),
    "ratio_write_tier_to_kafka": round(alone["capacity_posts_per_s"] / kafka, 3),
}
json.dump(result, open(f"{out}/write-path.json", "w"), indent=2)
print(json.dumps(result, indent=2))
PY
