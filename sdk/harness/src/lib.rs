//! `weir-sdk-harness`: run a compiled proxy-wasm filter (`.wasm`) in weir's REAL host
//! (`weir-wasm`: wasmtime, every hostcall, limits, shared data, timers) and drive it with
//! synthetic requests and responses — no proxy, no sockets. It is the native, host-side half of
//! the filter SDK: write a filter with `weir-sdk`, build it to wasm, test it here, run it in weir.
//!
//! ```no_run
//! use weir_sdk_harness::Harness;
//! use serde_json::json;
//!
//! // proxy_on_vm_start + proxy_on_configure run here; an Err names the step that failed.
//! let h = Harness::load(
//!     "target/filters/header_rewrite.wasm",
//!     json!({"request": {"set": {"x-env": "prod"}}, "response": {"remove": ["server"]}}),
//! )?;
//! let out = h.request().method("GET").path("/x").header("a", "b").send();
//! assert!(out.local_response().is_none() && !out.paused());
//! assert_eq!(out.request_header("x-env").as_deref(), Some("prod")); // as forwarded upstream
//! let resp = out.respond(200).header("server", "upstream").body("hi").send();
//! assert_eq!(resp.response_header("server"), None);
//! assert_eq!(&resp.response_body()[..], b"hi");
//! # Ok::<(), weir_sdk_harness::HarnessError>(())
//! ```
//!
//! What it offers:
//! - [`Harness::request`] → [`RequestBuilder`] (method, path, headers, body, trailers and the
//!   connection facts filters read as properties: source address, mTLS peer URI SAN, ...) →
//!   [`RequestBuilder::send`] runs the request phases and gives an [`Exchange`]: the request as
//!   forwarded ([`Exchange::request_headers`]), a local answer ([`Exchange::local_response`]),
//!   or a pause ([`Exchange::paused`]; [`Exchange::wait`] / [`Harness::tick`] /
//!   [`Harness::advance`] let it resume). [`Exchange::respond`] runs the response phases.
//! - `proxy_http_call` answered by a closure ([`Harness::on_http_call`]), calls recorded
//!   ([`Harness::http_calls`]).
//! - Several "workers": [`Harness::worker`] builds another VM of the same filter on the same host,
//!   so both see the same shared data (same `vm_id`) — e.g. to check a rate limit is exact across
//!   workers. [`Harness::shared_data`] reads it.
//! - Filter metrics ([`Harness::metric`]), host failure counters ([`Harness::errors`]) and
//!   what the filter logged ([`Harness::logs`]).
//! - Chains: [`HarnessBuilder::then`] puts more filters after the first (e.g. auth, then
//!   header_rewrite), run in order on requests and in reverse on responses, as weir does.
//!
//! Threading and time: a harness owns a tokio current-thread runtime and a `LocalSet` (a weir
//! worker in miniature); its methods are synchronous and must not be called from inside another
//! tokio runtime. The guest's clock is the wall clock, so [`Harness::advance`] really lets time
//! pass (timers and ticks fire meanwhile), and [`Harness::tick`] waits for the filter's next
//! `proxy_on_tick`. Everything is bounded ([`WAIT_LIMIT`]).
//!
//! The tests of every built-in filter (`tests/*.rs`, one file per filter) show the whole API.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use std::sync::Mutex;

use tokio::sync::Notify;
use tracing_subscriber::layer::SubscriberExt;
use weir_wasm::metrics::Phase;
use weir_wasm::{
    BodyFlow, ChainStream, FailureKind, FailurePolicy, FilterChain, Flow, HeaderList, HostServices,
    HttpCallError, HttpCallFuture, HttpCallResponse, LocalResponse, PluginSpec, PluginVm,
    PreparedPlugin, StreamError, StreamInfo, WasmError, WasmHost,
};

pub use tracing::Level;
pub use weir_wasm;

/// Longest any harness call waits for the filter (a resume, a tick).
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// How many scheduler turns [`RequestBuilder::send`] gives a stream before reporting it paused
/// (enough for every hop the host makes without a timer: http_call answers, continue_stream).
const SETTLE_TURNS: usize = 64;

// === errors ===

