#!/usr/bin/env bash
# chain-instructions.sh — instructions per request through the four built-in filters, counted by
# valgrind (callgrind), not timed: the figure does not move with the machine's noise, so two
# builds can be compared run against run (this 2-vCPU VM's timings vary by ±10 % between runs).
#
# It runs the `chain_length` criterion bench's `builtin/4` case (one request through auth,
# rate_limit, header_rewrite and fault, converted from and to `http` heads as the proxy does)
# under callgrind for `--profile-time` seconds, collecting only inside `one_builtin`, and divides
# the instructions by the number of requests. The figure includes the bench's own building of the
# request and response heads (about 8k instructions), the same for every build.
#
# Usage: benches/chain-instructions.sh [BENCH_BINARY]
#   BENCH_BINARY: a chain_length bench executable (default: build it with
#   `cargo bench -p weir-benches --bench chain_length --no-run`).
# Needs: valgrind (apt-get installs it when missing), the built filters (scripts/build-filters.sh).
# Takes a few minutes: the filters are compiled by cranelift under valgrind first.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if ! command -v valgrind >/dev/null; then
  apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
BIN=${1:-}
if [ -z "$BIN" ]; then
  BIN=$(cd "$ROOT" && cargo bench -p weir-benches --bench chain_length --no-run 2>&1 \
    | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
  case "$BIN" in /*) ;; *) BIN=$ROOT/$BIN ;; esac
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
(cd "$ROOT/benches" && valgrind --tool=callgrind --callgrind-out-file="$OUT/cg" \
  --toggle-collect='chain_length::one_builtin*' "$BIN" --bench --profile-time 2 "builtin/4" \
  >"$OUT/log" 2>&1)
total=$(callgrind_annotate --inclusive=yes "$OUT/cg" 2>/dev/null \
  | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
calls=$(callgrind_annotate --tree=caller --inclusive=yes "$OUT/cg" 2>/dev/null \
  | grep -B1 '\* .*FilterChain::new_stream' | sed -n 's/.*one_builtin.*(\([0-9,]*\)x).*/\1/p' \
  | head -1 | tr -d ,)
if [ -z "$total" ] || [ -z "$calls" ] || [ "$calls" = 0 ]; then
  echo "chain-instructions: no result (see valgrind's log below)" >&2
  tail -20 "$OUT/log" >&2
  exit 1
fi
echo "builtin/4: $((total / calls)) instructions per request ($calls requests, $total instructions)"
