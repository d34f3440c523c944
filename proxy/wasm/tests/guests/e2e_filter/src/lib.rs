//! Test guest for weir's end-to-end host tests (`proxy/tests/host/`, built there in the test
//! run for wasm32-unknown-unknown). One filter built with the `proxy-wasm` Rust SDK; its
//! behaviour is chosen by its JSON `config:` and, per request, by the `x-act` request header
//! (comma-separated tokens).
//!
//! Config: `{"tag": "a", "fail": "vm_start"|"configure", "tick_ms": 20}` — `tag` is appended
//! to the request header `x-order` and the response header `x-order-resp` (chain order).
//!
//! `x-act` tokens (PHASE is one of reqh reqb reqt resph respb respt):
//! - `local@PHASE`: `proxy_send_local_response` 451 with `x-local-phase: PHASE` from PHASE;
//! - `pause@reqh|resph|reqt|respt`: pause; the next tick resumes it (`set_effective_context` +
//!   continue) after adding `x-resumed: tick` (request or response headers);
//! - `buffer@req|resp`: pause the body until end of stream, then uppercase it whole;
//! - `upper@req|resp`: uppercase each body chunk as it streams;
//! - `trailers`: add trailers `x-filter-req-trailer: 1` / `x-filter-resp-trailer: 1`;
//! - `config`: request header `x-config` = the raw plugin configuration bytes;
//! - `call` / `calltimeout` / `badcall`: `proxy_http_call` to cluster `calls` (`/called`, or
//!   `/slow/2000` with a 200 ms timeout); the response sets `x-call-status`, `x-call-body`
//!   and `x-call-upstream` (its `x-upstream` header) request headers and resumes; `badcall`
//!   records the BAD_ARGUMENT statuses;
//! - `cas`: increment shared key `counter` with a CAS retry loop;
//! - `get` (key in `x-key`): answer 200 with the shared data value;
//! - `whoami`: answer 200 with this VM's sequence number (one per VM, by CAS on `vm-seq`);
//! - `enqueue` (target VM in `x-key`): enqueue `hello` on queue `q-<x-key>`; the registering
//!   VM's `on_queue_ready` stores `<its seq>:hello` under `seen-<its seq>`;
//! - `ticks`: answer 200 with `seq:ticks` of every VM of this vm_id;
//! - `props` (paths in `x-props`, comma-separated, dot-separated segments): answer 200 with
//!   `path=HEX` or `path=!STATUS` per line;
//! - `loop` / `oom` / `trap`: loop forever / grow memory without bound / panic.
//!
//! Metrics (per filter name N): counters `e2e_N_requests_total`, `e2e_N_logs_total`,
//! `e2e_N_done_total`, gauge `e2e_N_gauge` (7), histogram `e2e_N_hist` (42 per request).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;

