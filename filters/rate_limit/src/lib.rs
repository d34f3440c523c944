//! weir built-in filter `rate_limit`: a token bucket per key, kept in proxy-wasm
//! shared data so the limit is exact across all workers. A proxy-wasm module
//! (compiled to wasm by `scripts/build-filters.sh`).
//!
//! Example config:
//!
//! ```json
//! {"rate": 100, "per": "minute", "burst": 200, "key": "header:x-user"}
//! ```
//!
//! - Each request takes one token from its key's bucket (CAS loop on shared data,
//!   see `weir_sdk::shared::shared_token_bucket`). Over the limit: `429` with
//!   `retry-after` (seconds, rounded up). Every answer carries `x-ratelimit-limit`
//!   (the bucket capacity, `burst`) and `x-ratelimit-remaining`.
//! - `key: header:NAME`: requests without that header are not limited.
//! - If shared data fails (host error, extreme contention) the request is let
//!   through and a warning logged (fail open).
//!
//! Eviction (bounded memory under any number of distinct keys): a bucket key is
//! created on a key's first request and then pushed on a shared queue (one per
//! filter instance). Every root context (one per worker) ticks every
//! `eviction.interval` (default 100 ms) and pops up to `eviction.batch` (default 1000)
//! queued keys — small enough to stay far below a callback deadline: a bucket that has refilled completely is
//! deleted (an absent bucket *is* a full one, so no decision changes), any other is
//! queued again. A key thus lives at most its full-refill time (`burst / rate * per`)
//! plus one sweep round after its last request, and memory is bounded by the number
//! of keys seen within that window.

#![forbid(unsafe_code)]

pub mod config;

use std::borrow::Cow;
use std::collections::HashSet;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use weir_sdk::shared::{self, Decision, Eviction};
use weir_sdk::{headers, properties, respond};

use crate::config::{KeySource, Prepared};

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
    Box::new(RateLimitRoot { state: None })
}

/// Configuration plus naming, shared by the root and its request contexts.
#[derive(Debug)]
struct State {
    prepared: Prepared,
    /// Prefix of every bucket key of this filter instance.
    namespace: String,
    /// Eviction queue id, when the host supports shared queues.
    queue: Option<u32>,
    limit_text: String,
    /// The bucket key of `key: global` (the same for every request).
    global_key: String,
}

/// Root context.
struct RateLimitRoot {
    state: Option<Rc<State>>,
}

/// FNV-1a, to name a filter instance's keys compactly.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Context for RateLimitRoot {}

impl RootContext for RateLimitRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let prepared = match config::load(self.get_plugin_configuration()) {
            Ok(p) => p,
            Err(e) => {
                log::error!("rate_limit: invalid config: {e}");
                return false;
            }
        };
        let plugin = properties::property_string(&["plugin_name"]).unwrap_or_default();
        let s = &prepared.spec;
        let id = fnv1a(&[
            plugin.as_bytes(),
            &s.rate.to_le_bytes(),
            &s.per.as_nanos().to_le_bytes(),
            &s.burst.to_le_bytes(),
            format!("{:?}", prepared.key).as_bytes(),
        ]);
        let namespace = format!("weir.rl.{id:016x}:");
        let queue = hostcalls::register_shared_queue(&format!("weir.rl.evict.{id:016x}")).ok();
        if queue.is_none() {
            log::warn!("rate_limit: no shared queue; stale buckets will not be evicted");
        }
        let _ = hostcalls::set_tick_period(prepared.sweep_interval);
        self.state = Some(Rc::new(State {
            limit_text: prepared.spec.burst.to_string(),
            global_key: format!("{namespace}global"),
            prepared,
            namespace,
            queue,
        }));
        true
    }

    fn on_tick(&mut self) {
        let Some(state) = &self.state else { return };
        let Some(queue) = state.queue else { return };
        let now = shared::now_nanos();
        let mut requeued: HashSet<Vec<u8>> = HashSet::new();
        for _ in 0..state.prepared.sweep_batch {
            let Ok(Some(entry)) = hostcalls::dequeue_shared_queue(queue) else {
                break;
            };
            let Ok(key) = std::str::from_utf8(&entry) else {
                continue;
            };
            match shared::evict_if_full(key, &state.prepared.spec, now) {
                Ok(Eviction::Gone) | Ok(Eviction::Evicted) => {}
                Ok(Eviction::Live) | Err(_) => {
                    let seen = !requeued.insert(entry.clone());
                    let _ = hostcalls::enqueue_shared_queue(queue, Some(&entry));
                    if seen {
                        break; // went round the whole queue
                    }
                }
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Unconfigured (on_configure not run or failed): a pass-through context,
        // since returning None would trap in the SDK.
        Some(Box::new(RateLimit {
            state: self.state.clone(),
            decision: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Per-request context.
struct RateLimit {
    state: Option<Rc<State>>,
    decision: Option<Decision>,
}

impl RateLimit {
    fn bucket_key(state: &State) -> Option<Cow<'_, str>> {
        let ns = &state.namespace;
        match &state.prepared.key {
            KeySource::Global => Some(Cow::Borrowed(&state.global_key)),
            KeySource::SourceIp => {
                let ip = properties::source_ip()
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|| "unknown".to_string());
                Some(Cow::Owned(format!("{ns}ip:{ip}")))
            }
            KeySource::Header(name) => {
                headers::get_header(name).map(|v| Cow::Owned(format!("{ns}h:{v}")))
            }
        }
    }
}

impl Context for RateLimit {}

impl HttpContext for RateLimit {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return Action::Continue;
        };
        let Some(key) = Self::bucket_key(&state) else {
            return Action::Continue;
        };
        let now = shared::now_nanos();
        let outcome = match shared::shared_token_bucket(&key, &state.prepared.spec, now) {
            Ok(o) => o,
            Err(e) => {
                log::warn!("rate_limit: {e}; letting the request through");
                return Action::Continue;
            }
        };
        if outcome.created {
            if let Some(q) = state.queue {
                let _ = hostcalls::enqueue_shared_queue(q, Some(key.as_bytes()));
            }
        }
        let d = outcome.decision;
        if d.allowed {
            self.decision = Some(d);
            return Action::Continue;
        }
        let retry = d.retry_after_secs().to_string();
        let remaining = d.remaining.to_string();
        let _ = respond::send_error(
            429,
            "rate_limited",
            "too many requests",
            &[
                ("retry-after", &retry),
                ("x-ratelimit-limit", &state.limit_text),
                ("x-ratelimit-remaining", &remaining),
            ],
        );
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if let (Some(d), Some(state)) = (self.decision, &self.state) {
            headers::set_response_header("x-ratelimit-limit", Some(&state.limit_text));
            headers::set_response_header("x-ratelimit-remaining", Some(&d.remaining.to_string()));
        }
        Action::Continue
    }
}
