//! Example weir filter: adds `x-hello: <greeting>` to every response.
//!
//! The whole loop — write, build, test, run — is described in this folder's
//! README.md. Configuration (JSON, from the filter's `config:` in weir.yaml):
//!
//! ```json
//! {"greeting": "hello from weir"}
//! ```

#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;
use std::rc::Rc;

/// The filter's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Value of the `x-hello` response header.
    #[serde(default = "default_greeting")]
    pub greeting: String,
}

fn default_greeting() -> String {
    "hello".to_string()
}

// The stream callbacks this filter implements: weir calls no others (weir-sdk `callbacks!`).
weir_sdk::callbacks!(response_headers);

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_root_id| -> Box<dyn RootContext> {
        Box::new(HelloRoot { config: Rc::new(Config { greeting: default_greeting() }) })
    });
}}

/// Root context: parses the configuration once, creates one [`Hello`] per request.
struct HelloRoot {
    config: Rc<Config>,
}

impl Context for HelloRoot {}

impl RootContext for HelloRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        match weir_sdk::config::from_plugin_configuration::<Config>(self.get_plugin_configuration())
        {
            Ok(config) => {
                self.config = Rc::new(config);
                true
            }
            Err(e) => {
                // Returning false makes `weir validate` fail, naming this filter.
                log::error!("example_rust: invalid config: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Hello {
            config: Rc::clone(&self.config),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Per-request context.
struct Hello {
    config: Rc<Config>,
}

impl Context for Hello {}

impl HttpContext for Hello {
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        weir_sdk::headers::set_response_header("x-hello", Some(&self.config.greeting));
        Action::Continue
    }
}