/// The step of loading a filter that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading the `.wasm` file.
    Read,
    /// Compiling / validating the module (ABI marker, exports, imports).
    Compile,
    /// Instantiating it (start function, memory limit).
    Instantiate,
    /// `proxy_on_vm_start`.
    VmStart,
    /// `proxy_on_configure` (a config the filter rejects).
    Configure,
    /// Building the harness runtime.
    Runtime,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Read => "read",
            Step::Compile => "compile",
            Step::Instantiate => "instantiate",
            Step::VmStart => "on_vm_start",
            Step::Configure => "on_configure",
            Step::Runtime => "runtime",
        })
    }
}

/// Why a filter could not be loaded into the harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{step} failed: {source}")]
    Wasm { step: Step, source: WasmError },
    #[error("cannot build the harness runtime: {0}")]
    Runtime(std::io::Error),
}

impl HarnessError {
    /// The step that failed.
    pub fn step(&self) -> Step {
        match self {
            HarnessError::Read { .. } => Step::Read,
            HarnessError::Wasm { step, .. } => *step,
            HarnessError::Runtime(_) => Step::Runtime,
        }
    }
}

fn wasm_err(source: WasmError) -> HarnessError {
    let step = match &source {
        WasmError::Instantiate { .. } | WasmError::Failed { .. } => Step::Instantiate,
        WasmError::VmStart { .. } => Step::VmStart,
        WasmError::Configure { .. } => Step::Configure,
        _ => Step::Compile,
    };
    HarnessError::Wasm { step, source }
}

// === driver: the worker runtime ===

struct Driver {
    rt: tokio::runtime::Runtime,
    local: tokio::task::LocalSet,
    /// Captures the `weir::filter` log events of everything run on this driver.
    dispatch: tracing::Dispatch,
    logs: Arc<Mutex<Vec<LogLine>>>,
}

impl Driver {
    fn new() -> Result<Driver, HarnessError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HarnessError::Runtime)?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let dispatch =
            tracing::Dispatch::new(tracing_subscriber::registry().with(Capture(logs.clone())));
        Ok(Driver {
            rt,
            local: tokio::task::LocalSet::new(),
            dispatch,
            logs,
        })
    }

    /// Runs `f` on the worker (every guest callback happens inside), with the log capture
    /// as the thread's subscriber for the duration.
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        tracing::dispatcher::with_default(&self.dispatch, || self.local.block_on(&self.rt, f))
    }

    /// Lets local tasks run for a few scheduler turns, or until `done`.
    fn settle(&self, done: impl Fn() -> bool) {
        self.block_on(async {
            for _ in 0..SETTLE_TURNS {
                if done() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
    }
}

// === log capture ===

/// A message a filter logged (`proxy_log`, WASI stdout/stderr) or the host logged about it
/// (a trap, a failed `http_call`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    /// The filter's name.
    pub filter: String,
    pub message: String,
}

struct Capture(Arc<Mutex<Vec<LogLine>>>);

#[derive(Default)]
struct LogVisitor {
    filter: String,
    message: String,
}

impl tracing::field::Visit for LogVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "filter" => self.filter = value.to_string(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "filter" => self.filter = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != "weir::filter" {
            return;
        }
        let mut v = LogVisitor::default();
        event.record(&mut v);
        let line = LogLine {
            level: *event.metadata().level(),
            filter: v.filter,
            message: v.message,
        };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
}

// === http_call services ===

/// An outbound call a filter made with `proxy_http_call`.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub cluster: String,
    pub method: String,
    /// `scheme://authority/path` as the host built it.
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub timeout: Duration,
}

impl RecordedCall {
    /// First value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type CallHandler = dyn Fn(&str, &http::Request<Bytes>) -> Result<http::Response<Bytes>, String>;

#[derive(Default)]
struct Services {
    handler: RefCell<Option<Rc<CallHandler>>>,
    calls: RefCell<Vec<RecordedCall>>,
}

impl HostServices for Services {
    fn http_call(
        &self,
        cluster: &str,
        request: http::Request<Bytes>,
        timeout: Duration,
    ) -> Result<HttpCallFuture, HttpCallError> {
        self.calls.borrow_mut().push(RecordedCall {
            cluster: cluster.to_string(),
            method: request.method().to_string(),
            uri: request.uri().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: request.body().clone(),
            timeout,
        });
        let Some(handler) = self.handler.borrow().clone() else {
            return Err(HttpCallError::UnknownCluster(cluster.to_string()));
        };
        let res = handler(cluster, &request).map(|response| HttpCallResponse {
            response,
            trailers: None,
        });
        Ok(Box::pin(async move { res }))
    }
}

// === Harness ===

/// Options for loading a filter: [`Harness::builder`].
pub struct HarnessBuilder {
    source: Source,
    spec: PluginSpec,
    host: Option<WasmHost>,
    /// Filters after this one in the chain.
    next: Vec<HarnessBuilder>,
}

enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

impl HarnessBuilder {
    /// The filter's configuration (`config:` in weir.yaml), as JSON.
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.spec.configuration = config.to_string().into_bytes();
        self
    }

