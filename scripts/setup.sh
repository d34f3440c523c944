#!/usr/bin/env bash
# Prepares a machine to build and test weir. Idempotent: safe to run again and again.
#
# - wasm targets for the filters: `rustup target add wasm32-unknown-unknown wasm32-wasip1`;
#   where rustup cannot add them, Debian's rustc-web toolchain pieces instead (DESIGN.md §9).
# - rustfmt and clippy (used by scripts/test.sh) when rustup can add them.
# - wabt (wat2wasm), to assemble the WAT example filters the tests load.
# Nothing else is installed by default; the benchmark scripts install nginx/wrk themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

apt_install() {
    # Installs Debian packages that are not there yet (no prompts, works with CI=true).
    local missing=()
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    log "installing Debian packages: ${missing[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" </dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
    log "cargo not found: install a Rust toolchain (rustup) first"
    exit 1
fi

# --- wasm targets -----------------------------------------------------------------------------
WASM_TARGETS=(wasm32-unknown-unknown wasm32-wasip1)
if command -v rustup >/dev/null 2>&1; then
    installed="$(rustup target list --installed 2>/dev/null || true)"
    need=()
    for t in "${WASM_TARGETS[@]}"; do
        grep -qx "$t" <<<"$installed" || need+=("$t")
    done
    if [ ${#need[@]} -gt 0 ]; then
        log "adding rust targets: ${need[*]}"
        if ! rustup target add "${need[@]}" </dev/null; then
            log "rustup could not add the wasm targets; falling back to Debian's rustc-web (DESIGN.md §9)"
            apt_install rustc-web cargo-web rust-web-src wasi-libc
        fi
    fi
    comps="$(rustup component list --installed 2>/dev/null || true)"
    for c in rustfmt clippy; do
        if ! grep -q "^$c" <<<"$comps"; then
            log "adding rust component $c"
            rustup component add "$c" </dev/null || log "could not add $c (test.sh will skip it)"
        fi
    done
else
    for t in "${WASM_TARGETS[@]}"; do
        if ! rustc --print target-list | grep -qx "$t" || [ ! -d "$(rustc --print sysroot)/lib/rustlib/$t" ]; then
            log "no rustup: using Debian's rustc-web for $t (DESIGN.md §9)"
            apt_install rustc-web cargo-web rust-web-src wasi-libc
            break
        fi
    done
fi

# --- wat2wasm (Debian's wabt): the WAT example filters the tests load as .wasm -----------------
command -v wat2wasm >/dev/null 2>&1 || apt_install wabt

log "ok"
