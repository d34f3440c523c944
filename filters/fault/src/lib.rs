//! weir built-in filter `fault`: injects delays and aborts into requests, without
//! blocking the worker. A proxy-wasm module (compiled to wasm by
//! `scripts/build-filters.sh`).
//!
//! Example config:
//!
//! ```json
//! {"delay": {"fixed": "200ms", "percent": 10},
//!  "abort": {"status": 503, "percent": 5},
//!  "header_override": true}
//! ```
//!
//! With `header_override` (default true) a request may ask for a fault itself:
//! `x-fault-delay-ms: 500` delays it by 500 ms (at most 60 s), `x-fault-abort: 503`
//! aborts it with that status.
//!
//! How a delay works: the request context returns `Pause` and records its due time
//! in its root context (one per worker VM); the root ticks every few milliseconds
//! while anything is pending, and on each tick resumes every due request with
//! `proxy_set_effective_context` + `proxy_continue_stream` (or answers locally when
//! the request was also chosen for an abort). A request that ends while parked
//! (client gone) is forgotten when its context is dropped.

#![forbid(unsafe_code)]

pub mod config;
pub mod rng;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MetricType};
use weir_sdk::headers;

use crate::config::{Prepared, MAX_OVERRIDE_DELAY};
use crate::rng::SplitMix64;

/// Tick period while requests are parked.
const TICK: Duration = Duration::from_millis(5);

// The stream callbacks this filter implements: weir calls no others (weir-sdk `callbacks!`).
#[cfg(not(feature = "bundled"))]
weir_sdk::callbacks!(request_headers);

// Built alone, this crate is a module of its own; with feature `bundled` it is a library for
// the `policies` bundle (filters/policies), which has the entry point and the section.
#[cfg(not(feature = "bundled"))]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(root_context);
}}

/// A new root context of this filter (the module's entry point, and the `policies` bundle's).
pub fn root_context(root_id: u32) -> Box<dyn RootContext> {
    Box::new(FaultRoot::new(root_id))
}

/// A parked request: when it is due and what happens then.
#[derive(Debug, Clone, Copy)]
struct Parked {
    context_id: u32,
    due_ns: u64,
    abort: Option<u32>,
}

/// State shared between the root context and its request contexts (same VM).
#[derive(Debug)]
struct Shared {
    config: Prepared,
    rng: SplitMix64,
    parked: Vec<Parked>,
    ticking: bool,
    delays_metric: Option<u32>,
    aborts_metric: Option<u32>,
}

/// Root context: owns the configuration, the RNG and the parked requests.
struct FaultRoot {
    shared: Rc<RefCell<Shared>>,
}

impl FaultRoot {
    fn new(root_id: u32) -> Self {
        let seed = weir_sdk::shared::now_nanos() ^ (u64::from(root_id) << 32);
        Self {
            shared: Rc::new(RefCell::new(Shared {
                config: Prepared {
                    header_override: true,
                    ..Prepared::default()
                },
                rng: SplitMix64::new(seed),
                parked: Vec::new(),
                ticking: false,
                delays_metric: None,
                aborts_metric: None,
            })),
        }
    }
}

fn bump(metric: Option<u32>) {
    if let Some(id) = metric {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

fn abort_now(status: u32) {
    let _ = hostcalls::send_http_response(
        status,
        vec![
            ("content-type", "text/plain"),
            ("x-fault-injected", "abort"),
        ],
        Some(b"fault filter abort"),
    );
}

impl Context for FaultRoot {}

impl RootContext for FaultRoot {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        match config::load(self.get_plugin_configuration()) {
            Ok(p) => {
                let mut s = self.shared.borrow_mut();
                s.config = p;
                s.delays_metric =
                    hostcalls::define_metric(MetricType::Counter, "fault_delays_injected").ok();
                s.aborts_metric =
                    hostcalls::define_metric(MetricType::Counter, "fault_aborts_injected").ok();
                true
            }
            Err(e) => {
                log::error!("fault: invalid config: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let now = weir_sdk::shared::now_nanos();
        let due: Vec<Parked> = {
            let mut s = self.shared.borrow_mut();
            let (due, keep): (Vec<Parked>, Vec<Parked>) =
                s.parked.iter().partition(|p| p.due_ns <= now);
            s.parked = keep;
            if s.parked.is_empty() && s.ticking {
                s.ticking = false;
                let _ = hostcalls::set_tick_period(Duration::ZERO);
            }
            due
        };
        for p in due {
            if hostcalls::set_effective_context(p.context_id).is_err() {
                continue; // the request is gone
            }
            match p.abort {
                Some(status) => abort_now(status),
                None => {
                    let _ = hostcalls::resume_http_request();
                }
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Fault {
            context_id,
            shared: Rc::clone(&self.shared),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Per-request context.
struct Fault {
    context_id: u32,
    shared: Rc<RefCell<Shared>>,
}

impl Context for Fault {}

impl Drop for Fault {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.try_borrow_mut() {
            let id = self.context_id;
            s.parked.retain(|p| p.context_id != id);
        }
    }
}

impl HttpContext for Fault {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let mut s = self.shared.borrow_mut();
        let mut delay = None;
        let mut abort = None;
        if s.config.header_override {
            if let Some(ms) =
                headers::get_header("x-fault-delay-ms").and_then(|v| v.trim().parse::<u64>().ok())
            {
                delay = Some(Duration::from_millis(ms).min(MAX_OVERRIDE_DELAY));
            }
            if let Some(status) = headers::get_header("x-fault-abort")
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|st| config::valid_status(*st))
            {
                abort = Some(status);
            }
        }
        if delay.is_none() {
            if let Some((d, ppm)) = s.config.delay {
                if s.rng.chance_ppm(ppm) {
                    delay = Some(d);
                }
            }
        }
        if abort.is_none() {
            if let Some((status, ppm)) = s.config.abort {
                if s.rng.chance_ppm(ppm) {
                    abort = Some(status);
                }
            }
        }
        if abort.is_some() {
            bump(s.aborts_metric);
        }
        match delay.filter(|d| !d.is_zero()) {
            Some(d) => {
                bump(s.delays_metric);
                let due_ns = weir_sdk::shared::now_nanos()
                    .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                s.parked.push(Parked {
                    context_id: self.context_id,
                    due_ns,
                    abort,
                });
                if !s.ticking {
                    s.ticking = true;
                    let _ = hostcalls::set_tick_period(TICK);
                }
                Action::Pause
            }
            None => match abort {
                Some(status) => {
                    drop(s);
                    abort_now(status);
                    Action::Pause
                }
                None => Action::Continue,
            },
        }
    }
}
