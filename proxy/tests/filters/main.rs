//! The built-in filters through the real `weir` binary over sockets (issue 4, points 2–6):
//! every test writes a YAML config with a filter from `target/filters/` (build them with
//! `bash scripts/build-filters.sh`), starts `weir run` on 127.0.0.1 with ephemeral ports,
//! waits for its ready line and talks to it with real clients; the upstream is an in-test
//! hyper server echoing what it received as JSON.
//!
//! Run just these: `cargo test -p weir --test filters`. The process/upstream/client helpers
//! are the e2e suite's (tests/e2e/support), shared by path.
#![forbid(unsafe_code)]

#[allow(dead_code, unused_imports)]
#[path = "../e2e/support/mod.rs"]
mod support;

mod auth;
mod fault;
mod header_rewrite;
mod policies;
mod rate_limit;
mod validate;

use std::path::PathBuf;

/// Absolute path of a built filter module.
pub fn module(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/filters")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/build-filters.sh` first",
        p.display()
    );
    p.canonicalize().expect("module path").display().to_string()
}

/// One listener `edge` → cluster `up` (the given upstream) with one filter `f` of `module`
/// configured with `config` (JSON, embedded as YAML flow). The callback deadline is 1 s instead
/// of the default 20 ms: on a loaded test machine a thread descheduled in the middle of a
/// callback would otherwise hit the deadline and fail the filter closed (503s); the deadline
/// itself is tested in weir-wasm.
pub fn one_filter_yaml(upstream: &str, module_name: &str, config: &serde_json::Value) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [f]
    routes:
      - name: all
        match: {{ path_prefix: / }}
        cluster: up
clusters:
  - name: up
    endpoints: [{upstream}]
filters:
  - name: f
    module: {module}
    config: {config}
    limits: {{ callback_deadline: 1s }}
"#,
        module = module(module_name),
    )
}
