//! Test guest for weir's hot-swap tests (`proxy/tests/swap/`, built there in the test run for
//! wasm32-unknown-unknown). It makes the life cycle of its VMs observable in `/metrics`:
//!
//! - `swaplife_configured_total`: root contexts whose `proxy_on_configure` ran;
//! - `swaplife_done_total`: root contexts that got `proxy_on_done`;
//! - `swaplife_deleted_total`: root contexts that got `proxy_on_delete` (the SDK drops the root
//!   context there; the count is taken in its `Drop`).
//!
//! Metrics are process-wide by name, so the counters add up over every VM of every snapshot.
//! Each response gets `x-life: <the plugin configuration bytes>`, naming the snapshot that
//! served it. A configuration of exactly `fail` makes `proxy_on_configure` fail.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    config: String,
    /// Metric ids once configured: (configured, done, deleted).
    metrics: Option<(u32, u32, u32)>,
}

impl Drop for Root {
    fn drop(&mut self) {
        if let Some((_, _, deleted)) = self.metrics {
            let _ = hostcalls::increment_metric(deleted, 1);
        }
    }
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        if let Some((_, done, _)) = self.metrics {
            let _ = hostcalls::increment_metric(done, 1);
        }
        true
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.config = String::from_utf8_lossy(&raw).into_owned();
        if self.config == "fail" || self.config == "\"fail\"" {
            return false;
        }
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).unwrap_or(0);
        let ids = (
            counter("swaplife_configured_total"),
            counter("swaplife_done_total"),
            counter("swaplife_deleted_total"),
        );
        let _ = hostcalls::increment_metric(ids.0, 1);
        self.metrics = Some(ids);
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            config: self.config.clone(),
        }))
    }
}

struct Stream {
    config: String,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.set_http_response_header("x-life", Some(&self.config));
        Action::Continue
    }
}
