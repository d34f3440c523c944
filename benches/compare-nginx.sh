#!/usr/bin/env bash
# compare-nginx.sh — nginx and plain weir only; a thin wrapper over compare.sh (see it for what is
# measured and how). Ratios are to weir; JSON goes to $CARGO_TARGET_DIR/bench/compare-nginx.json.
#
# Usage: benches/compare-nginx.sh [--duration 10] [--connections 32] [--rounds 3] [--no-build]
#                                 [--weir-bin PATH]
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/compare.sh" --proxies "nginx weir" --out compare-nginx.json "$@"