    /// The raw `PLUGIN_CONFIGURATION` bytes.
    pub fn config_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.spec.configuration = bytes.into();
        self
    }

    /// The filter name (`plugin_name`, error messages). Default: the file stem.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.spec.name = name.into();
        self
    }

    /// The VM id: the shared data / shared queue namespace. Default "".
    pub fn vm_id(mut self, vm_id: impl Into<String>) -> Self {
        self.spec.vm_id = vm_id.into();
        self
    }

    /// The root id (`plugin_root_id`). Default "".
    pub fn root_id(mut self, root_id: impl Into<String>) -> Self {
        self.spec.root_id = root_id.into();
        self
    }

    /// Anything else of the host-side spec (limits, failure policy, vm configuration).
    pub fn spec(mut self, f: impl FnOnce(&mut PluginSpec)) -> Self {
        f(&mut self.spec);
        self
    }

    /// Run on this host (to share shared data with other harnesses on the same thread).
    pub fn host(mut self, host: &WasmHost) -> Self {
        self.host = Some(host.clone());
        self
    }

    /// Put `next` after this filter in the chain (requests run through the filters in
    /// order, responses in reverse order, as in weir). `next`'s own host option is ignored:
    /// the chain runs on one host. The harness's accessors that name one filter (ticks,
    /// shared data, errors) refer to the first.
    pub fn then(mut self, next: HarnessBuilder) -> Self {
        let HarnessBuilder {
            source,
            spec,
            next: more,
            ..
        } = next;
        self.next.push(HarnessBuilder {
            source,
            spec,
            host: None,
            next: Vec::new(),
        });
        self.next.extend(more);
        self
    }

    fn prepare(self, host: &WasmHost) -> Result<Arc<PreparedPlugin>, HarnessError> {
        let bytes = match &self.source {
            Source::Path(p) => std::fs::read(p).map_err(|source| HarnessError::Read {
                path: p.clone(),
                source,
            })?,
            Source::Bytes(b) => b.clone(),
        };
        let module = host.compile(&bytes).map_err(wasm_err)?;
        Ok(host.prepare(self.spec, module))
    }

    /// Compile the module(s), instantiate, run `proxy_on_vm_start` and `proxy_on_configure`.
    pub fn load(mut self) -> Result<Harness, HarnessError> {
        let host = match self.host.take() {
            Some(h) => h,
            None => WasmHost::new().map_err(wasm_err)?,
        };
        let next = std::mem::take(&mut self.next);
        let mut plugins = vec![self.prepare(&host)?];
        for b in next {
            plugins.push(b.prepare(&host)?);
        }
        let driver = Rc::new(Driver::new()?);
        let services = Rc::new(Services::default());
        Harness::start(host, plugins, driver, services)
    }
}

/// A filter loaded into the real host, with its own worker runtime. See the crate docs.
pub struct Harness {
    host: WasmHost,
    /// The chain's filters, in order (usually one).
    plugins: Vec<Arc<PreparedPlugin>>,
    vms: Vec<Rc<PluginVm>>,
    chain: FilterChain,
    services: Rc<Services>,
    driver: Rc<Driver>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").field("vms", &self.vms).finish()
    }
}

impl Harness {
    /// Load `path` with `config` (JSON) and defaults for everything else.
    pub fn load(
        path: impl AsRef<Path>,
        config: serde_json::Value,
    ) -> Result<Harness, HarnessError> {
        Harness::builder(path).config(config).load()
    }

