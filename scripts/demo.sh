#!/usr/bin/env bash
# Runs the weir demo: an embedded default config, in-process upstreams, the proxy, and traffic,
# printing what happens. Works on a fresh clone (installs what it needs, idempotently).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
if [ -f scripts/build-filters.sh ]; then
    bash scripts/build-filters.sh
fi
exec cargo run --release -p weir -- demo "$@"
