#!/usr/bin/env bash
# Read-side benchmark (issue 4): projector events/s with batching against one write per event,
# catch-up time for a synthetic log, and feed reads/s cached and uncached, beside the raw rates
# of the stores underneath (redis-benchmark GET, a bulk insert into the MongoDB-protocol store),
# in one run. Needs only the local stack (deploy/local/stack.sh up); it runs its own projector
# and query-api in-process against a topic prefix and databases of its own. Loopback only.
#
#   loadtests/bench-read.sh [events]        default 200000; results in .local/bench/read-path.json
#
# AGORA_BENCH_SINGLE_SECONDS (default 60): how long the one-write-per-event projector runs;
# AGORA_BENCH_READ_SECONDS (default 15): each feed-read phase; AGORA_BENCH_CONCURRENCY (32).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
EVENTS=${1:-200000}
OUT=.local/bench
mkdir -p "$OUT"
say() { printf '[bench-read] %s\n' "$*" >&2; }
REDIS_URL=${AGORA_REDIS_URL:-redis://127.0.0.1:6379}
REDIS_HOSTPORT=${REDIS_URL#redis://}
REDIS_HOSTPORT=${REDIS_HOSTPORT%%/*}

cargo build -q --release -p agora-loadtests --bin agora-bench-read
say "redis-benchmark GET (50 clients, 200000 requests)"
REDIS_GET=$(redis-benchmark -h "${REDIS_HOSTPORT%:*}" -p "${REDIS_HOSTPORT##*:}" -t get -n 200000 -c 50 -q --csv |
	awk -F'"' '/GET/ {print $4}')
say "redis GET: $REDIS_GET requests/s"
target/release/agora-bench-read --events "$EVENTS" \
	--single-seconds "${AGORA_BENCH_SINGLE_SECONDS:-60}" --read-seconds "${AGORA_BENCH_READ_SECONDS:-15}" \
	--concurrency "${AGORA_BENCH_CONCURRENCY:-32}" >"$OUT/read-side.json"
python3 - "$OUT/read-side.json" "$REDIS_GET" "$OUT/read-path.json" <<'PY'
import json, sys, platform, os
r = json.load(open(sys.argv[1]))
redis_get = float(sys.argv[2])
r["redis_benchmark_get_per_sec"] = redis_get
f = r["feed_reads"]
r["ratios"] = {
    "batching_vs_one_write_per_event": r["projector"]["batching_ratio"],
    "batched_vs_raw_bulk_insert": r["store"]["batched_to_bulk_ratio"],
    "cached_feed_reads_vs_redis_get": f["cached"]["reads_per_sec"] / redis_get,
    "cached_vs_uncached_feed_reads": f["cached"]["reads_per_sec"] / max(f["uncached"]["reads_per_sec"], 0.001),
}
r["targets"] = {"batching_vs_one_write_per_event": 10, "batched_vs_raw_bulk_insert": 0.5, "cached_feed_reads_vs_redis_get": 0.25}
r["machine"] = {"host": platform.node(), "cpus": os.cpu_count()}
json.dump(r, open(sys.argv[3], "w"), indent=2)
print(json.dumps(r, indent=2))
PY
say "results in $OUT/read-path.json (the benchmark's databases are dropped; its topics, prefix benchread*, stay until Kafka's retention)"