    /// Options for loading `path`.
    pub fn builder(path: impl AsRef<Path>) -> HarnessBuilder {
        let path = path.as_ref().to_path_buf();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "filter".into());
        HarnessBuilder {
            source: Source::Path(path),
            spec: Self::default_spec(name),
            host: None,
            next: Vec::new(),
        }
    }

    /// Options for loading a module from bytes (wasm, or WAT text).
    pub fn builder_from_bytes(name: &str, bytes: impl Into<Vec<u8>>) -> HarnessBuilder {
        HarnessBuilder {
            source: Source::Bytes(bytes.into()),
            spec: Self::default_spec(name.to_string()),
            host: None,
            next: Vec::new(),
        }
    }

    fn default_spec(name: String) -> PluginSpec {
        let mut spec = PluginSpec::new(name);
        spec.configuration = b"{}".to_vec();
        // Debug builds and a shared machine: a generous deadline (the limit itself is tested
        // in weir-wasm).
        spec.callback_deadline = Duration::from_millis(500);
        spec.failure = FailurePolicy::FailClosed;
        spec
    }

    fn start(
        host: WasmHost,
        plugins: Vec<Arc<PreparedPlugin>>,
        driver: Rc<Driver>,
        services: Rc<Services>,
    ) -> Result<Harness, HarnessError> {
        let vms = driver.block_on(async {
            let mut vms = Vec::with_capacity(plugins.len());
            for plugin in &plugins {
                let svc: Rc<dyn HostServices> = services.clone();
                let vm = PluginVm::new(plugin, svc)?;
                vm.activate();
                vms.push(vm);
            }
            Ok::<_, WasmError>(vms)
        });
        let vms = vms.map_err(wasm_err)?;
        driver.settle(|| false);
        Ok(Harness {
            chain: FilterChain::new(vms.clone()),
            host,
            plugins,
            vms,
            services,
            driver,
        })
    }

    fn plugin(&self) -> &Arc<PreparedPlugin> {
        &self.plugins[0]
    }

    /// Another VM of the same filter on the same host and thread: a second "worker". Both share
    /// shared data and queues (same `vm_id`), `proxy_http_call` handling and the runtime.
    pub fn worker(&self) -> Result<Harness, HarnessError> {
        Harness::start(
            self.host.clone(),
            self.plugins.clone(),
            self.driver.clone(),
            self.services.clone(),
        )
    }

    /// Start a request (defaults: `GET /`, authority `example.com`, scheme `http`, HTTP/1.1,
    /// source 127.0.0.1:50000, destination 127.0.0.1:8080, no body).
    pub fn request(&self) -> RequestBuilder<'_> {
        RequestBuilder {
            harness: self,
            method: "GET".into(),
            path: "/".into(),
            authority: "example.com".into(),
            scheme: "http".into(),
            headers: Vec::new(),
            body: None,
            trailers: None,
            info: StreamInfo {
                source_address: Some(SocketAddr::from(([127, 0, 0, 1], 50000))),
                destination_address: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
                protocol: Some("HTTP/1.1".into()),
                ..StreamInfo::default()
            },
        }
    }

    /// Answer `proxy_http_call`s with `f(cluster, request)`: `Ok(response)` is delivered to
    /// the filter, `Err` as a failed call (no headers, no body). Without a handler every call
    /// fails to start (unknown cluster).
    pub fn on_http_call(
        &self,
        f: impl Fn(&str, &http::Request<Bytes>) -> Result<http::Response<Bytes>, String> + 'static,
    ) {
        *self.services.handler.borrow_mut() = Some(Rc::new(f));
    }

    /// Every `proxy_http_call` made so far (by every worker of this harness).
    pub fn http_calls(&self) -> Vec<RecordedCall> {
        self.services.calls.borrow().clone()
    }

    /// Wait for the next `proxy_on_tick` of any filter of the chain, then let the streams it
    /// resumed run. Panics when none comes within [`WAIT_LIMIT`] (no tick period set?).
    pub fn tick(&self) {
        let before = self.ticks();
        let ok = self.driver.block_on(async {
            tokio::time::timeout(WAIT_LIMIT, async {
                while self.ticks() == before {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .is_ok()
        });
        assert!(ok, "no proxy_on_tick within {WAIT_LIMIT:?}");
        self.driver.settle(|| false);
    }

    /// Number of `proxy_on_tick` calls so far (all workers, all filters of the chain).
    pub fn ticks(&self) -> u64 {
        self.plugins
            .iter()
            .map(|p| p.stats().calls(Phase::Tick))
            .sum()
    }

    /// Let `d` of wall-clock time pass on this worker (ticks, timers and resumed streams run).
    pub fn advance(&self, d: Duration) {
        self.driver
            .block_on(async move { tokio::time::sleep(d).await });
        self.driver.settle(|| false);
    }

    /// A value in shared data under this filter's `vm_id`.
    pub fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        self.host
            .shared_data()
            .get(&self.plugin().spec().vm_id, key.as_bytes())
            .map(|(v, _)| v)
    }

    /// Number of shared-data keys under this filter's `vm_id`.
    pub fn shared_data_len(&self) -> usize {
        self.host.shared_data().len(&self.plugin().spec().vm_id)
    }

    /// A metric the filter defined (`proxy_define_metric`) by name: counter/gauge value or
    /// histogram count.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.host.metrics().by_name(name).map(|m| m.value())
    }

    /// Every log line of the filters so far (all workers), oldest first.
    pub fn logs(&self) -> Vec<LogLine> {
        self.driver
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The log lines so far, clearing them.
    pub fn take_logs(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.driver.logs.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Host-counted failures of this filter (traps, timeouts, OOM, config).
    pub fn errors(&self, kind: FailureKind) -> u64 {
        self.plugin().stats().errors(kind)
    }

    /// Whether the (first) filter's VM is failed (after a trap under fail_closed).
    pub fn is_failed(&self) -> bool {
        self.vms[0].is_failed()
    }

    /// The host (to share with another harness, or read metrics).
    pub fn host(&self) -> &WasmHost {
        &self.host
    }

    /// This worker's VM of the (first) filter.
    pub fn vm(&self) -> &Rc<PluginVm> {
        &self.vms[0]
    }

    /// This worker's VMs, one per filter of the chain, in order.
    pub fn vms(&self) -> &[Rc<PluginVm>] {
        &self.vms
    }
}

// === requests ===

/// A synthetic request: [`Harness::request`].
pub struct RequestBuilder<'h> {
    harness: &'h Harness,
    method: String,
    path: String,
    authority: String,
    scheme: String,
    headers: Vec<(String, String)>,
    body: Option<Bytes>,
    trailers: Option<HeaderList>,
    info: StreamInfo,
}

impl<'h> RequestBuilder<'h> {
    pub fn method(mut self, method: &str) -> Self {
        self.method = method.into();
        self
    }
    /// `:path`, with the query if any.
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.into();
        self
    }
    /// `:authority`.
    pub fn authority(mut self, authority: &str) -> Self {
        self.authority = authority.into();
        self
    }
    /// `:scheme`.
    pub fn scheme(mut self, scheme: &str) -> Self {
        self.scheme = scheme.into();
        self
    }
    /// Add a header (repeat for several values).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }
    /// The request body (one chunk).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }
    /// Add a trailer (the request then ends with trailers).
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers
            .get_or_insert_with(HeaderList::new)
            .add(name, value);
        self
    }
    /// `source.address` / `source.port` (`"10.0.0.1:1234"`).
    pub fn source(mut self, addr: &str) -> Self {
        self.info.source_address = addr.parse().ok();
        self
    }
    /// The mTLS peer certificate's URI SAN (`connection.uri_san_peer_certificate`); also
    /// sets `connection.mtls`.
    pub fn peer_uri_san(mut self, uri: &str) -> Self {
        self.info.mtls = true;
        self.info.peer_uri_sans.push(uri.into());
        self
    }
    /// `request.id` (otherwise the `x-request-id` header, if any). Panics when `id` is not a
    /// valid header value (the proxy's request ids are header values).
    pub fn request_id(mut self, id: &str) -> Self {
        let id = http::HeaderValue::from_str(id).expect("a request id is a valid header value");
        self.info.request_id = Some(id);
        self
    }
    /// Any other connection/stream fact.
    pub fn info(mut self, f: impl FnOnce(&mut StreamInfo)) -> Self {
        f(&mut self.info);
        self
    }

    /// Run the request phases (headers, body, trailers). Returns once the filter let the
    /// request through, answered locally, or paused it ([`Exchange::paused`]).
    pub fn send(self) -> Exchange {
        let mut headers = HeaderList::with_capacity(self.headers.len() + 4);
        headers.add(":method", &self.method);
        headers.add(":path", &self.path);
        headers.add(":authority", &self.authority);
        headers.add(":scheme", &self.scheme);
        for (k, v) in &self.headers {
            headers.add(k, v);
        }
        let h = self.harness;
        let slot = Rc::new(RefCell::new(Slot::default()));
        let done = Rc::new(Notify::new());
        let (body, trailers, info) = (self.body, self.trailers, self.info);
        {
            let slot = slot.clone();
            let done = done.clone();
            let chain = h.chain.clone();
            h.driver.block_on(async move {
                let stream = chain.new_stream(info);
                tokio::task::spawn_local(async move {
                    let mut stream = stream;
                    let end = request_phases(&mut stream, headers, body, trailers).await;
                    let mut s = slot.borrow_mut();
                    s.stream = Some(stream);
                    s.request = Some(end);
                    drop(s);
                    done.notify_one();
                });
            });
        }
        let ex = Exchange {
            driver: h.driver.clone(),
            slot,
            done,
        };
        ex.settle();
        ex
    }
}

