//! Shared by the filter tests: where the built filters are.
#![allow(dead_code)]

use std::path::PathBuf;

use weir_sdk_harness::{Harness, HarnessError};

/// `target/filters/<name>.wasm` (built by `scripts/build-filters.sh`).
pub fn wasm(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/filters")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/build-filters.sh` first",
        p.display()
    );
    p
}

/// Loads a built filter with `config`.
pub fn load(name: &str, config: serde_json::Value) -> Harness {
    match Harness::load(wasm(name), config) {
        Ok(h) => h,
        Err(e) => panic!("load {name}: {e}"),
    }
}

/// The configure error of a built filter with a bad `config`.
pub fn config_error(name: &str, config: serde_json::Value) -> HarnessError {
    match Harness::load(wasm(name), config.clone()) {
        Ok(_) => panic!("{name} accepted {config}"),
        Err(e) => e,
    }
}
