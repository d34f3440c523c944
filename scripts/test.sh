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

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace -j "$jobs" -- --test-threads="$jobs"