#[derive(Debug, Clone)]
enum End {
    Continue,
    Local(LocalResponse),
    Reset,
    Error(StreamError),
}

#[derive(Debug, Clone)]
struct PhaseEnd {
    end: End,
    body: Vec<u8>,
}

#[derive(Default)]
struct Slot {
    stream: Option<ChainStream>,
    request: Option<PhaseEnd>,
    response: Option<PhaseEnd>,
    responding: bool,
}

async fn request_phases(
    s: &mut ChainStream,
    headers: HeaderList,
    body: Option<Bytes>,
    trailers: Option<HeaderList>,
) -> PhaseEnd {
    let mut out = Vec::new();
    let eos = body.is_none() && trailers.is_none();
    match s.on_request_headers(headers, eos).await {
        Flow::Continue => {}
        flow => return flow_end(flow, out),
    }
    if let Some(b) = body {
        match s.on_request_body(b, trailers.is_none()).await {
            Ok(flow) => {
                if let Some(end) = body_flow(flow, &mut out) {
                    return end;
                }
            }
            Err(e) => {
                return PhaseEnd {
                    end: End::Error(e),
                    body: out,
                }
            }
        }
    }
    if let Some(t) = trailers {
        match s.on_request_trailers(t).await {
            Ok(tf) => {
                out.extend_from_slice(tf.flushed_body.as_deref().unwrap_or_default());
                return flow_end(tf.flow, out);
            }
            Err(e) => {
                return PhaseEnd {
                    end: End::Error(e),
                    body: out,
                }
            }
        }
    }
    PhaseEnd {
        end: End::Continue,
        body: out,
    }
}

