//! The request path: one call of [`handle`] per downstream request (phases in `http/mod.rs`).

use super::body::{BodyEnd, LimitedBody, ObservedBody};
use super::error::{classify_client_error, empty, full, ProxyError};
use super::replay::Replay;
use super::{headers, BoxError, ProxyBody, ResponseBody};
use crate::access_log::AccessLogEntry;
use crate::cluster::balancer::PickContext;
use crate::cluster::pool::{UpstreamBody, WorkerPools};
use crate::cluster::ClusterState;
use crate::metrics::RequestStats;
use crate::route::matcher::RequestView;
use crate::route::CompiledRoute;
use crate::shared::Shared;
use crate::snapshot::ListenerState;
use crate::wasm::worker::WorkerFilters;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A worker thread's request-path context (`!Send`: lives on its worker).
pub struct Worker {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub pools: WorkerPools,
    /// Filter VMs by snapshot version (the running one, and one being prepared).
    pub filters: std::cell::RefCell<std::collections::BTreeMap<u64, Rc<WorkerFilters>>>,
    /// This worker, for the host services of each version's VMs.
    weak: std::rc::Weak<Worker>,
}

impl Worker {
    /// Creates the worker context (its host services point back at it).
    pub fn new(id: usize, shared: Arc<Shared>) -> Rc<Worker> {
        Rc::new_cyclic(|weak| Worker {
            id,
            shared,
            pools: Default::default(),
            filters: Default::default(),
            weak: weak.clone(),
        })
    }

    /// Prepares (instantiates) the filters of `snap` on this worker.
    pub fn prepare(&self, snap: &crate::snapshot::Snapshot) -> Result<(), Vec<String>> {
        // Versions older than the published one take no new request: let them go now (their
        // VMs end when their in-flight requests do), or a worker that serves no request between
        // swaps would keep every version's VMs.
        let published = self.shared.snapshot.load().version;
        self.filters.borrow_mut().retain(|&v, _| v >= published);
        // One worker at a time: a filter's proxy_on_vm_start / proxy_on_configure never runs
        // concurrently with another worker's, so first-time shared-data initialisation there
        // (which the ABI cannot make atomic: a CAS on a missing key creates it) is race-free.
        let f = {
            let _one_at_a_time = self
                .shared
                .prepare_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // What the VMs may call (`proxy_http_call`): the clusters of their own snapshot,
            // which requests keep to their end (DESIGN.md §2).
            let services = Rc::new(crate::wasm::services::ProxyServices {
                worker: self.weak.clone(),
                clusters: snap.clusters.clone(),
            });
            WorkerFilters::prepare(snap, services)?
        };
        // Start each VM's local tasks now (tick timers, queue notifications), as Envoy does
        // when it creates a VM: a worker that has not served a request yet still ticks.
        for vm in f.vms.values() {
            vm.activate();
        }
        self.filters.borrow_mut().insert(snap.version, Rc::new(f));
        Ok(())
    }

    /// Drops what was prepared for a version that will not be published.
    pub fn discard(&self, version: u64) {
        self.filters.borrow_mut().remove(&version);
    }

    /// The filters of published snapshot `version`; older versions are let go (their VMs end
    /// when their last in-flight request does).
    pub fn filters_for(&self, version: u64) -> Option<Rc<WorkerFilters>> {
        let mut m = self.filters.borrow_mut();
        while let Some((&v, _)) = m.first_key_value() {
            if v < version {
                m.pop_first();
            } else {
                break;
            }
        }
        m.get(&version).cloned()
    }
}

/// Facts about the downstream connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: Option<TlsInfo>,
    /// `peer`'s IP as the `x-forwarded-for` element this connection's requests append.
    pub client_ip: HeaderValue,
}

/// The TLS session of a downstream connection.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    pub sni: Option<String>,
    pub version: Option<String>,
    pub alpn: Option<String>,
    /// The verified client certificate's identity (mTLS), if one was presented.
    pub peer: Option<crate::tls::PeerIdentity>,
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP",
    }
}

/// What the access log and the metrics need once the response body is over.
struct Finish {
    listener: Arc<ListenerState>,
    stats: Arc<RequestStats>,
    start: Instant,
    /// Wall-clock start, read up front only when the access log or spans need it.
    start_time: Option<SystemTime>,
    route: String,
    cluster: String,
    method: String,
    authority: String,
    path: String,
    protocol: &'static str,
    status: u16,
    flags: &'static str,
    /// The request body's length, counted as it streams (`None`: no body).
    bytes_received: Option<Arc<AtomicU64>>,
    upstream_host: String,
    upstream_service_time: Option<Duration>,
    request_id: HeaderValue,
    traceparent: HeaderValue,
    principal: Option<String>,
    peer: SocketAddr,
    /// Set when spans are exported (`tracing.otlp`).
    trace: Option<TraceHook>,
    /// Logged and counted already ([`Finish::done`] or its drop).
    recorded: bool,
    /// A gRPC request: local replies take the gRPC form ([`super::grpc`]).
    grpc: bool,
}

