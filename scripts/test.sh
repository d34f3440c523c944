#!/usr/bin/env bash
# Runs every check of the project, as CI does (`.ci/run` execs this):
#   setup (idempotent) → build the wasm filters → cargo fmt --check → cargo clippy -D warnings
#   → cargo test --workspace.
# Works on a fresh clone with CI=true and no stdin. Uses ./target (or $CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s ===\n' "$*" >&2; }

step "setup"
bash scripts/setup.sh

if [ -f scripts/build-filters.sh ]; then
    step "build wasm filters"
    bash scripts/build-filters.sh
fi

# The tests start many processes and sockets at once; keep parallelism to the cores we have.
jobs="$(nproc 2>/dev/null || echo 2)"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step "cargo fmt --check (root workspace, then the filters workspace)"
cargo fmt --all -- --check
(cd filters && cargo fmt --all -- --check)

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

# Every test runner's summary lines go to a log too, for the one closing line at the end.
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

step "cargo test (filters workspace: native unit tests of the built-in filters and weir-sdk)"
(cd filters && CARGO_TARGET_DIR=../target/filters-native cargo test -j "$jobs") 2>&1 | tee -a "$results"

step "cargo test"
cargo test --workspace -j "$jobs" -- --test-threads="$jobs" 2>&1 | tee -a "$results"

# One closing line for the whole run: the sum of every `test result:` line above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$results"
