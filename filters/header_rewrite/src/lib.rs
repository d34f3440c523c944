//! weir built-in filter `header_rewrite`: set / add / remove request and response
//! headers, with `%property.path%` interpolation in values, and `:path` prefix
//! rewriting. A proxy-wasm module (compiled to wasm by `scripts/build-filters.sh`).
//!
//! Example config (JSON; YAML in weir.yaml):
//!
//! ```json
//! {
//!   "request":  {"set": {"x-env": "prod", "x-client": "%source.address%"},
//!                "add": {"x-via": ["weir"]}, "remove": ["x-debug"]},
//!   "response": {"set": {"x-request-id": "%request.id%"}, "remove": ["server"]},
//!   "path_prefix_rewrite": {"prefix": "/api/v1/", "replacement": "/"}
//! }
//! ```
//!
//! Per phase the order is: remove, then set (replace), then add (append).

#![forbid(unsafe_code)]

pub mod config;

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use weir_sdk::headers;

use crate::config::{Prepared, Rules};

// The stream callbacks this filter implements: weir calls no others (weir-sdk `callbacks!`).
#[cfg(not(feature = "bundled"))]
weir_sdk::callbacks!(request_headers, response_headers);

// Built alone, this crate is a module of its own; with feature `bundled` it is a library for
// the `policies` bundle (filters/policies), which has the entry point and the section.
#[cfg(not(feature = "bundled"))]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(root_context);
}}

/// A new root context of this filter (the module's entry point, and the `policies` bundle's).
pub fn root_context(_root_id: u32) -> Box<dyn RootContext> {
    Box::new(HeaderRewriteRoot {
        prepared: Rc::new(Prepared::default()),
    })
}

/// Root context: holds the prepared configuration.
struct HeaderRewriteRoot {
    prepared: Rc<Prepared>,
}

impl Context for HeaderRewriteRoot {}

impl RootContext for HeaderRewriteRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        match config::load(self.get_plugin_configuration()) {
            Ok(p) => {
                self.prepared = Rc::new(p);
                true
            }
            Err(e) => {
                log::error!("header_rewrite: invalid config: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(HeaderRewrite {
            prepared: Rc::clone(&self.prepared),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Per-request context.
struct HeaderRewrite {
    prepared: Rc<Prepared>,
}

impl Context for HeaderRewrite {}

fn apply(rules: &Rules, set: fn(&str, Option<&str>), add: fn(&str, &str)) {
    for name in &rules.remove {
        set(name, None);
    }
    for (name, value) in &rules.set {
        set(name, Some(&value.render_cow()));
    }
    for (name, value) in &rules.add {
        add(name, &value.render_cow());
    }
}

impl HttpContext for HeaderRewrite {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let p = &self.prepared;
        if let Some(rw) = &p.path_prefix_rewrite {
            if let Some(path) = headers::get_header(":path") {
                if let Some(new_path) = rw.rewrite(&path) {
                    headers::set_header(":path", Some(&new_path));
                }
            }
        }
        apply(&p.request, headers::set_header, headers::add_header);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        apply(
            &self.prepared.response,
            headers::set_response_header,
            headers::add_response_header,
        );
        Action::Continue
    }
}
