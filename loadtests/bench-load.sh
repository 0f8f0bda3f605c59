#!/usr/bin/env bash
# The standard benchmark (issue 6): the load generator of virtual users against the running
# system, the raw engine baselines in the same run, then docs/benchmarks.json and the report
# generated from it (docs/benchmarks.md, docs/benchmarks/<tier>.svg). Needs the system up
# (`deploy/local/system.sh up`, the README's run command). Loopback only; bounded in time.
#
#   loadtests/bench-load.sh [preset] [agora-load run flags]    preset 1k (default), 10k, 100k
#
# The 1k preset takes about 9 minutes on a 2-core machine: setup ~2.5 min, five 30 s steps,
# up to ~3 min for the overloaded steps' backlog to drain, the baselines ~30 s. Another
# preset or flags (e.g. --step-secs 10) write their JSON to .local/bench/load-<preset>.json
# and leave docs/ alone, unless AGORA_LOAD_JSON says otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PRESET=${1:-1k}
shift || true
if [[ $PRESET == 1k && $# -eq 0 ]]; then
	JSON=${AGORA_LOAD_JSON:-docs/benchmarks.json}
else
	JSON=${AGORA_LOAD_JSON:-.local/bench/load-$PRESET.json}
fi
say() { printf '[bench-load] %s\n' "$*" >&2; }

for url in "${AGORA_LOAD_COMMAND_URL:-http://127.0.0.1:8081}" "${AGORA_LOAD_QUERY_URL:-http://127.0.0.1:8082}" \
	"${AGORA_LOAD_REALTIME_URL:-http://127.0.0.1:8083}"; do
	curl -fsS -o /dev/null --max-time 5 "$url/ready" || {
		say "$url/ready does not answer: start the system first (deploy/local/system.sh up)"
		exit 1
	}
done
cargo build -q --release -p agora-loadtests --bin agora-load
say "preset $PRESET, results in $JSON"
target/release/agora-load run --preset "$PRESET" --json "$JSON" "$@"
if [[ $JSON == docs/benchmarks.json ]]; then
	target/release/agora-load report --json "$JSON" --docs docs
fi