thread_local! {
    /// Paused streams to resume at the next tick: (context id, response side).
    static PENDING: RefCell<Vec<(u32, bool)>> = const { RefCell::new(Vec::new()) };
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Shared {
    tag: String,
    config: Vec<u8>,
    seq: u64,
    vm_id: String,
    requests: u32,
    logs: u32,
    done: u32,
    gauge: u32,
    hist: u32,
}

#[derive(Default)]
struct Root {
    s: Rc<Shared>,
}

fn plugin_config() -> Vec<u8> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn config_str(cfg: &serde_json::Value, key: &str) -> String {
    cfg.get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

fn prop_str(path: &str) -> String {
    hostcalls::get_property(vec![path])
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn shared_u64(key: &str) -> (u64, Option<u32>) {
    let (v, cas) = hostcalls::get_shared_data(key).unwrap_or((None, None));
    let n = v
        .map(|b| String::from_utf8_lossy(&b).parse().unwrap_or(0))
        .unwrap_or(0);
    (n, cas)
}

/// Increments `key` by CAS; returns the value before.
fn cas_increment(key: &str) -> u64 {
    for _ in 0..100_000 {
        let (n, cas) = shared_u64(key);
        match hostcalls::set_shared_data(key, Some((n + 1).to_string().as_bytes()), cas) {
            Ok(()) => return n,
            Err(Status::CasMismatch) => continue,
            Err(_) => return u64::MAX,
        }
    }
    u64::MAX
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        let cfg: serde_json::Value = serde_json::from_slice(&plugin_config()).unwrap_or_default();
        config_str(&cfg, "fail") != "vm_start"
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = plugin_config();
        let cfg: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
        if config_str(&cfg, "fail") == "configure" {
            return false;
        }
        let name = prop_str("plugin_name");
        let metric = |kind, what: &str| {
            hostcalls::define_metric(kind, &format!("e2e_{name}_{what}")).unwrap_or(0)
        };
        let seq = cas_increment("vm-seq");
        let _ = hostcalls::register_shared_queue(&format!("q-{seq}"));
        let tick_ms = cfg.get("tick_ms").and_then(|v| v.as_u64()).unwrap_or(20);
        self.set_tick_period(Duration::from_millis(tick_ms));
        self.s = Rc::new(Shared {
            tag: config_str(&cfg, "tag"),
            config: raw,
            seq,
            vm_id: prop_str("plugin_vm_id"),
            requests: metric(MetricType::Counter, "requests_total"),
            logs: metric(MetricType::Counter, "logs_total"),
            done: metric(MetricType::Counter, "done_total"),
            gauge: metric(MetricType::Gauge, "gauge"),
            hist: metric(MetricType::Histogram, "hist"),
        });
        true
    }

    fn on_tick(&mut self) {
        let key = format!("ticks-{}", self.s.seq);
        let (n, _) = shared_u64(&key);
        let _ = hostcalls::set_shared_data(&key, Some((n + 1).to_string().as_bytes()), None);
        let pending: Vec<(u32, bool)> = PENDING.with(|p| p.borrow_mut().drain(..).collect());
        for (id, response) in pending {
            if hostcalls::set_effective_context(id).is_err() {
                continue;
            }
            if response {
                let _ = hostcalls::set_map_value(
                    MapType::HttpResponseHeaders,
                    "x-resumed",
                    Some("tick"),
                );
                let _ = hostcalls::resume_http_response();
            } else {
                let _ = hostcalls::set_map_value(
                    MapType::HttpRequestHeaders,
                    "x-resumed",
                    Some("tick"),
                );
                let _ = hostcalls::resume_http_request();
            }
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(v)) = hostcalls::dequeue_shared_queue(queue_id) {
            let seen = format!("{}:{}", self.s.seq, String::from_utf8_lossy(&v));
            let _ = hostcalls::set_shared_data(
                &format!("seen-{}", self.s.seq),
                Some(seen.as_bytes()),
                None,
            );
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            id: context_id,
            s: self.s.clone(),
            act: String::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    id: u32,
    s: Rc<Shared>,
    act: String,
}

impl Context for Http {
    fn on_http_call_response(&mut self, _token: u32, _nh: usize, body_size: usize, _nt: usize) {
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_else(|| "none".into());
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let upstream = self
            .get_http_call_response_header("x-upstream")
            .unwrap_or_default();
        self.set_http_request_header("x-call-status", Some(&status));
        self.set_http_request_header("x-call-upstream", Some(&upstream));
        self.set_http_request_header("x-call-body", Some(&String::from_utf8_lossy(&body)));
        self.resume_http_request();
    }

    fn on_done(&mut self) -> bool {
        let _ = hostcalls::increment_metric(self.s.done, 1);
        true
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Http {
    fn has(&self, tok: &str) -> bool {
        self.act.split(',').any(|t| t.trim() == tok)
    }

    fn local(&self, status: u32, body: &str) -> Action {
        self.send_http_response(status, vec![], Some(body.as_bytes()));
        Action::Pause
    }

    /// `local@PHASE` and `pause@PHASE`.
    fn phase_action(&self, phase: &str, response: bool) -> Option<Action> {
        if self.has(&format!("local@{phase}")) {
            self.send_http_response(
                451,
                vec![("x-local-phase", phase)],
                Some(format!("local {phase}").as_bytes()),
            );
            return Some(Action::Pause);
        }
        if self.has(&format!("pause@{phase}")) {
            PENDING.with(|p| p.borrow_mut().push((self.id, response)));
            return Some(Action::Pause);
        }
        None
    }

    fn body(&self, size: usize, eos: bool, response: bool) -> Action {
        let (phase, dir, bt) = if response {
            ("respb", "resp", BufferType::HttpResponseBody)
        } else {
            ("reqb", "req", BufferType::HttpRequestBody)
        };
        if let Some(a) = self.phase_action(phase, response) {
            return a;
        }
        let upper = |size: usize| {
            let b = hostcalls::get_buffer(bt, 0, size)
                .ok()
                .flatten()
                .unwrap_or_default();
            let _ = hostcalls::set_buffer(bt, 0, size, &b.to_ascii_uppercase());
        };
        if self.has(&format!("buffer@{dir}")) {
            if !eos {
                return Action::Pause;
            }
            upper(size);
        } else if self.has(&format!("upper@{dir}")) && size > 0 {
            upper(size);
        }
        Action::Continue
    }

    fn props(&self) -> Action {
        let list = self.get_http_request_header("x-props").unwrap_or_default();
        let mut out = String::new();
        for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let path: Vec<&str> = p.split('.').collect();
            match hostcalls::get_property(path) {
                Ok(Some(v)) => out.push_str(&format!("{p}={}\n", hex(&v))),
                Ok(None) => out.push_str(&format!("{p}=!NotFound\n")),
                Err(e) => out.push_str(&format!("{p}=!{e:?}\n")),
            }
        }
        self.local(200, &out)
    }

    fn call(&self, path: &str, timeout: Duration) -> Action {
        match self.dispatch_http_call(
            "calls",
            vec![(":method", "GET"), (":path", path), (":authority", "calls")],
            None,
            vec![],
            timeout,
        ) {
            Ok(_) => Action::Pause,
            Err(e) => {
                self.set_http_request_header("x-call-error", Some(&format!("{e:?}")));
                Action::Continue
            }
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.act = self.get_http_request_header("x-act").unwrap_or_default();
        if self.has("loop") {
            let mut i = 0u64;
            loop {
                i = std::hint::black_box(i.wrapping_add(1));
            }
        }
        if self.has("oom") {
            let mut hog: Vec<Vec<u8>> = Vec::new();
            loop {
                hog.push(std::hint::black_box(vec![1u8; 1 << 20]));
            }
        }
        if self.has("trap") {
            panic!("trap requested");
        }
        let s = self.s.clone();
        let _ = hostcalls::increment_metric(s.requests, 1);
        let _ = hostcalls::record_metric(s.gauge, 7);
        let _ = hostcalls::record_metric(s.hist, 42);
        if !s.tag.is_empty() {
            let cur = self.get_http_request_header("x-order").unwrap_or_default();
            self.set_http_request_header("x-order", Some(&format!("{cur}{}", s.tag)));
        }
        if self.has("config") {
            self.set_http_request_header("x-config", Some(&String::from_utf8_lossy(&s.config)));
        }
        if self.has("cas") {
            let n = cas_increment("counter");
            self.set_http_request_header("x-counter", Some(&n.to_string()));
        }
        if self.has("get") {
            let key = self.get_http_request_header("x-key").unwrap_or_default();
            let (v, _) = hostcalls::get_shared_data(&key).unwrap_or((None, None));
            let v = v.map(|b| String::from_utf8_lossy(&b).into_owned());
            return self.local(200, v.as_deref().unwrap_or("<none>"));
        }
        if self.has("whoami") {
            return self.local(200, &s.seq.to_string());
        }
        if self.has("ticks") {
            let (n, _) = shared_u64("vm-seq");
            let list: Vec<String> = (0..n)
                .map(|i| format!("{i}:{}", shared_u64(&format!("ticks-{i}")).0))
                .collect();
            return self.local(200, &list.join(","));
        }
        if self.has("enqueue") {
            let key = self.get_http_request_header("x-key").unwrap_or_default();
            let r = hostcalls::resolve_shared_queue(&s.vm_id, &format!("q-{key}"));
            let r = match r {
                Ok(Some(q)) => hostcalls::enqueue_shared_queue(q, Some(b"hello")).map(|_| "ok"),
                Ok(None) => Ok("no queue"),
                Err(e) => Err(e),
            };
            return self.local(200, &format!("{r:?}"));
        }
        if self.has("props") {
            return self.props();
        }
        if self.has("call") {
            return self.call("/called", Duration::from_secs(5));
        }
        if self.has("calltimeout") {
            return self.call("/slow/2000", Duration::from_millis(200));
        }
        if self.has("badcall") {
            let unknown = self.dispatch_http_call(
                "nope",
                vec![(":method", "GET"), (":path", "/"), (":authority", "x")],
                None,
                vec![],
                Duration::from_secs(1),
            );
            let no_path = self.dispatch_http_call(
                "calls",
                vec![(":method", "GET"), (":authority", "x")],
                None,
                vec![],
                Duration::from_secs(1),
            );
            let no_method = self.dispatch_http_call(
                "calls",
                vec![(":path", "/"), (":authority", "x")],
                None,
                vec![],
                Duration::from_secs(1),
            );
            let no_authority = self.dispatch_http_call(
                "calls",
                vec![(":method", "GET"), (":path", "/")],
                None,
                vec![],
                Duration::from_secs(1),
            );
            let msg = format!(
                "{:?} {:?} {:?} {:?}",
                unknown.err(),
                no_path.err(),
                no_method.err(),
                no_authority.err()
            );
            self.set_http_request_header("x-call-error", Some(&msg));
        }
        self.phase_action("reqh", false).unwrap_or(Action::Continue)
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        self.body(size, eos, false)
    }

    fn on_http_request_trailers(&mut self, _n: usize) -> Action {
        if self.has("trailers") {
            self.add_http_request_trailer("x-filter-req-trailer", "1");
        }
        self.phase_action("reqt", false).unwrap_or(Action::Continue)
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if !self.s.tag.is_empty() {
            let cur = self
                .get_http_response_header("x-order-resp")
                .unwrap_or_default();
            self.set_http_response_header("x-order-resp", Some(&format!("{cur}{}", self.s.tag)));
        }
        self.phase_action("resph", true).unwrap_or(Action::Continue)
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        self.body(size, eos, true)
    }

    fn on_http_response_trailers(&mut self, _n: usize) -> Action {
        if self.has("trailers") {
            self.add_http_response_trailer("x-filter-resp-trailer", "1");
        }
        self.phase_action("respt", true).unwrap_or(Action::Continue)
    }

    fn on_log(&mut self) {
        let _ = hostcalls::increment_metric(self.s.logs, 1);
    }
}