/// What the request's spans need besides the access-log facts.
struct TraceHook {
    tracer: Arc<crate::trace::Tracer>,
    /// The caller's span (the incoming `traceparent`), parent of this request's span.
    parent: Option<[u8; 8]>,
    /// Filled by the filter chain's stream: one child span per filter callback.
    timings: weir_wasm::stream::TimingSink,
}

impl TraceHook {
    /// The SERVER span (id = the span id sent upstream) and one child per filter callback.
    fn spans(&self, fin: &Finish, flags: &str, elapsed: Duration) -> Vec<crate::trace::SpanRecord> {
        use crate::trace::{AttrValue, SpanKind, SpanRecord};
        let Some((trace_id, span_id, _)) =
            crate::trace::parse_traceparent(fin.traceparent.to_str().unwrap_or(""))
        else {
            return Vec::new();
        };
        let timings = std::mem::take(&mut *self.timings.lock().unwrap_or_else(|e| e.into_inner()));
        let mut spans = Vec::with_capacity(1 + timings.len());
        let s = |v: &str| AttrValue::Str(v.to_string());
        let name = if fin.route.is_empty() {
            fin.method.clone()
        } else {
            format!("{} {}", fin.method, fin.route)
        };
        let path = fin.path.split('?').next().unwrap_or("");
        spans.push(SpanRecord {
            trace_id,
            span_id,
            parent_span_id: self.parent,
            name,
            kind: SpanKind::Server,
            start: fin.start_time(),
            end: fin.start_time() + elapsed,
            attributes: vec![
                ("http.method", s(&fin.method)),
                ("url.path", s(path)),
                ("http.status_code", AttrValue::Int(fin.status.into())),
                ("route", s(&fin.route)),
                ("cluster", s(&fin.cluster)),
                ("upstream", s(&fin.upstream_host)),
                ("listener", s(&fin.listener.config.name)),
                ("response_flags", s(flags)),
                ("request_id", s(fin.request_id.to_str().unwrap_or(""))),
            ],
            error: fin.status >= 500 || fin.status == 0,
        });
        for t in timings {
            spans.push(SpanRecord {
                trace_id,
                span_id: crate::trace::new_span_id(),
                parent_span_id: Some(span_id),
                name: format!("filter {} {}", t.filter, t.phase.as_str()),
                kind: SpanKind::Internal,
                start: t.start,
                end: t.start + t.duration,
                attributes: vec![("filter", s(&t.filter)), ("phase", s(t.phase.as_str()))],
                error: false,
            });
        }
        spans
    }
}

impl Finish {
    /// The wall-clock start: as read up front, else derived from the monotonic start.
    fn start_time(&self) -> SystemTime {
        self.start_time
            .unwrap_or_else(|| SystemTime::now() - self.start.elapsed())
    }

    fn done(mut self: Box<Self>, bytes_sent: u64, end: BodyEnd) {
        self.record(bytes_sent, end);
    }

    /// The request's access-log line, metrics and spans, once.
    fn record(&mut self, bytes_sent: u64, end: BodyEnd) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let flags = match (end, self.flags) {
            (BodyEnd::Complete, f) => f,
            (_, "-") if end == BodyEnd::Dropped => "DC",
            (_, "-") => "UPE",
            (_, f) => f,
        };
        let elapsed = self.start.elapsed();
        self.stats.codes.inc(self.status);
        self.stats.duration.observe(elapsed);
        if let Some(t) = &self.trace {
            t.tracer.submit(t.spans(self, flags, elapsed));
        }
        if let Some(log) = &self.listener.access_log {
            log.write(&AccessLogEntry {
                start_time: self.start_time(),
                listener: &self.listener.config.name,
                route: &self.route,
                cluster: &self.cluster,
                method: &self.method,
                authority: &self.authority,
                path: &self.path,
                protocol: self.protocol,
                status: self.status,
                response_flags: flags,
                bytes_received: self
                    .bytes_received
                    .as_ref()
                    .map_or(0, |n| n.load(Ordering::Relaxed)),
                bytes_sent,
                duration_ms: elapsed.as_secs_f64() * 1e3,
                duration: elapsed.as_millis() as u64,
                upstream_host: &self.upstream_host,
                upstream: &self.upstream_host,
                upstream_service_time_ms: self.upstream_service_time.map(|d| d.as_secs_f64() * 1e3),
                request_id: self.request_id.to_str().unwrap_or(""),
                traceparent: self.traceparent.to_str().unwrap_or(""),
                principal: self.principal.as_deref(),
                downstream_remote_address: self.peer,
            });
        }
    }
}

