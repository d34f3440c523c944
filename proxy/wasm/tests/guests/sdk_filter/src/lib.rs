//! Test guest for weir-wasm (built by proxy/wasm/tests/rust_guest.rs for wasm32-unknown-unknown
//! and wasm32-wasip1). Exercises headers, bodies, pause/continue (from an http_call response and
//! from a tick), local responses, shared data with CAS, shared queues, metrics and properties.

use std::cell::RefCell;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;

thread_local! {
    static PENDING: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

#[derive(Clone, Copy, Default)]
struct Metrics {
    requests: u32,
    logs: u32,
    gauge: u32,
    hist: u32,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    m: Metrics,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let cfg = self.get_plugin_configuration().unwrap_or_default();
        if cfg == b"fail" {
            return false;
        }
        self.m = Metrics {
            requests: hostcalls::define_metric(MetricType::Counter, "sdk_requests_total").unwrap(),
            logs: hostcalls::define_metric(MetricType::Counter, "sdk_logs_total").unwrap(),
            gauge: hostcalls::define_metric(MetricType::Gauge, "sdk_gauge").unwrap(),
            hist: hostcalls::define_metric(MetricType::Histogram, "sdk_hist").unwrap(),
        };
        hostcalls::register_shared_queue("q").unwrap();
        self.set_tick_period(Duration::from_millis(5));
        proxy_wasm::hostcalls::log(LogLevel::Info, "sdk filter configured").unwrap();
        true
    }

    fn on_tick(&mut self) {
        let pending: Vec<u32> = PENDING.with(|p| p.borrow_mut().drain(..).collect());
        for id in pending {
            hostcalls::set_effective_context(id).unwrap();
            hostcalls::set_map_value(MapType::HttpRequestHeaders, "x-resumed", Some("tick"))
                .unwrap();
            hostcalls::resume_http_request().unwrap();
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if let Ok(Some(v)) = hostcalls::dequeue_shared_queue(queue_id) {
            hostcalls::set_shared_data("queue_seen", Some(&v), None).unwrap();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            id: context_id,
            m: self.m,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    id: u32,
    m: Metrics,
}

impl Context for Http {
    fn on_http_call_response(&mut self, _token: u32, _nh: usize, body_size: usize, _nt: usize) {
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_default();
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        self.set_http_request_header("x-call-status", Some(&status));
        self.set_http_request_header("x-call-body", Some(&String::from_utf8_lossy(&body)));
        self.resume_http_request();
    }
}

impl Http {
    fn cas_increment(&self) -> u64 {
        loop {
            let (v, cas) = hostcalls::get_shared_data("counter").unwrap();
            let n: u64 = v
                .map(|b| String::from_utf8_lossy(&b).parse().unwrap_or(0))
                .unwrap_or(0);
            match hostcalls::set_shared_data("counter", Some((n + 1).to_string().as_bytes()), cas) {
                Ok(()) => return n + 1,
                Err(Status::CasMismatch) => continue,
                Err(_) => return 0,
            }
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        hostcalls::increment_metric(self.m.requests, 1).unwrap();
        hostcalls::record_metric(self.m.gauge, 7).unwrap();
        hostcalls::record_metric(self.m.hist, 42).unwrap();
        self.add_http_request_header("x-sdk", "1");
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if let Some(v) = self.get_property(vec!["plugin_root_id"]) {
            self.set_http_request_header("x-root-id", Some(&String::from_utf8_lossy(&v)));
        }
        if let Some(v) = self.get_property(vec!["request", "path"]) {
            self.set_http_request_header("x-prop-path", Some(&String::from_utf8_lossy(&v)));
        }
        if let Some(v) = self.get_property(vec!["source", "port"]) {
            if let Ok(b) = <[u8; 8]>::try_from(v.as_slice()) {
                self.set_http_request_header(
                    "x-source-port",
                    Some(&i64::from_le_bytes(b).to_string()),
                );
            }
        }
        self.set_property(vec!["weir", "mark"], Some(b"m1"));
        if let Some(v) = self.get_property(vec!["weir", "mark"]) {
            self.set_http_request_header("x-mark", Some(&String::from_utf8_lossy(&v)));
        }
        if self.get_property(vec!["no", "such"]).is_none() {
            self.set_http_request_header("x-unknown-prop", Some("none"));
        }
        match path.as_str() {
            "/local" => {
                self.send_http_response(418, vec![("x-local", "1")], Some(b"teapot"));
                Action::Pause
            }
            "/call" => match self.dispatch_http_call(
                "upstream",
                vec![
                    (":method", "GET"),
                    (":path", "/echo"),
                    (":authority", "upstream"),
                ],
                None,
                vec![],
                Duration::from_secs(5),
            ) {
                Ok(_) => Action::Pause,
                Err(e) => {
                    self.set_http_request_header("x-call-error", Some(&format!("{e:?}")));
                    Action::Continue
                }
            },
            "/badcall" => {
                let unknown = self.dispatch_http_call(
                    "nope",
                    vec![(":method", "GET"), (":path", "/"), (":authority", "x")],
                    None,
                    vec![],
                    Duration::from_secs(1),
                );
                let no_path = self.dispatch_http_call(
                    "upstream",
                    vec![(":method", "GET"), (":authority", "x")],
                    None,
                    vec![],
                    Duration::from_secs(1),
                );
                self.set_http_request_header(
                    "x-call-error",
                    Some(&format!("{:?} {:?}", unknown.err(), no_path.err())),
                );
                Action::Continue
            }
            "/tick" => {
                PENDING.with(|p| p.borrow_mut().push(self.id));
                Action::Pause
            }
            "/cas" => {
                let n = self.cas_increment();
                self.set_http_request_header("x-counter", Some(&n.to_string()));
                Action::Continue
            }
            "/queue" => {
                let q = hostcalls::resolve_shared_queue("sdk", "q")
                    .unwrap()
                    .unwrap();
                hostcalls::enqueue_shared_queue(q, Some(b"hello")).unwrap();
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.set_http_request_body(0, body_size, &body.to_ascii_uppercase());
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.set_http_response_header("x-resp", Some("1"));
        Action::Continue
    }

    fn on_log(&mut self) {
        hostcalls::increment_metric(self.m.logs, 1).unwrap();
    }
}
