#!/usr/bin/env bash
# Installs what building Agora needs beyond Rust itself, only when missing: a C toolchain,
# pkg-config and zlib headers (rdkafka builds its bundled librdkafka with them), and curl
# (system.sh checks /ready with it).
set -euo pipefail

say() { printf '[build-deps] %s\n' "$*"; }

command -v cargo >/dev/null 2>&1 || {
	say "cargo not found: install Rust with rustup (https://rustup.rs), then rerun" >&2
	exit 1
}

missing=()
for p in build-essential pkg-config zlib1g-dev curl; do
	if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) != "install ok installed" ]]; then
		missing+=("$p")
	fi
done
if ((${#missing[@]} > 0)); then
	command -v apt-get >/dev/null 2>&1 || {
		say "missing packages (${missing[*]}) and no apt-get to install them" >&2
		exit 1
	}
	sudo=()
	((EUID == 0)) || sudo=(sudo)
	say "apt: installing ${missing[*]}"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
say "build prerequisites present"