impl Drop for Finish {
    /// The request ended before the proxy had a response to send: hyper dropped its future
    /// because the client went away while weir waited for the upstream or a filter. Logged and
    /// counted as Envoy does: status 0, flag `DC`.
    fn drop(&mut self) {
        if !self.recorded {
            self.status = 0;
            self.flags = "DC";
            self.record(0, BodyEnd::Dropped);
        }
    }
}

/// Wraps the response body so that its end writes the access log and metrics.
fn observe<B>(resp: Response<B>, mut fin: Box<Finish>) -> Response<ResponseBody>
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin + 'static,
{
    fin.status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let body: ResponseBody = Box::pin(ObservedBody::new(body, move |n, end| fin.done(n, end)));
    Response::from_parts(parts, body)
}

/// The proxy's own answer for `e`, with its response flag.
fn fail(e: ProxyError, mut fin: Box<Finish>) -> Response<ResponseBody> {
    fin.flags = e.flag();
    observe(error_response(&e, fin.grpc), fin)
}

/// The proxy's answer for `e`: plain text, or the gRPC form to a gRPC request.
fn error_response(e: &ProxyError, grpc: bool) -> Response<ProxyBody> {
    if !grpc {
        return e.to_response();
    }
    let r =
        super::grpc::trailers_only(e.status(), Default::default(), e.details().as_bytes(), None);
    let (p, b) = r.into_parts();
    Response::from_parts(p, full(b))
}

/// A filter's local response as a proxy response (the gRPC form to a gRPC request).
fn filter_response(l: &weir_wasm::LocalResponse, grpc: bool) -> Response<ProxyBody> {
    let mut r = crate::wasm::body::local_to_http(l);
    if grpc {
        let (p, b) = r.into_parts();
        r = super::grpc::trailers_only(p.status, p.headers, &b, l.grpc_status);
    }
    let (p, b) = r.into_parts();
    Response::from_parts(p, full(b))
}

/// A filter's local reply as the proxy's answer, flagged for the access log.
fn filter_answer(l: &weir_wasm::LocalResponse, mut fin: Box<Finish>) -> Response<ResponseBody> {
    fin.flags = filter_flag(l);
    let resp = filter_response(l, fin.grpc);
    observe(resp, fin)
}

/// Envoy's flag for a filter's local reply: `FI` for an injected fault (the details Envoy's
/// fault filter gives its aborts, `fault_filter_abort`, or an `x-fault-injected` header, which
/// is how the built-in fault filter marks them: the Rust SDK sends no details), `RL` for a
/// 429, `UAEX` for any other refusal.
fn filter_flag(l: &weir_wasm::LocalResponse) -> &'static str {
    if l.details == "fault_filter_abort" || l.headers.get("x-fault-injected").is_some() {
        return "FI";
    }
    match l.status {
        429 => "RL",
        400.. => "UAEX",
        _ => "-",
    }
}

/// The route's destination for this request (a weighted split picks here), recorded for the
/// access log and the route's per-cluster stats.
fn destination(route: &CompiledRoute, fin: &mut Finish, detailed: bool) -> Arc<ClusterState> {
    let cluster = route.pick_cluster(rand::random()).clone();
    if detailed {
        fin.cluster = cluster.name.to_string();
    }
    if let Some(s) = route.stats.get(&*cluster.name) {
        fin.stats = s.clone();
    }
    cluster
}

/// The per-request facts filters read as properties.
fn stream_info(
    conn: &ConnInfo,
    fin: &Finish,
    route: &Arc<str>,
    cluster: &Arc<str>,
    node: &Arc<str>,
) -> weir_wasm::StreamInfo {
    let tls = conn.tls.as_ref();
    let peer = tls.and_then(|t| t.peer.as_ref());
    weir_wasm::StreamInfo {
        source_address: Some(conn.peer),
        destination_address: Some(conn.local),
        connection_id: conn.id,
        mtls: peer.is_some(),
        requested_server_name: tls.and_then(|t| t.sni.clone()),
        // Envoy's spelling ("TLSv1.3"), not rustls' Debug name ("TLSv1_3").
        tls_version: tls
            .and_then(|t| t.version.as_ref())
            .map(|v| v.replace('_', ".")),
        peer_uri_sans: peer.map(|p| p.uri_sans.clone()).unwrap_or_default(),
        peer_dns_sans: peer.map(|p| p.dns_sans.clone()).unwrap_or_default(),
        peer_subject: peer.and_then(|p| p.subject.clone()),
        request_id: Some(fin.request_id.clone()),
        protocol: Some(fin.protocol.into()),
        start_time: fin.start_time,
        start_instant: fin.start,
        route_name: Some(route.clone()),
        node_id: Some(node.clone()),
        // Known once the route is chosen (a split picked its cluster), as in Envoy.
        cluster_name: Some(cluster.clone()),
        upstream_address: None,
        response_code_details: None,
        response_flags: 0,
    }
}

