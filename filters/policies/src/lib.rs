//! weir built-in filters `auth`, `rate_limit`, `header_rewrite` and `fault` in one proxy-wasm
//! module (`target/filters/policies.wasm`): each filter entry picks its policy with its
//! `root_id`, and entries with the same `vm_id` share one VM per worker (DESIGN.md §5), so a
//! chain of all four runs in one instance — one copy of the SDK, one heap — instead of four.
//!
//! ```yaml
//! filters:
//!   - name: auth
//!     module: ../target/filters/policies.wasm
//!     root_id: auth                  # auth | rate_limit | header_rewrite | fault
//!     vm_id: policies
//!     config: { api_keys: { header: x-api-key, keys: { k1: alice } } }
//!   - name: limit
//!     module: ../target/filters/policies.wasm
//!     root_id: rate_limit
//!     vm_id: policies
//!     config: { rate: 100, per: second, key: global }
//! ```
//!
//! Each policy behaves and is configured exactly as its own module (filters/auth, …). An
//! unknown `root_id` fails the filter's configuration with an error naming the choices.

#![forbid(unsafe_code)]

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, RootContext};
use proxy_wasm::types::LogLevel;

// The union of the four policies' stream callbacks (weir-sdk `callbacks!`).
weir_sdk::callbacks!(request_headers, response_headers);

/// The policies this module holds, by root id.
const POLICIES: &str = "auth, rate_limit, header_rewrite, fault";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(root_context);
}}

/// The root context of the policy the filter's `plugin_root_id` names.
fn root_context(id: u32) -> Box<dyn RootContext> {
    let root_id = hostcalls::get_property(vec!["plugin_root_id"])
        .ok()
        .flatten()
        .unwrap_or_default();
    match root_id.as_slice() {
        b"auth" => auth::root_context(id),
        b"rate_limit" => rate_limit::root_context(id),
        b"header_rewrite" => header_rewrite::root_context(id),
        b"fault" => fault::root_context(id),
        other => Box::new(Unknown(String::from_utf8_lossy(other).into_owned())),
    }
}

/// A root id naming no policy: its configuration fails.
struct Unknown(String);

impl Context for Unknown {}

impl RootContext for Unknown {
    fn on_configure(&mut self, _size: usize) -> bool {
        log::error!(
            "policies: root_id {:?} names no policy (one of: {POLICIES})",
            self.0
        );
        false
    }
}