async fn response_phases(
    s: &mut ChainStream,
    headers: HeaderList,
    body: Option<Bytes>,
    trailers: Option<HeaderList>,
) -> PhaseEnd {
    let mut out = Vec::new();
    let eos = body.is_none() && trailers.is_none();
    match s.on_response_headers(headers, eos).await {
        Flow::Continue => {}
        flow => return flow_end(flow, out),
    }
    if let Some(b) = body {
        match s.on_response_body(b, trailers.is_none()).await {
            Ok(flow) => {
                if let Some(end) = body_flow(flow, &mut out) {
                    return end;
                }
            }
            Err(e) => {
                return PhaseEnd {
                    end: End::Error(e),
                    body: out,
                }
            }
        }
    }
    if let Some(t) = trailers {
        match s.on_response_trailers(t).await {
            Ok(tf) => {
                out.extend_from_slice(tf.flushed_body.as_deref().unwrap_or_default());
                return flow_end(tf.flow, out);
            }
            Err(e) => {
                return PhaseEnd {
                    end: End::Error(e),
                    body: out,
                }
            }
        }
    }
    PhaseEnd {
        end: End::Continue,
        body: out,
    }
}

fn flow_end(flow: Flow, body: Vec<u8>) -> PhaseEnd {
    let end = match flow {
        Flow::Continue => End::Continue,
        Flow::LocalResponse(lr) => End::Local(lr),
        Flow::Reset => End::Reset,
    };
    PhaseEnd { end, body }
}