/// Serves one downstream request. Never fails: every error becomes a response.
pub async fn handle(
    worker: Rc<Worker>,
    conn: Rc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let start = Instant::now();
    let shared = &worker.shared;
    shared.workers[worker.id]
        .requests
        .fetch_add(1, Ordering::Relaxed);
    let snap = shared.snapshot.load_full();
    worker
        .pools
        .retain_for(snap.version, &|id| snap.has_cluster_id(id));
    let Some(listener) = snap.listeners.get(&*conn.listener).cloned() else {
        let (p, b) = ProxyError::NoRoute.to_response().into_parts();
        return Ok(Response::from_parts(p, Box::pin(b)));
    };

    let (mut parts, body) = req.into_parts();
    // Room for what hygiene adds (x-request-id, traceparent, x-forwarded-for/-proto): at most
    // one growth of the map instead of one per insert that fills it.
    parts.headers.reserve(4);
    // The per-request strings of `Finish` only feed the access log and trace spans: without
    // either, the request path does not allocate them.
    let detailed = listener.access_log.is_some() || snap.tracer.is_some();
    let start_time = detailed.then(SystemTime::now);
    let keep = |s: &str| {
        if detailed {
            s.to_string()
        } else {
            String::new()
        }
    };
    let authority = keep(
        parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or(""),
    );
    let request_id = headers::ensure_request_id(&mut parts.headers);
    let trace = snap.tracer.as_ref().map(|tracer| TraceHook {
        tracer: tracer.clone(),
        parent: parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::trace::parse_traceparent)
            .map(|(_, span, _)| span),
        timings: Default::default(),
    });
    let traceparent = headers::propagate_traceparent(&mut parts.headers);
    let principal = conn
        .tls
        .as_ref()
        .and_then(|t| t.peer.as_ref())
        .and_then(|p| p.uri_sans.first().cloned());
    // Boxed: it travels from here into the response body's end callback, one pointer per move.
    let mut fin = Box::new(Finish {
        stats: listener.no_route.clone(),
        listener: listener.clone(),
        start,
        start_time,
        route: String::new(),
        cluster: String::new(),
        method: keep(parts.method.as_str()),
        authority,
        path: keep(
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/"),
        ),
        protocol: version_str(parts.version),
        status: 0,
        flags: "-",
        bytes_received: None,
        upstream_host: String::new(),
        upstream_service_time: None,
        request_id,
        traceparent,
        principal,
        peer: conn.peer,
        trace,
        recorded: false,
        grpc: super::grpc::is_grpc(&parts.headers),
    });

    let route = {
        let view = RequestView::from_parts(&parts);
        listener.routes.find_indexed(&view)
    };
    let Some((route_index, mut route)) = route else {
        return Ok(fail(ProxyError::NoRoute, fin));
    };
    fin.route = keep(&route.name);

    // Request body: limit and count.
    let limits = &listener.config.limits;
    // Set when the request body goes over its limit (only a body with a limit has one).
    let mut exceeded: Option<Arc<AtomicBool>> = None;
    if let Some(max) = limits.max_request_body {
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max.get()) {
            let e = ProxyError::BodyTooLarge;
            return Ok(fail(e, fin));
        }
    }
    let body_empty = body.is_end_stream();
    let body: ProxyBody = if body_empty {
        empty() // zero-sized: no allocation, nothing to count
    } else {
        let counter = Arc::new(AtomicU64::new(0));
        fin.bytes_received = Some(counter.clone());
        let count_end = move |n, _| counter.store(n, Ordering::Relaxed);
        match limits.max_request_body {
            Some(max) => ObservedBody::new(
                LimitedBody::new(body, max.get(), exceeded.insert(Arc::default()).clone()),
                count_end,
            )
            .boxed_unsync(),
            None => ObservedBody::new(body, count_end).boxed_unsync(),
        }
    };

    // Hygiene.
    if !parts.headers.contains_key(http::header::HOST) {
        if let Some(a) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                parts.headers.insert(http::header::HOST, v);
            }
        }
    }
    if let Some(h) = &route.host_rewrite {
        parts.headers.insert(http::header::HOST, h.clone());
    }
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::set_forwarded(&mut parts.headers, &conn.client_ip, conn.tls.is_some());

    let mut cluster = destination(route, &mut fin, detailed);

    // Filters: request headers.
    let mut stream: Option<crate::wasm::body::SharedStream> = None;
    let stopped = Rc::new(std::cell::RefCell::new(None));
    let mut body = body;
    if !route.filters.is_empty() {
        let chain = worker
            .filters_for(snap.version)
            .and_then(|f| f.chain(&listener.config.name, route_index).cloned());
        let Some(chain) = chain else {
            let e = ProxyError::FilterFailed {
                filter: route.filters.join(","),
                reason: "filters not prepared".into(),
            };
            return Ok(fail(e, fin));
        };
        let mut cs = chain.new_stream(stream_info(
            &conn,
            &fin,
            &route.name,
            &cluster.name,
            &shared.node,
        ));
        if let Some(t) = &fin.trace {
            cs.record_timings(t.timings.clone());
        }
        let scheme = if conn.tls.is_some() { "https" } else { "http" };
        let list =
            weir_wasm::HeaderList::from_request(&parts.method, &parts.uri, scheme, &parts.headers);
        match cs.on_request_headers(list, body_empty).await {
            weir_wasm::Flow::Continue => match cs.request_headers().apply_to_request(
                &mut parts.method,
                &mut parts.uri,
                &mut parts.headers,
            ) {
                Ok(()) => {}
                Err(e) => {
                    let e = ProxyError::FilterFailed {
                        filter: route.filters.join(","),
                        reason: e.to_string(),
                    };
                    return Ok(fail(e, fin));
                }
            },
            weir_wasm::Flow::LocalResponse(l) => {
                let stream = Rc::new(crate::wasm::stream_lock::StreamLock::new(cs));
                return Ok(filter_reply(Some(stream), &l, fin).await);
            }
            weir_wasm::Flow::Reset => {
                let e = ProxyError::FilterFailed {
                    filter: route.filters.join(","),
                    reason: "stream reset".into(),
                };
                return Ok(fail(e, fin));
            }
        }
        if cs.route_cache_cleared() {
            // A filter changed the request headers (or cleared the route cache): the route is
            // picked again on the new headers, as Envoy does. The chain already running stays.
            match listener
                .routes
                .find_indexed(&RequestView::from_parts(&parts))
            {
                None => {
                    fin.route = String::new();
                    fin.stats = listener.no_route.clone();
                    fin.flags = ProxyError::NoRoute.flag();
                    let stream = Rc::new(crate::wasm::stream_lock::StreamLock::new(cs));
                    return Ok(
                        error_reply_through_filters(stream, &ProxyError::NoRoute, fin).await,
                    );
                }
                Some((i, r)) if i != route_index => {
                    route = r;
                    fin.route = keep(&route.name);
                    cluster = destination(route, &mut fin, detailed);
                    if let Some(h) = &route.host_rewrite {
                        parts.headers.insert(http::header::HOST, h.clone());
                    }
                    let mut info = cs.info_mut();
                    info.route_name = Some(route.name.clone());
                    info.cluster_name = Some(cluster.name.clone());
                }
                Some(_) => {}
            }
        }
        // No filter takes the request body: it goes upstream as is (its size and trailers
        // recorded for the filters' later callbacks) instead of through the pump.
        let bypass = (!body_empty && !cs.filters_request_body()).then(|| cs.request_recorder());
        let shared_stream = Rc::new(crate::wasm::stream_lock::StreamLock::new(cs));
        if let Some(recorder) = bypass {
            body = crate::wasm::body::RecordedRequestBody::new(body, recorder).boxed_unsync();
        } else if !body_empty {
            body =
                crate::wasm::body::pump_request_body(body, shared_stream.clone(), stopped.clone())
                    .boxed_unsync();
        }
        stream = Some(shared_stream);
    }

    // Upstream, part 1: the destination cluster (weighted split), so that every answer from
    // here on — filter replies included — is counted under its route and cluster.
    // A body that may go out more than once (retries, a mirror) is read ahead and kept whole
    // when it ends within REPLAY_LIMIT, as Envoy buffers it for them; a longer one is sent once.
    let mirror = route
        .mirror
        .as_ref()
        .filter(|(_, percent)| rand::random::<f64>() * 100.0 < *percent);
    let mut replay = None;
    if !body_empty && (mirror.is_some() || route.retry.as_ref().is_some_and(|r| r.retries > 0)) {
        let deadline = route.timeout.map(|t| start + t);
        match super::replay::read_ahead(body, super::replay::REPLAY_LIMIT, deadline).await {
            Ok(kept) => {
                body = kept.body();
                replay = Some(kept);
            }
            Err(once) => body = once,
        }
    }
    if let Some((mirror, _)) = mirror {
        if body_empty || replay.is_some() {
            let copy = replay.as_ref().map(Replay::body);
            spawn_mirror(&worker, mirror.clone(), &parts, copy);
        }
    }
    let sent_at = detailed.then(Instant::now);
    let result = forward(
        &worker, &conn, route, &cluster, parts, body, body_empty, replay, start,
    )
    .await;
    match result {
        Ok((resp, ep)) if stopped.borrow().is_some() => {
            // A request filter stopped the body after the upstream already answered: the
            // filter's answer wins (the upstream response is dropped).
            drop(resp);
            fin.upstream_host = keep(&cluster.endpoints[ep.0].address);
            let why = stopped.borrow_mut().take();
            let e = match why {
                Some(crate::wasm::body::BodyStop::Local(l)) => {
                    return Ok(filter_reply(stream, &l, fin).await);
                }
                Some(crate::wasm::body::BodyStop::TooLarge(_)) => ProxyError::BodyTooLarge,
                _ => ProxyError::FilterFailed {
                    filter: route.filters.join(","),
                    reason: "stream reset".into(),
                },
            };
            Ok(fail(e, fin))
        }
        Ok((resp, ep)) => {
            fin.upstream_service_time = sent_at.map(|t| t.elapsed());
            fin.upstream_host = keep(&cluster.endpoints[ep.0].address);
            if ep.1 {
                fin.flags = "URX";
            }
            let (mut rparts, rbody) = resp.into_parts();
            headers::strip_hop_by_hop(&mut rparts.headers);
            let Some(stream) = stream else {
                return Ok(observe(Response::from_parts(rparts, rbody), fin));
            };
            let upstream = cluster.endpoints[ep.0].socket;
            let details = Some("via_upstream");
            Ok(through_response_filters(stream, rparts, rbody, fin, upstream, details).await)
        }
        Err((mut e, ep, retried)) => {
            if exceeded.is_some_and(|x| x.load(Ordering::Relaxed)) {
                e = ProxyError::BodyTooLarge;
            }
            let stop = stopped.borrow_mut().take();
            match stop {
                Some(crate::wasm::body::BodyStop::Local(l)) => {
                    return Ok(filter_reply(stream, &l, fin).await);
                }
                Some(crate::wasm::body::BodyStop::TooLarge(_)) => e = ProxyError::BodyTooLarge,
                Some(crate::wasm::body::BodyStop::Reset) => {
                    e = ProxyError::FilterFailed {
                        filter: route.filters.join(","),
                        reason: "stream reset".into(),
                    }
                }
                None => {}
            }
            if let Some(ep) = ep {
                fin.upstream_host = keep(&cluster.endpoints[ep].address);
            }
            tracing::debug!(error = %e, route = %route.name, cluster = %cluster.name, "local response");
            fin.flags = match (e.flag(), retried) {
                ("UF", true) => "UF,URX",
                ("UC", true) => "UC,URX",
                ("UT", true) => "UT,URX",
                (f, _) => f,
            };
            match stream {
                // The upstream failed (not a filter): the reply goes through the response
                // phases like an upstream response.
                Some(stream) if e.is_upstream_failure() => {
                    Ok(error_reply_through_filters(stream, &e, fin).await)
                }
                _ => {
                    let resp = error_response(&e, fin.grpc);
                    Ok(observe(resp, fin))
                }
            }
        }
    }
}

