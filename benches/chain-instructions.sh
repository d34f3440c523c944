#!/usr/bin/env bash
# chain-instructions.sh — instructions per request through the four built-in filters, counted by
# valgrind (callgrind), not timed: the figure does not move with the machine's noise, so two
# builds can be compared run against run (this 2-vCPU VM's timings vary by ±10 % between runs).
#
# It runs the `chain_length` criterion bench's `builtin/4` case (one request through auth,
# rate_limit, header_rewrite and fault, converted from and to `http` heads as the proxy does)
# under callgrind, collecting only inside `one_builtin`, twice (1 s and 4 s of profiling) and
# divides the difference in instructions by the difference in requests. The figure includes the bench's own building of the
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
# Two runs of different lengths, side by side: the per-request figure is the difference of
# their instructions over the difference of their requests, so one-time costs inside the first
# requests (lazy VM and guest allocator set-up) cancel out.
run() { # $1 = profile seconds
  (cd "$ROOT/benches" && valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1" \
    --toggle-collect='chain_length::one_builtin*' "$BIN" --bench --profile-time "$1" "builtin/4" \
    >"$OUT/log.$1" 2>&1)
}
total() {
  callgrind_annotate --inclusive=yes "$OUT/cg.$1" 2>/dev/null \
    | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,
}
requests() { # one_builtin calls new_stream once per request
  callgrind_annotate --tree=caller --inclusive=yes "$OUT/cg.$1" 2>/dev/null \
    | grep -B1 '\* .*FilterChain::new_stream' | sed -n 's/.*one_builtin.*(\([0-9,]*\)x).*/\1/p' \
    | head -1 | tr -d ,
}
run 1 & run 4 & wait
t1=$(total 1); t4=$(total 4); n1=$(requests 1); n4=$(requests 4)
if [ -z "$t1" ] || [ -z "$t4" ] || [ -z "$n1" ] || [ -z "$n4" ] || [ "$n4" -le "$n1" ]; then
  echo "chain-instructions: no result (valgrind's logs below)" >&2
  tail -20 "$OUT"/log.* >&2
  exit 1
fi
echo "builtin/4: $(((t4 - t1) / (n4 - n1))) instructions per request" \
  "(runs of $n1 and $n4 requests: $t1 and $t4 instructions)"