/// Appends forwarded bytes; `Some` when the stream ended here.
fn body_flow(flow: BodyFlow, out: &mut Vec<u8>) -> Option<PhaseEnd> {
    match flow {
        BodyFlow::Continue(b) => {
            out.extend_from_slice(&b);
            None
        }
        BodyFlow::Hold => None,
        BodyFlow::LocalResponse(lr) => Some(PhaseEnd {
            end: End::Local(lr),
            body: std::mem::take(out),
        }),
        BodyFlow::Reset => Some(PhaseEnd {
            end: End::Reset,
            body: std::mem::take(out),
        }),
    }
}

// === Exchange ===

/// A local answer from a filter (or the host's 503 when a fail-closed filter failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: HeaderList,
    pub body: Bytes,
    /// `response.code_details`.
    pub details: String,
}

impl LocalReply {
    /// First value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get_str(name)
    }
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl From<LocalResponse> for LocalReply {
    fn from(lr: LocalResponse) -> Self {
        LocalReply {
            status: lr.status,
            headers: lr.headers,
            body: lr.body,
            details: lr.details,
        }
    }
}

/// One request through the filter: what it did with the request and (after
/// [`Exchange::respond`]) with the response. Dropping it ends the stream (`proxy_on_done`,
/// `proxy_on_log`, `proxy_on_delete`).
pub struct Exchange {
    driver: Rc<Driver>,
    slot: Rc<RefCell<Slot>>,
    done: Rc<Notify>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.slot.borrow();
        f.debug_struct("Exchange")
            .field("request", &s.request)
            .field("response", &s.response)
            .finish()
    }
}

impl Exchange {
    fn current_done(&self) -> bool {
        let s = self.slot.borrow();
        if s.responding {
            s.response.is_some()
        } else {
            s.request.is_some()
        }
    }

    fn settle(&self) {
        self.driver.settle(|| self.current_done());
    }

    /// Whether the current phase (request, or response after [`Exchange::respond`]) is parked
    /// by a filter (Pause, waiting for a timer, an http_call answer or continue_stream).
    pub fn paused(&self) -> bool {
        !self.current_done()
    }

    /// Run the worker until the current phase completes. Panics after [`WAIT_LIMIT`].
    pub fn wait(&self) -> &Self {
        if self.current_done() {
            return self;
        }
        let ok = self.driver.block_on(async {
            tokio::time::timeout(WAIT_LIMIT, async {
                while !self.current_done() {
                    self.done.notified().await;
                }
            })
            .await
            .is_ok()
        });
        assert!(ok, "the stream did not resume within {WAIT_LIMIT:?}");
        self
    }

    fn end(&self) -> Option<PhaseEnd> {
        let s = self.slot.borrow();
        if s.responding {
            if let Some(PhaseEnd {
                end: e @ (End::Local(_) | End::Reset | End::Error(_)),
                body,
            }) = &s.request
            {
                return Some(PhaseEnd {
                    end: e.clone(),
                    body: body.clone(),
                });
            }
            s.response.clone()
        } else {
            s.request.clone()
        }
    }

    /// The local answer, if a filter gave one (in the request or the response phases).
    pub fn local_response(&self) -> Option<LocalReply> {
        let s = self.slot.borrow();
        for p in [&s.request, &s.response].into_iter().flatten() {
            if let End::Local(lr) = &p.end {
                return Some(lr.clone().into());
            }
        }
        None
    }

    /// Status of the local answer (`None` when the request went through).
    pub fn status(&self) -> Option<u16> {
        self.local_response().map(|r| r.status)
    }

    /// Whether a filter reset the stream (`proxy_close_stream`).
    pub fn reset(&self) -> bool {
        matches!(self.end().map(|e| e.end), Some(End::Reset))
    }

    /// A body-limit error of the host (413/500), if any.
    pub fn stream_error(&self) -> Option<StreamError> {
        match self.end().map(|e| e.end) {
            Some(End::Error(e)) => Some(e),
            _ => None,
        }
    }

    /// Whether the request was let through to the upstream (not paused, no local answer, no
    /// reset).
    pub fn forwarded(&self) -> bool {
        matches!(
            self.slot.borrow().request.as_ref().map(|e| &e.end),
            Some(End::Continue)
        )
    }

