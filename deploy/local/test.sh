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

# Schemathesis for command-api's API conformance test (command-api/tests/schemathesis.rs):
# a pinned version in a venv cached outside the clone, created only when missing or of
# another version. The test finds `st` through AGORA_TEST_SCHEMATHESIS.
SCHEMATHESIS_VERSION=${AGORA_SCHEMATHESIS_VERSION:-4.32.5}
SCHEMATHESIS_VENV=${AGORA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agora}/venv-schemathesis
ensure_schemathesis() {
	local st=$SCHEMATHESIS_VENV/bin/st
	if [[ -x $st ]] && [[ $("$st" --version 2>/dev/null) == *" $SCHEMATHESIS_VERSION" ]]; then
		say "schemathesis $SCHEMATHESIS_VERSION present ($st)"
	else
		command -v python3 >/dev/null 2>&1 || {
			say "python3 not found: install Python 3.10+ (Debian: apt-get install python3 python3-venv)" >&2
			exit 1
		}
		if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
			command -v apt-get >/dev/null 2>&1 || {
				say "python3 has no venv/ensurepip and there is no apt-get to install python3-venv" >&2
				exit 1
			}
			local sudo=()
			((EUID == 0)) || sudo=(sudo)
			say "apt: installing python3-venv"
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
		fi
		say "installing schemathesis $SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV"
		mkdir -p "$(dirname "$SCHEMATHESIS_VENV")"
		[[ -x $SCHEMATHESIS_VENV/bin/python3 ]] || python3 -m venv "$SCHEMATHESIS_VENV"
		"$SCHEMATHESIS_VENV/bin/python3" -m pip install --quiet --disable-pip-version-check \
			"schemathesis==$SCHEMATHESIS_VERSION"
		[[ $("$st" --version 2>/dev/null) == *" $SCHEMATHESIS_VERSION" ]] || {
			say "installing schemathesis $SCHEMATHESIS_VERSION left no working $st" >&2
			exit 1
		}
	fi
	export AGORA_TEST_SCHEMATHESIS=$st
}

deploy/local/build-deps.sh
ensure_schemathesis
say "starting the local stack (Kafka, FerretDB, Redis)"
deploy/local/stack.sh up
# What earlier runs left (tests keep their data for inspection) would otherwise pile up into
# thousands of topics and databases that make Kafka and FerretDB slow to start and answer.
say "removing earlier test runs' topics, groups, databases and keys"
cargo run --quiet -p agora-testkit --bin agora-clean-test-data
say "running the test suite"
if (($# > 0)); then
	exec cargo test "$@"
fi
exec cargo test --workspace --all-targets
