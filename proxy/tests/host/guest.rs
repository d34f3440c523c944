//! Modules for the tests, built in the test run: the SDK guest `e2e_filter` (cargo, once per
//! test binary), the repository's examples (`scripts/build-filters.sh`, once), and WAT text.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// `proxy/wasm/tests/guests/e2e_filter` built for wasm32-unknown-unknown (release).
pub fn e2e_filter() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let manifest = repo().join("proxy/wasm/tests/guests/e2e_filter/Cargo.toml");
        let target_dir = repo().join("target/wasm-guests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
            .arg("--manifest-path")
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "e2e_filter build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target_dir.join("wasm32-unknown-unknown/release/e2e_filter.wasm")
    })
}

/// `target/filters/NAME` after `scripts/build-filters.sh` (run once per test binary).
pub fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("scripts/build-filters.sh"))
            .current_dir(repo())
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run build-filters.sh");
        assert!(
            out.status.success(),
            "build-filters.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let p = repo().join("target/filters").join(name);
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// A WAT filter that adds request header `x-abi: VALUE` in `proxy_on_request_headers`.
/// `marker`: the ABI marker export (or none); `alloc`: export an allocator;
/// `v1_headers`: the 0.1.0 signature `(ctx, nheaders)` instead of `(ctx, nheaders, eos)`.
pub fn abi_wat(marker: Option<&str>, alloc: bool, v1_headers: bool, value: &str) -> String {
    let marker = marker
        .map(|m| format!("(func (export \"{m}\"))"))
        .unwrap_or_default();
    let alloc = if alloc {
        r#"(func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (local.get $p) (i32.add (local.get $n) (i32.const 8))))
    (local.get $p))"#
    } else {
        ""
    };
    let params = if v1_headers {
        "(param i32 i32)"
    } else {
        "(param i32 i32 i32)"
    };
    format!(
        r#"(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 8192))
  (data (i32.const 1024) "x-abi")
  (data (i32.const 1040) "{value}")
  {marker}
  {alloc}
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") {params} (result i32)
    (drop (call $add (i32.const 0) (i32.const 1024) (i32.const 5) (i32.const 1040) (i32.const {len})))
    (i32.const 0))
)
"#,
        len = value.len()
    )
}
