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

cargo build -q --release -p agora-loadtests
say "agora: POST /v1/posts"
target/release/agora-bench-posts --seconds "$SECONDS_PER_PHASE" >"$OUT/posts.json"
cat "$OUT/posts.json" >&2

# One post.created event as stored, for the record size of the baseline.
RECORD_BYTES=$(kcat -b "$BROKERS" -C -t agora.posts -o -1 -c 1 -e -q -f '%S\n' 2>/dev/null | tail -n 1)
RECORD_BYTES=${RECORD_BYTES:-640}
say "kafka baseline: ProducerPerformance, ${RECORD_BYTES}-byte records, acks=all, idempotent"
java -cp "$LIBS/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$BROKERS" --create --if-not-exists \
	--topic agora-bench.baseline --partitions 12 --config retention.ms=600000 >/dev/null
RATE_RECORDS=$(($(python3 -c "import json;print(int(json.load(open('$OUT/posts.json'))['capacity_posts_per_s']))") * SECONDS_PER_PHASE * 4 + 50000))
java -Xmx512m -cp "$LIBS/*" org.apache.kafka.tools.ProducerPerformance --topic agora-bench.baseline \
	--num-records "$RATE_RECORDS" --record-size "$RECORD_BYTES" --throughput -1 \
	--producer-props "bootstrap.servers=$BROKERS" acks=all enable.idempotence=true linger.ms=2 compression.type=lz4 \
	2>/dev/null | tail -n 1 | tee "$OUT/kafka-producer-perf.txt" >&2
python3 - "$OUT" <<'PY'
import json, re, sys
out = sys.argv[1]
agora = json.load(open(f"{out}/posts.json"))
line = open(f"{out}/kafka-producer-perf.txt").read()
kafka = float(re.search(r"([\d.]+) records/sec", line).group(1))
result = {"agora": agora, "kafka_records_per_s": round(kafka), "ratio_agora_to_kafka": round(agora["capacity_posts_per_s"] / kafka, 3)}
json.dump(result, open(f"{out}/write-path.json", "w"), indent=2)
print(json.dumps(result, indent=2))
PY
