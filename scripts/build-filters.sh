#!/usr/bin/env bash
# Builds every wasm filter of the repository into target/filters/:
#   auth.wasm rate_limit.wasm header_rewrite.wasm fault.wasm example_rust.wasm
#                                   (Rust, wasm32-unknown-unknown, filters/ workspace)
#   policies.wasm                   (the four built-in filters in one module, by root_id)
#   example_rust_wasi.wasm          (the example Rust filter for wasm32-wasip1)
#   example_as.wasm                 (AssemblyScript, examples/assemblyscript; needs npm)
#   example_c.wasm                  (optional C example, examples/c; needs clang + lld)
#   reactor.wasm command.wasm       (examples/wat, with wat2wasm from Debian's `wabt`;
#                                    the .wat text is copied too: weir loads it directly)
# Idempotent and incremental: cargo/npm skip work when nothing changed, and an
# artifact is only rewritten when its bytes change.
#
# Toolchain: `rustup target add wasm32-unknown-unknown wasm32-wasip1`; where that
# cannot work, the Debian fallback of DESIGN.md §9 (rustc-web + -Zbuild-std,
# linked with the rustup toolchain's rust-lld, in target/wasm-debian).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/filters"
mkdir -p "$OUT"

log() { printf 'build-filters: %s\n' "$*" >&2; }
warn() { printf 'build-filters: WARNING: %s\n' "$*" >&2; }

# Copies $1 to $2 unless identical (keeps mtimes stable for watchers).
publish() {
  if ! cmp -s "$1" "$2" 2>/dev/null; then
    cp "$1" "$2.tmp" && mv -f "$2.tmp" "$2"
    log "updated ${2#"$ROOT"/}"
  fi
}

# === Rust toolchain ===
MODE=rustup
if command -v rustup >/dev/null 2>&1; then
  installed="$(rustup target list --installed 2>/dev/null || true)"
  if ! grep -qx wasm32-unknown-unknown <<<"$installed" || ! grep -qx wasm32-wasip1 <<<"$installed"; then
    if ! rustup target add wasm32-unknown-unknown wasm32-wasip1 >&2; then
      MODE=debian
    fi
  fi
else
  MODE=debian
fi

cargo_wasm() { # cargo_wasm TARGET ARGS...
  local target="$1"
  shift
  if [[ "$MODE" == rustup ]]; then
    CARGO_TARGET_DIR="$ROOT/target/wasm" cargo build --release --target "$target" "$@"
  else
    local sysroot lld
    sysroot="$(rustc --print sysroot 2>/dev/null || true)"
    lld="$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"
    local flags=()
    [[ "$target" == wasm32-wasip1 ]] && flags=(-L/usr/lib/wasm32-wasi)
    CARGO_TARGET_DIR="$ROOT/target/wasm-debian" \
      RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$lld" \
      CARGO_TARGET_WASM32_WASIP1_LINKER="$lld" \
      RUSTFLAGS="${RUSTFLAGS:-} ${flags[*]}" \
      /usr/bin/cargo build --release -Zbuild-std=std,panic_abort --target "$target" "$@"
  fi
}

if [[ "$MODE" == debian ]]; then
  warn "rustup cannot add the wasm targets; using Debian's rustc-web (DESIGN.md §9)"
  if ! dpkg -s rustc-web cargo-web rust-web-src wasi-libc >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]]; then
      apt-get install -y rustc-web cargo-web rust-web-src wasi-libc >&2 ||
        { apt-get update >&2 && apt-get install -y rustc-web cargo-web rust-web-src wasi-libc >&2; }
    else
      warn "install rustc-web cargo-web rust-web-src wasi-libc (as root) and re-run"
      exit 1
    fi
  fi
  TDIR="$ROOT/target/wasm-debian"
else
  TDIR="$ROOT/target/wasm"
fi