    fn with_stream<R>(&self, f: impl FnOnce(&ChainStream) -> R) -> R {
        let s = self.slot.borrow();
        let stream = s
            .stream
            .as_ref()
            .expect("the stream is still paused in a filter: call wait() first");
        f(stream)
    }

    /// The request headers as the filter left them (pseudo headers included).
    pub fn request_headers(&self) -> HeaderList {
        self.with_stream(|s| s.request_headers().clone())
    }

    /// One request header as forwarded.
    pub fn request_header(&self, name: &str) -> Option<String> {
        self.with_stream(|s| s.request_headers().get_str(name).map(str::to_string))
    }

    /// The request body as forwarded.
    pub fn request_body(&self) -> Bytes {
        Bytes::from(
            self.slot
                .borrow()
                .request
                .as_ref()
                .map(|e| e.body.clone())
                .unwrap_or_default(),
        )
    }

    /// The request trailers as forwarded.
    pub fn request_trailers(&self) -> HeaderList {
        self.with_stream(|s| s.request_trailers().clone())
    }

    /// A property the filter set with `proxy_set_property` (path segments joined by '.').
    pub fn property(&self, path: &str) -> Option<Vec<u8>> {
        let raw = path.replace('.', "\0");
        self.with_stream(|s| s.property(raw.as_bytes()))
    }

    /// Start the upstream response with `status`.
    pub fn respond(&self, status: u16) -> ResponseBuilder<'_> {
        ResponseBuilder {
            exchange: self,
            headers: HeaderList::from_pairs([(":status", status.to_string())]),
            body: None,
            trailers: None,
        }
    }

    /// The response headers as the filter left them (with `:status`).
    pub fn response_headers(&self) -> HeaderList {
        self.with_stream(|s| s.response_headers().clone())
    }

    /// One response header as the client gets it.
    pub fn response_header(&self, name: &str) -> Option<String> {
        self.with_stream(|s| s.response_headers().get_str(name).map(str::to_string))
    }

    /// All values of one response header.
    pub fn response_header_all(&self, name: &str) -> Vec<String> {
        self.with_stream(|s| {
            s.response_headers()
                .get_all(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        })
    }

    /// The response body as the client gets it.
    pub fn response_body(&self) -> Bytes {
        Bytes::from(
            self.slot
                .borrow()
                .response
                .as_ref()
                .map(|e| e.body.clone())
                .unwrap_or_default(),
        )
    }
}

/// The upstream response: [`Exchange::respond`].
pub struct ResponseBuilder<'a> {
    exchange: &'a Exchange,
    headers: HeaderList,
    body: Option<Bytes>,
    trailers: Option<HeaderList>,
}

impl<'a> ResponseBuilder<'a> {
    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.add(name.to_ascii_lowercase(), value);
        self
    }
    /// The body (one chunk).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }
    /// Add a trailer.
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers
            .get_or_insert_with(HeaderList::new)
            .add(name, value);
        self
    }

    /// Run the response phases (filters in reverse order). Panics if the request is still
    /// paused or did not go upstream.
    pub fn send(self) -> &'a Exchange {
        let ex = self.exchange;
        let mut stream = {
            let mut s = ex.slot.borrow_mut();
            assert!(
                matches!(s.request.as_ref().map(|e| &e.end), Some(End::Continue)),
                "respond(): the request did not go upstream ({:?})",
                s.request.as_ref().map(|e| &e.end)
            );
            assert!(!s.responding, "respond() called twice");
            s.responding = true;
            s.stream.take().expect("stream")
        };
        let (headers, body, trailers) = (self.headers, self.body, self.trailers);
        let slot = ex.slot.clone();
        let done = ex.done.clone();
        ex.driver.block_on(async move {
            tokio::task::spawn_local(async move {
                let end = response_phases(&mut stream, headers, body, trailers).await;
                let mut s = slot.borrow_mut();
                s.stream = Some(stream);
                s.response = Some(end);
                drop(s);
                done.notify_one();
            });
        });
        ex.settle();
        ex
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // End the stream on the worker (proxy_on_done/log/delete run in ChainStream's drop).
        let stream = self.slot.borrow_mut().stream.take();
        if let Some(s) = stream {
            self.driver.block_on(async move { drop(s) });
        }
    }
}