/// The response phases of the filter chain, on a response on its way downstream: the
/// upstream's, or the proxy's own error reply when the upstream failed (Envoy passes local
/// replies through its encoder filters too, so a filter that adds a header adds it to a 503).
/// `details` is what filters read as `response.code_details` (`None`: already set, by the
/// filter that answered).
async fn through_response_filters<B>(
    stream: crate::wasm::body::SharedStream,
    mut rparts: http::response::Parts,
    rbody: B,
    fin: Box<Finish>,
    upstream: Option<std::net::SocketAddr>,
    details: Option<&'static str>,
) -> Response<ResponseBody>
where
    B: http_body::Body<Data = Bytes, Error = crate::http::BoxError> + Unpin + 'static,
{
    // Filters: response headers, then the body through the chain.
    let (flow, bypass) = {
        let mut cs = stream.lock().await;
        {
            let mut info = cs.info_mut();
            info.upstream_address = upstream;
            if let Some(details) = details {
                info.response_code_details = Some(details.into());
            }
        }
        let list = weir_wasm::HeaderList::from_response(rparts.status, &rparts.headers);
        let flow = cs.on_response_headers(list, rbody.is_end_stream()).await;
        // No filter takes the body: it bypasses the chain (its size and trailers recorded).
        let bypass = (!cs.filters_response_body()).then(|| cs.response_recorder());
        if flow == weir_wasm::Flow::Continue {
            match cs
                .response_headers()
                .apply_to_response(&mut rparts.status, &mut rparts.headers)
            {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "filter left invalid response headers")
                }
            }
        }
        (flow, bypass)
    };
    match (flow, bypass) {
        (weir_wasm::Flow::Continue, Some(recorder)) => {
            // The body streams as is; the stream still ends (and its filters log) when the
            // body is done or dropped.
            let b = crate::wasm::body::Passthrough::new(rbody, stream, recorder);
            observe(Response::from_parts(rparts, Box::pin(b)), fin)
        }
        (weir_wasm::Flow::Continue, None) => {
            // The first body frame goes through the filters before the head is sent,
            // so a filter that buffers the body (or answers from the body phase) can
            // still replace the whole response: its local answer, or 500 when the
            // buffer limit is exceeded. Later frames stream.
            use crate::wasm::body::{BodyStop, FilteredBody, Prepend};
            let mut filtered = FilteredBody::new(rbody, stream);
            let stop = filtered.stop_slot();
            let first = std::future::poll_fn(|cx| {
                http_body::Body::poll_frame(std::pin::Pin::new(&mut filtered), cx)
            })
            .await;
            let first = match first {
                Some(Ok(f)) => Some(f),
                None => None,
                Some(Err(err)) => {
                    let why = stop.borrow_mut().take();
                    let e = match why {
                        Some(BodyStop::Local(l)) => {
                            return filter_answer(&l, fin);
                        }
                        Some(BodyStop::TooLarge(_)) => ProxyError::ResponseBodyTooLarge,
                        Some(BodyStop::Reset) | None => ProxyError::UpstreamReset(err.to_string()),
                    };
                    return fail(e, fin);
                }
            };
            let b: ResponseBody = Box::pin(Prepend::new(first, filtered));
            observe(Response::from_parts(rparts, b), fin)
        }
        (weir_wasm::Flow::LocalResponse(l), _) => filter_answer(&l, fin),
        (weir_wasm::Flow::Reset, _) => {
            let e = ProxyError::UpstreamReset("reset by a response filter".into());
            fail(e, fin)
        }
    }
}

