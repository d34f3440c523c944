//! The data every store carries ([`HostState`]) and the per-stream data shared by the filters of
//! one chain ([`StreamData`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use wasmtime::{Memory, TypedFunc};

use crate::abi::shared_data::SharedData;
use crate::abi::shared_queue::SharedQueues;
use crate::headers::HeaderList;
use crate::limits::MemoryLimiter;
use crate::metrics::{FilterMetric, MetricsRegistry};
use crate::properties::StreamInfo;
use crate::services::{HostServices, HttpCallFuture};
use crate::stream::LocalResponse;
use crate::vm::PreparedPlugin;

/// Per-request data, shared (through `Rc<RefCell<_>>`) by every filter context of one stream.
/// Hostcalls borrow it only for the duration of the hostcall.
#[derive(Debug, Default)]
pub(crate) struct StreamData {
    pub info: StreamInfo,
    pub request_headers: HeaderList,
    pub request_trailers: HeaderList,
    pub response_headers: HeaderList,
    pub response_trailers: HeaderList,
    /// The request body buffer under the current `proxy_on_request_body` callback: the chunk
    /// as received (shared, not copied) until a filter writes to it.
    pub request_body: bytes::Bytes,
    pub response_body: bytes::Bytes,
    pub request_body_size: u64,
    pub response_body_size: u64,
    /// Values set with `proxy_set_property` (path as serialized, value).
    pub props: Vec<(Vec<u8>, Vec<u8>)>,
    pub local_response: Option<LocalResponse>,
    pub reset: bool,
    pub route_cache_cleared: bool,
    /// Set when the request body bypasses the chain: what it carried, folded into
    /// `request_body_size` and `request_trailers` by [`StreamData::fold_request_tally`].
    pub request_tally: Option<Arc<RequestTally>>,
}

impl StreamData {
    /// A stream's data before any phase ran (no default `StreamInfo` built and thrown away).
    pub fn new(info: StreamInfo) -> Self {
        StreamData {
            info,
            request_headers: HeaderList::default(),
            request_trailers: HeaderList::default(),
            response_headers: HeaderList::default(),
            response_trailers: HeaderList::default(),
            request_body: bytes::Bytes::new(),
            response_body: bytes::Bytes::new(),
            request_body_size: 0,
            response_body_size: 0,
            props: Vec::new(),
            local_response: None,
            reset: false,
            route_cache_cleared: false,
            request_tally: None,
        }
    }

    /// Brings the facts of a request body that bypassed the chain (size so far, trailers) into
    /// the stream's data, for the properties later callbacks read (`request.size`,
    /// `request.trailers`). Idempotent; nothing to do when the body went through the chain.
    /// Trailers are a body's last frame: once they are in, the size is final and the tally is
    /// let go, so later phases skip it.
    pub fn fold_request_tally(&mut self) {
        let Some(tally) = &self.request_tally else {
            return;
        };
        self.request_body_size = tally.size.load(Ordering::Relaxed);
        if let Some(t) = tally.trailers.get() {
            self.request_trailers = HeaderList::from_header_map(t);
            self.request_tally = None;
        }
    }
}

/// What a request body that bypasses the chain carried (no filter takes its callbacks). `Send`:
/// the upstream client may poll the body on another task. No lock: the size is an atomic, and
/// the trailers are set once.
#[derive(Debug, Default)]
pub(crate) struct RequestTally {
    pub size: AtomicU64,
    pub trailers: OnceLock<http::HeaderMap>,
}

/// Wakes a stream parked on one filter.
#[derive(Debug, Default)]
pub(crate) struct StreamSignal {
    pub notify: Notify,
    /// `proxy_continue_stream` was called.
    pub resumed: Cell<bool>,
    /// The VM failed while the stream was parked.
    pub failed: Cell<bool>,
}

impl StreamSignal {
    pub fn wake(&self) {
        self.notify.notify_one();
    }
}

/// An HTTP context of one VM.
#[derive(Debug, Clone)]
pub(crate) struct HttpCtx {
    pub stream: Rc<RefCell<StreamData>>,
    pub signal: Rc<StreamSignal>,
}

/// Which configuration `proxy_get_configuration` (ABI 0.1.0) returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigPhase {
    None,
    VmStart,
    Configure,
}

/// The response of an outbound call, readable during `proxy_on_http_call_response`.
#[derive(Debug, Default)]
pub(crate) struct CallResponse {
    pub headers: HeaderList,
    pub body: Vec<u8>,
    pub trailers: HeaderList,
}

/// Something a hostcall asked for that needs the async runtime; drained by the VM after every
/// callback.
pub(crate) enum Effect {
    HttpCall {
        token: u32,
        caller: u32,
        fut: HttpCallFuture,
        timeout: Duration,
    },
}

/// A map keyed by ids the host hands out itself (context ids, metric ids): never chosen by a
/// client, so they need no DoS-resistant hash. Hostcalls look the effective context up on
/// nearly every call; a multiply is all the hashing it takes.
pub(crate) type ContextMap<V> = HashMap<u32, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a `u32` id (spreads sequential ids over the high bits hashbrown uses).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The data of one wasmtime store (one VM).
pub(crate) struct HostState {
    pub plugin: Arc<PreparedPlugin>,
    pub limiter: MemoryLimiter,
    pub memory: Option<Memory>,
    pub alloc: Option<std::rc::Rc<TypedFunc<i32, i32>>>,
    pub root_id: u32,
    /// The context hostcalls act on (set per callback, changed by proxy_set_effective_context).
    pub effective: u32,
    pub http: ContextMap<HttpCtx>,
    pub config_phase: ConfigPhase,
    pub call_response: Option<CallResponse>,
    pub next_token: u32,
    pub effects: Vec<Effect>,
    /// Set by `proxy_set_tick_period_milliseconds`, taken by the VM after the callback.
    pub tick_period_ms: Option<u32>,
    pub services: Rc<dyn HostServices>,
    pub shared_data: Arc<SharedData>,
    pub queues: Arc<SharedQueues>,
    pub metrics: Arc<MetricsRegistry>,
    pub metric_cache: ContextMap<Arc<FilterMetric>>,
    pub root_props: Vec<(Vec<u8>, Vec<u8>)>,
    pub queue_tx: tokio::sync::mpsc::UnboundedSender<(u32, u32)>,
    /// Arguments of the foreign function being served (buffer type CallData).
    pub foreign_args: Option<Vec<u8>>,
    /// `proc_exit` code, when the guest exited.
    pub exit_code: Option<i32>,
    /// The last warn/error message the guest logged during `proxy_on_vm_start` /
    /// `proxy_on_configure` (put into the configure error, so `weir validate` shows why).
    pub config_log: Option<String>,
}

impl HostState {
    /// The HTTP context hostcalls currently act on, if the effective context is one.
    pub fn current_http(&self) -> Option<&HttpCtx> {
        self.http.get(&self.effective)
    }

    pub fn plugin_name(&self) -> &str {
        &self.plugin.spec.name
    }
}
