#!/usr/bin/env bash
# The test command: starts the local stack if it is not up (installing it on first use) and
# runs the whole test suite against it. Extra arguments go to `cargo test`.
#
#   deploy/local/test.sh                 everything
#   deploy/local/test.sh -p agora-schemas
#
# The stack stays up afterwards; `deploy/local/stack.sh down` stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

say() { printf '[test] %s\n' "$*"; }

deploy/local/build-deps.sh
say "starting the local stack (Kafka, FerretDB, Redis)"
deploy/local/stack.sh up
say "running the test suite"
if (($# > 0)); then
	exec cargo test "$@"
fi
exec cargo test --workspace --all-targets