/// A filter's local reply from a request phase, on its way out through the response phases
/// of the filters the request reached, the replier included (as Envoy's local replies pass its
/// encoder filters): they may add headers to it, and their `proxy_on_log` sees its status.
/// Without a stream (no chain ran) it is the answer as it is.
async fn filter_reply(
    stream: Option<crate::wasm::body::SharedStream>,
    l: &weir_wasm::LocalResponse,
    mut fin: Box<Finish>,
) -> Response<ResponseBody> {
    let Some(stream) = stream else {
        return filter_answer(l, fin);
    };
    fin.flags = filter_flag(l);
    let (rparts, rbody) = filter_response(l, fin.grpc).into_parts();
    through_response_filters(stream, rparts, rbody, fin, None, None).await
}

/// The proxy's own reply for `e` (flags already set) through the response phases, as Envoy
/// passes its local replies through the encoder filters; `response.code_details` names `e`.
async fn error_reply_through_filters(
    stream: crate::wasm::body::SharedStream,
    e: &ProxyError,
    fin: Box<Finish>,
) -> Response<ResponseBody> {
    let (rparts, rbody) = error_response(e, fin.grpc).into_parts();
    through_response_filters(stream, rparts, rbody, fin, None, Some(e.details())).await
}

/// Sends the request upstream with the route's timeout and retry policy. On success returns the
/// response and `(endpoint index, whether retries were exhausted on a retriable status)`.
#[allow(clippy::too_many_arguments)]
async fn forward(
    worker: &Worker,
    conn: &ConnInfo,
    route: &CompiledRoute,
    cluster: &Arc<ClusterState>,
    parts: http::request::Parts,
    body: ProxyBody,
    body_empty: bool,
    replay: Option<Replay>,
    start: Instant,
) -> Result<(Response<UpstreamBody>, (usize, bool)), (ProxyError, Option<usize>, bool)> {
    let pool = worker.pools.pool(cluster);
    let deadline = route.timeout.map(|t| start + t);
    let retry = route.retry.clone().unwrap_or_default();
    // A body is retried only when it was kept whole (`replay`).
    let retries = if body_empty || replay.is_some() {
        retry.retries
    } else {
        0
    };
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let version = cluster.http_version();
    let max_requests = cluster.config.limits.max_requests;
    let mut body = Some(body);
    let mut headers = Some(parts.headers);
    let mut tries = 0u32;
    let mut last_ep = None;
    loop {
        let now = if tries == 0 { start } else { Instant::now() };
        if cluster.none_healthy() {
            return Err((ProxyError::NoHealthyUpstream, last_ep, tries > 0));
        }
        let ctx = PickContext {
            headers: headers.as_ref().expect("headers kept until last try"),
            source_ip: Some(conn.peer.ip()),
        };
        let Some(ep) = cluster.balancer.pick(&ctx, &|i| cluster.available(i, now)) else {
            return Err((ProxyError::NoHealthyUpstream, last_ep, tries > 0));
        };
        last_ep = Some(ep);
        let endpoint = &cluster.endpoints[ep];
        if cluster.active.load(Ordering::Relaxed) >= max_requests {
            return Err((ProxyError::Overflow, last_ep, tries > 0));
        }
        let last_try = tries >= retries;
        let hdrs = if last_try {
            headers.take().unwrap_or_default()
        } else {
            headers.clone().unwrap_or_default()
        };
        let uri = cluster
            .endpoint_uri(ep, path.clone())
            .map_err(|e| (ProxyError::BadRequest(e.to_string()), last_ep, tries > 0))?;
        let mut req = Request::new(
            body.take()
                .unwrap_or_else(|| replay.as_ref().map_or_else(empty, Replay::body)),
        );
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = version;
        *req.headers_mut() = hdrs;

        // This try ends at the route's deadline or after `per_try_timeout`, whichever is first
        // (a deadline, not a duration: no clock read when only the route has a timeout).
        let try_deadline = match retry.per_try_timeout {
            None => deadline,
            Some(b) => {
                let t = Instant::now() + b;
                Some(deadline.map_or(t, |d| d.min(t)))
            }
        };
        cluster.active.fetch_add(1, Ordering::Relaxed);
        cluster.balancer.on_request_start(ep);
        let queued = std::cell::Cell::new(false);
        let fut = pool.send(cluster, ep, req, &queued);
        let outcome = match try_deadline {
            Some(at) => tokio::time::timeout_at(at.into(), fut).await.ok(),
            None => Some(fut.await),
        };
        cluster.active.fetch_sub(1, Ordering::Relaxed);
        cluster.balancer.on_request_end(ep);

        let route_expired = || deadline.is_some_and(|d| Instant::now() >= d);
        let (err, retriable) = match outcome {
            Some(Ok(resp)) => {
                let status = resp.status().as_u16();
                endpoint.stats.inc(status);
                cluster.record_result(ep, Some(status));
                if retry.retry_status(status) {
                    if !last_try && !route_expired() {
                        tries += 1;
                        worker
                            .shared
                            .metrics
                            .retries
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    return Ok((resp, (ep, tries > 0)));
                }
                return Ok((resp, (ep, false)));
            }
            Some(Err(crate::cluster::pool::PoolError::Overflow)) => {
                // The cluster's breaker refused it: not the endpoint's failure, not retried.
                return Err((ProxyError::Overflow, last_ep, tries > 0));
            }
            Some(Err(e)) => {
                let pe = classify_client_error(&e);
                cluster.record_result(ep, None);
                let retriable = retry.retry_failure(matches!(pe, ProxyError::ConnectFailure(_)));
                tracing::debug!(error = %pe, endpoint = %endpoint.address, "upstream error");
                (pe, retriable)
            }
            None => {
                // Timed out waiting for the cluster's breaker: the endpoint never saw it.
                if !queued.get() {
                    cluster.record_result(ep, Some(504));
                }
                (ProxyError::UpstreamTimeout, retry.retry_failure(false))
            }
        };
        if retriable && !last_try && !route_expired() {
            tries += 1;
            worker
                .shared
                .metrics
                .retries
                .fetch_add(1, Ordering::Relaxed);
            continue;
        }
        return Err((err, last_ep, tries > 0));
    }
}

/// Fire-and-forget copy of a request (its kept body, if it has one) to the mirror cluster (`Host`
/// gets `-shadow`).
fn spawn_mirror(
    worker: &Rc<Worker>,
    cluster: Arc<ClusterState>,
    parts: &http::request::Parts,
    body: Option<ProxyBody>,
) {
    let pool = worker.pools.pool(&cluster);
    let ctx = PickContext {
        headers: &parts.headers,
        source_ip: None,
    };
    let now = Instant::now();
    let Some(ep) = cluster.balancer.pick(&ctx, &|i| cluster.available(i, now)) else {
        return;
    };
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let Ok(uri) = cluster.endpoint_uri(ep, pq) else {
        return;
    };
    let mut req = Request::new(body.unwrap_or_else(empty));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = parts.headers.clone();
    *req.version_mut() = cluster.http_version();
    if let Some(h) = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        if let Ok(v) = HeaderValue::from_str(&format!("{h}-shadow")) {
            req.headers_mut().insert(http::header::HOST, v);
        }
    }
    tokio::task::spawn_local(async move {
        if let Ok(resp) = pool.send(&cluster, ep, req, &Default::default()).await {
            let _ = resp.into_body().collect().await;
        }
    });
}

/// A complete local response body (re-exported for the admin endpoint and filters).
pub fn bytes_body(b: Bytes) -> ProxyBody {
    full(b)
}
