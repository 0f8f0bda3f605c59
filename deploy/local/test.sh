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
# a pinned version in a venv cached outside the clone, created only when missing, of another
# version, or built on an interpreter with the AST bug below. The test finds `st` through
# AGORA_TEST_SCHEMATHESIS.
SCHEMATHESIS_VERSION=${AGORA_SCHEMATHESIS_VERSION:-4.32.5}
SCHEMATHESIS_VENV=${AGORA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/agora}/venv-schemathesis
# CPython before 3.11.8 and 3.12.2 shares one AST recursion counter between threads, so
# Hypothesis parsing lambda sources while a GC callback runs can raise "SystemError: AST
# constructor recursion depth mismatch" (cpython#106905, fixed by cpython#113035). Schemathesis
# reports that as an error of the operation under test, so the venv is built on a fixed one.
PY_AST_FIXED='import sys, ensurepip, venv; v = sys.version_info; sys.exit(0 if v >= (3, 13) or (3, 12, 2) <= v < (3, 13) or (3, 11, 8) <= v < (3, 12) else 1)'
PY_VERSION='import sys; print("%d.%d.%d" % sys.version_info[:3])'
pick_python() {
	local candidates=() c
	for c in python3.14 python3.13 python3.12 python3.11 python3; do
		if command -v "$c" >/dev/null 2>&1; then candidates+=("$(command -v "$c")"); fi
	done
	# pyenv keeps versions that its shims do not expose unless selected.
	if command -v pyenv >/dev/null 2>&1; then
		for c in "$(pyenv root)"/versions/*/bin/python3; do
			if [[ -x $c ]]; then candidates+=("$c"); fi
		done
	fi
	# The newest fixed one: "version path" lines, sorted by version.
	for c in "${candidates[@]}"; do
		if "$c" -c "$PY_AST_FIXED" >/dev/null 2>&1; then
			printf '%s %s\n' "$("$c" -c "$PY_VERSION")" "$c"
		fi
	done | sort -V | tail -n1 | cut -d' ' -f2-
}
ensure_schemathesis() {
	local st=$SCHEMATHESIS_VENV/bin/st
	if [[ -x $st ]] && [[ $("$st" --version 2>/dev/null) == *" $SCHEMATHESIS_VERSION" ]] &&
		"$SCHEMATHESIS_VENV/bin/python3" -c "$PY_AST_FIXED" >/dev/null 2>&1; then
		say "schemathesis $SCHEMATHESIS_VERSION present ($st, Python $("$SCHEMATHESIS_VENV/bin/python3" -c "$PY_VERSION"))"
	else
		local python
		python=$(pick_python)
		if [[ -z $python ]]; then
			command -v python3 >/dev/null 2>&1 || {
				say "python3 not found: install Python 3.11.8+ (Debian: apt-get install python3 python3-venv)" >&2
				exit 1
			}
			python=$(command -v python3)
			say "warning: no Python 3.11.8+/3.12.2+ found; $python has cpython#106905, so schemathesis may report spurious 'AST constructor recursion depth mismatch' errors" >&2
		fi
		if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
			command -v apt-get >/dev/null 2>&1 || {
				say "$python has no venv/ensurepip and there is no apt-get to install python3-venv" >&2
				exit 1
			}
			local sudo=()
			((EUID == 0)) || sudo=(sudo)
			say "apt: installing python3-venv"
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
		fi
		say "installing schemathesis $SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV (Python $("$python" -c "$PY_VERSION"), $python)"
		mkdir -p "$(dirname "$SCHEMATHESIS_VENV")"
		rm -rf "$SCHEMATHESIS_VENV"
		"$python" -m venv "$SCHEMATHESIS_VENV"
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