# === Rust filters (wasm32-unknown-unknown) ===
log "cargo build (wasm32-unknown-unknown, filters/)"
(cd "$ROOT/filters" && cargo_wasm wasm32-unknown-unknown --workspace --exclude weir-sdk --exclude weir-filter-policies)
# The bundle of the four policies, on its own: it turns on the filters' `bundled` feature, which
# must not reach their own modules (cargo unifies the features of one build).
(cd "$ROOT/filters" && cargo_wasm wasm32-unknown-unknown -p weir-filter-policies)
for name in auth rate_limit header_rewrite fault policies example_rust; do
  publish "$TDIR/wasm32-unknown-unknown/release/$name.wasm" "$OUT/$name.wasm"
done

# === The example Rust filter for wasm32-wasip1 ===
log "cargo build (wasm32-wasip1, examples/rust-filter)"
(cd "$ROOT/filters" && cargo_wasm wasm32-wasip1 -p weir-example-rust-filter)
publish "$TDIR/wasm32-wasip1/release/example_rust.wasm" "$OUT/example_rust_wasi.wasm"

# === AssemblyScript example ===
AS_DIR="$ROOT/examples/assemblyscript"
if command -v npm >/dev/null 2>&1; then
  (
    cd "$AS_DIR"
    stamp=node_modules/.package-lock.json
    if [[ ! -f "$stamp" || package.json -nt "$stamp" || (-f package-lock.json && package-lock.json -nt "$stamp") ]]; then
      log "npm install (examples/assemblyscript)"
      if [[ -f package-lock.json ]]; then
        npm ci --no-audit --no-fund --loglevel=error >&2
      else
        npm install --no-audit --no-fund --loglevel=error >&2
      fi
    fi
    mkdir -p build
    if [[ ! -f build/example_as.wasm ]] || [[ -n "$(find assembly package.json -newer build/example_as.wasm -print -quit)" ]]; then
      log "asc (examples/assemblyscript)"
      npm run --silent asbuild >&2
    fi
  )
  publish "$AS_DIR/build/example_as.wasm" "$OUT/example_as.wasm"
else
  warn "npm not found: skipping the AssemblyScript example (target/filters/example_as.wasm)"
fi

# === C example (optional: clang + wasm-ld from Debian's clang and lld) ===
C_SRC="$ROOT/examples/c/filter.c"
if command -v clang >/dev/null 2>&1 && command -v wasm-ld >/dev/null 2>&1; then
  if [[ ! -f "$OUT/example_c.wasm" || "$C_SRC" -nt "$OUT/example_c.wasm" ]]; then
    clang --target=wasm32-unknown-unknown -O2 -nostdlib -ffreestanding -Wall \
      -Wl,--no-entry -Wl,--strip-all -o "$OUT/example_c.wasm.tmp" "$C_SRC" &&
      mv -f "$OUT/example_c.wasm.tmp" "$OUT/example_c.wasm"
    log "built target/filters/example_c.wasm"
  fi
else
  log "clang/wasm-ld not found (Debian packages clang, lld): skipping the optional C example"
fi

# === WAT examples ===
for wat in "$ROOT"/examples/wat/*.wat; do
  [[ -e "$wat" ]] || continue
  stem="$(basename "$wat" .wat)"
  publish "$wat" "$OUT/$stem.wat"
  if command -v wat2wasm >/dev/null 2>&1; then
    if [[ ! -f "$OUT/$stem.wasm" || "$wat" -nt "$OUT/$stem.wasm" ]]; then
      wat2wasm "$wat" -o "$OUT/$stem.wasm.tmp" && mv -f "$OUT/$stem.wasm.tmp" "$OUT/$stem.wasm"
      log "assembled target/filters/$stem.wasm"
    fi
  fi
done
command -v wat2wasm >/dev/null 2>&1 ||
  warn "wat2wasm not found (Debian package wabt): WAT examples left as .wat in target/filters"

log "done: $(cd "$OUT" && ls -1 | tr '\n' ' ')"
