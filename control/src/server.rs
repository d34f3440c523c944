//! `weir-control serve`: watches a directory, versions every valid change, and serves the
//! control protocol of DESIGN.md §7 over HTTP/1.1 (chunked) and HTTP/2 (h2c).
//!
//! Endpoints: `GET /v1/watch?node=NAME` (JSON lines, one per version, plus empty heartbeat
//! lines), `GET|PUT /v1/modules/<sha256>`, `POST /v1/ack`, `POST /v1/push` (YAML whose modules
//! are `sha256:<hex>` references already uploaded), `GET /v1/status`.
//!
//! Every new state, from the directory or a push, is checked as `weir validate` checks a file
//! (every filter compiled, instantiated and configured; see [`desired::check`]) before it is
//! published: what fails is not published, the last good version stays served and the errors
//! are logged and shown by `GET /v1/status` (`desired_error`) or answered to the push. A
//! directory that is invalid when the server starts is an error ([`ServeError::Invalid`]).
//!
//! A push is written into the directory (the config as the directory's YAML file with modules
//! as `modules/<hex>.wasm`), so the directory always holds the desired state and a restarted
//! server publishes the same thing. The version counter survives restarts in
//! `DIR/.weir-control/state.json`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use weir::control::wire::{
    self, Ack, ErrorResponse, Nack, NodeStatus, PushResponse, Status, WatchMessage,
};

use crate::desired::{self, Desired, PathRefs};

/// Largest module accepted by `PUT /v1/modules/<hex>`.
const MAX_UPLOAD_BYTES: usize = 256 * 1024 * 1024;
const MAX_PUSH_BYTES: usize = 16 * 1024 * 1024;
const MAX_ACK_BYTES: usize = 1024 * 1024;
const MAX_NODE_NAME: usize = 253;
/// Nonces remembered per node (acks for older messages are refused).
const NONCES_PER_NODE: usize = 32;
/// Published versions whose modules stay in memory.
const VERSIONS_IN_MEMORY: usize = 8;
const STATE_DIR: &str = ".weir-control";
const MODULES_DIR: &str = "modules";

// === options and handle ===

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The watched directory.
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// How often the directory is scanned (changes publish after two equal scans).
    pub poll_interval: Duration,
    /// Empty lines written on idle watch streams so clients can detect dead connections.
    pub heartbeat: Duration,
}

impl ServeOptions {
    pub fn new(dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        ServeOptions {
            dir: dir.into(),
            listen,
            poll_interval: Duration::from_millis(500),
            heartbeat: weir::control::HEARTBEAT_INTERVAL,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not a directory")]
    NotADir(String),
    /// The directory's desired state fails validation at start-up (every error, one a line).
    #[error("{dir}: invalid desired state, not serving it:\n{errors}")]
    Invalid {
        dir: String,
        errors: desired::Invalid,
    },
}

/// A running server. Dropping it does not stop it; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The version currently published, if any.
    pub fn version(&self) -> Option<u64> {
        self.shared.published.borrow().as_ref().map(|p| p.version)
    }

    /// Stops accepting, closes every connection (watch streams end) and waits for the accept
    /// loop and the directory poller to finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

// === shared state ===

#[derive(Debug)]
struct Published {
    version: u64,
    config: String,
    modules: BTreeMap<String, String>,
    fingerprint: String,
}

#[derive(Debug, Default)]
struct Node {
    connections: usize,
    sent_version: Option<u64>,
    nonces: VecDeque<(u64, String)>,
    acked_version: Option<u64>,
    last_nack: Option<Nack>,
    last_seen_ms: u64,
}

#[derive(Debug, Default)]
struct Inner {
    nodes: BTreeMap<String, Node>,
    /// Modules of recent versions, by hex.
    blobs: HashMap<String, Bytes>,
    /// Module sets of the last published versions (oldest first), for `blobs`' collection.
    recent: VecDeque<Vec<String>>,
    version: u64,
    /// Signature of the directory as last processed, and of a change seen once (debounce).
    seen_sig: Option<String>,
    pending_sig: Option<String>,
    /// Why the directory's current content is not published (cleared by the next publish).
    dir_error: Option<String>,
}

struct Shared {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// Serialises publishing (poller and pushes).
    publish_lock: tokio::sync::Mutex<()>,
    published: watch::Sender<Option<Arc<Published>>>,
    heartbeat: Duration,
    shutdown: watch::Receiver<bool>,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct PersistedState {
    version: u64,
    fingerprint: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` inconsistent in a way that matters
        // more than stopping the control plane would.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state_file(&self) -> PathBuf {
        self.dir.join(STATE_DIR).join("state.json")
    }

    fn module_store(&self) -> PathBuf {
        self.dir.join(MODULES_DIR)
    }

    /// A module by digest: from memory, else from `DIR/modules/<hex>.wasm` (verified).
    fn module(&self, hex: &str) -> Option<Bytes> {
        if !desired::valid_digest(hex) {
            return None;
        }
        if let Some(b) = self.lock().blobs.get(hex) {
            return Some(b.clone());
        }
        let bytes = std::fs::read(self.module_store().join(format!("{hex}.wasm"))).ok()?;
        (wire::sha256_hex(&bytes) == hex).then(|| Bytes::from(bytes))
    }

    /// Publishes `d` as a new version unless it is what is already published. Returns the
    /// version now published. Call with `publish_lock` held.
    fn publish(&self, d: Desired) -> u64 {
        if let Some(p) = self.published.borrow().as_ref() {
            if p.fingerprint == d.fingerprint {
                self.lock().dir_error = None;
                return p.version;
            }
        }
        let version = {
            let mut inner = self.lock();
            inner.dir_error = None;
            inner.version += 1;
            inner.recent.push_back(d.blobs.keys().cloned().collect());
            while inner.recent.len() > VERSIONS_IN_MEMORY {
                inner.recent.pop_front();
            }
            inner.blobs.extend(d.blobs);
            let keep: std::collections::HashSet<String> =
                inner.recent.iter().flatten().cloned().collect();
            inner.blobs.retain(|hex, _| keep.contains(hex));
            inner.version
        };
        let persisted = PersistedState {
            version,
            fingerprint: d.fingerprint.clone(),
        };
        if let Err(e) = write_state(&self.state_file(), &persisted) {
            tracing::warn!(error = %e, "cannot persist the version counter");
        }
        tracing::info!(version, fingerprint = %d.fingerprint, modules = d.modules.len(), "published new version");
        self.published.send_replace(Some(Arc::new(Published {
            version,
            config: d.config,
            modules: d.modules,
            fingerprint: d.fingerprint,
        })));
        version
    }
}

fn write_state(path: &Path, state: &PersistedState) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let json = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    write_atomic(path, &json)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", rand::rng().random::<u32>()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

// === directory watching ===

/// A cheap signature of the directory's desired state: the config text and the size and mtime
/// of every module file it references by path.
fn dir_signature(dir: &Path) -> Result<(PathBuf, String, String), String> {
    let file = desired::config_file(dir)?;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut sig = format!(
        "{}\0{}\0",
        file.display(),
        wire::sha256_hex(text.as_bytes())
    );
    for module in desired::module_paths(&text) {
        let path = dir.join(&module);
        match std::fs::metadata(&path) {
            Ok(m) => {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                sig.push_str(&format!(
                    "{module}\0{}\0{mtime}\0{}\0",
                    m.len(),
                    file_identity(&m)
                ));
            }
            Err(e) => sig.push_str(&format!("{module}\0{e}\0")),
        }
    }
    Ok((file, text, sig))
}

/// Inode and change time where the platform has them: a file replaced by rename with the same
/// size within the mtime granularity still changes signature.
#[cfg(unix)]
fn file_identity(m: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("{}:{}:{}.{}", m.dev(), m.ino(), m.ctime(), m.ctime_nsec())
}

#[cfg(not(unix))]
fn file_identity(_: &std::fs::Metadata) -> String {
    String::new()
}

/// Resolves the directory's config; with `check`, also compiles and configures every filter
/// ([`desired::resolve_checked`]). Blocking.
fn load_dir(
    shared: &Shared,
    file: &Path,
    text: &str,
    check: bool,
) -> Result<Desired, desired::Invalid> {
    let label = file.display().to_string();
    let known = |hex: &str| shared.module(hex);
    if check {
        desired::resolve_checked(&label, text, &shared.dir, PathRefs::Allowed, &known)
    } else {
        desired::resolve(&label, text, &shared.dir, PathRefs::Allowed, &known)
    }
}

/// One scan. `debounce`: publish a change only once two scans in a row saw it.
async fn scan(shared: &Arc<Shared>, debounce: bool) {
    let _guard = shared.publish_lock.lock().await;
    let s = shared.clone();
    let result = tokio::task::spawn_blocking(move || -> Option<Result<Desired, String>> {
        let (file, text, sig) = match dir_signature(&s.dir) {
            Ok(x) => x,
            Err(e) => {
                let mut inner = s.lock();
                if inner.seen_sig.as_deref() != Some(e.as_str()) {
                    inner.seen_sig = Some(e.clone());
                    return Some(Err(e));
                }
                return None;
            }
        };
        {
            let mut inner = s.lock();
            if inner.seen_sig.as_deref() == Some(sig.as_str()) {
                return None;
            }
            if debounce && inner.pending_sig.as_deref() != Some(sig.as_str()) {
                inner.pending_sig = Some(sig);
                return None;
            }
            inner.seen_sig = Some(sig);
            inner.pending_sig = None;
        }
        Some(load_dir(&s, &file, &text, true).map_err(|e| e.to_string()))
    })
    .await;
    match result {
        Ok(Some(Ok(d))) => {
            shared.publish(d);
        }
        Ok(Some(Err(e))) => {
            let version = shared.published.borrow().as_ref().map(|p| p.version);
            tracing::error!(dir = %shared.dir.display(), ?version, "invalid desired state, not published (still serving the last good version):\n{e}");
            shared.lock().dir_error = Some(e);
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "directory scan failed"),
    }
}

// === serve ===

/// The directory when the server starts.
enum Initial {
    /// No config file (or no single one) yet: why.
    Empty(String),
    /// A valid desired state.
    Ready(Desired),
}

fn invalid(dir: &Path, errors: desired::Invalid) -> ServeError {
    ServeError::Invalid {
        dir: dir.display().to_string(),
        errors,
    }
}

/// Binds `opts.listen`, loads the directory, and serves until [`ServerHandle::shutdown`].
pub async fn start(opts: ServeOptions) -> Result<ServerHandle, ServeError> {
    if !opts.dir.is_dir() {
        return Err(ServeError::NotADir(opts.dir.display().to_string()));
    }
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: opts.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: opts.listen,
        source,
    })?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let persisted: PersistedState = std::fs::read(opts.dir.join(STATE_DIR).join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let shared = Arc::new(Shared {
        dir: opts.dir.clone(),
        inner: Mutex::new(Inner {
            version: persisted.version,
            ..Inner::default()
        }),
        publish_lock: tokio::sync::Mutex::new(()),
        published: watch::channel(None).0,
        heartbeat: opts.heartbeat,
        shutdown: shutdown_rx.clone(),
    });
    // The initial state: the same content as before a restart keeps its version. A directory
    // without a config starts empty (a push fills it); one whose config is invalid is an error.
    {
        let _guard = shared.publish_lock.lock().await;
        let s = shared.clone();
        let initial = tokio::task::spawn_blocking(move || -> Result<Initial, ServeError> {
            if let Err(e) = desired::config_file(&s.dir) {
                return Ok(Initial::Empty(e));
            }
            let (file, text, sig) =
                dir_signature(&s.dir).map_err(|e| invalid(&s.dir, desired::Invalid(vec![e])))?;
            s.lock().seen_sig = Some(sig);
            load_dir(&s, &file, &text, true)
                .map(Initial::Ready)
                .map_err(|errors| invalid(&s.dir, errors))
        })
        .await
        .unwrap_or_else(|e| Err(invalid(&opts.dir, desired::Invalid(vec![e.to_string()]))))?;
        match initial {
            Initial::Ready(d)
                if d.fingerprint == persisted.fingerprint && persisted.version > 0 =>
            {
                let mut inner = shared.lock();
                inner.recent.push_back(d.blobs.keys().cloned().collect());
                inner.blobs.extend(d.blobs);
                drop(inner);
                tracing::info!(version = persisted.version, "restored version");
                shared.published.send_replace(Some(Arc::new(Published {
                    version: persisted.version,
                    config: d.config,
                    modules: d.modules,
                    fingerprint: d.fingerprint,
                })));
            }
            Initial::Ready(d) => {
                shared.publish(d);
            }
            Initial::Empty(e) => {
                tracing::warn!("{e}");
                let mut inner = shared.lock();
                inner.seen_sig = Some(e.clone());
                inner.dir_error = Some(e);
            }
        }
    }

    let poller = {
        let shared = shared.clone();
        let mut shutdown = shutdown_rx.clone();
        let interval = opts.poll_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => scan(&shared, true).await,
                    _ = stopped(&mut shutdown) => break,
                }
            }
        })
    };

    let task = {
        let shared = shared.clone();
        let mut shutdown = shutdown_rx;
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            // Out of file descriptors and the like: do not spin.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = stopped(&mut shutdown) => break,
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let mut conn_shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(route(&shared, req).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        r = conn => if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        },
                        _ = stopped(&mut conn_shutdown) => {}
                    }
                });
            }
            let _ = poller.await;
        })
    };
    Ok(ServerHandle {
        local_addr,
        shutdown: shutdown_tx,
        task,
        shared,
    })
}

// === routing ===

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => full(status, "application/json", body),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), Vec::new()),
    }
}

fn error(status: StatusCode, error: String, errors: Vec<String>) -> Response<Body> {
    let body = ErrorResponse { error, errors };
    full(
        status,
        "application/json",
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

async fn read_limited(body: Incoming, limit: usize) -> Result<Bytes, Response<Body>> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body: {e}"),
                Vec::new(),
            )
        })
}

async fn route(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/v1/watch") => watch_stream(shared, req.uri().query().unwrap_or("")),
        (Method::GET, "/v1/status") => json(StatusCode::OK, &status(shared)),
        (Method::POST, "/v1/ack") => match read_limited(req.into_body(), MAX_ACK_BYTES).await {
            Ok(body) => ack(shared, &body),
            Err(resp) => resp,
        },
        (Method::POST, "/v1/push") => match read_limited(req.into_body(), MAX_PUSH_BYTES).await {
            Ok(body) => push(shared, &body).await,
            Err(resp) => resp,
        },
        (method, p) if p.starts_with("/v1/modules/") => {
            let hex = &p["/v1/modules/".len()..];
            if !desired::valid_digest(hex) {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid module digest {hex:?}"),
                    Vec::new(),
                );
            }
            match method {
                Method::GET => get_module(shared, hex),
                Method::PUT => match read_limited(req.into_body(), MAX_UPLOAD_BYTES).await {
                    Ok(body) => put_module(shared, hex, body),
                    Err(resp) => resp,
                },
                _ => error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use GET or PUT".into(),
                    Vec::new(),
                ),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: {} {path}", req.method()),
            Vec::new(),
        ),
    }
}

// === impl watch ===

/// A response body fed by a channel: one frame per message.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

/// Decrements a node's connection count when its watch stream ends.
struct ConnectionGuard {
    shared: Arc<Shared>,
    node: String,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        if let Some(n) = inner.nodes.get_mut(&self.node) {
            n.connections = n.connections.saturating_sub(1);
            n.last_seen_ms = now_ms();
        }
    }
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (wire::decode_query(k)? == key)
            .then(|| wire::decode_query(v))
            .flatten()
    })
}

fn valid_node(node: &str) -> bool {
    !node.is_empty() && node.len() <= MAX_NODE_NAME && !node.chars().any(char::is_control)
}

fn watch_stream(shared: &Arc<Shared>, query: &str) -> Response<Body> {
    let Some(node) = query_param(query, "node").filter(|n| valid_node(n)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing or invalid ?node=NAME".into(),
            Vec::new(),
        );
    };
    {
        let mut inner = shared.lock();
        let n = inner.nodes.entry(node.clone()).or_default();
        n.connections += 1;
        n.last_seen_ms = now_ms();
    }
    let guard = ConnectionGuard {
        shared: shared.clone(),
        node: node.clone(),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let mut versions = shared.published.subscribe();
    let mut shutdown = shared.shutdown.clone();
    let heartbeat = shared.heartbeat;
    let shared = shared.clone();
    tokio::spawn(async move {
        let _guard = guard;
        loop {
            let current = versions.borrow_and_update().clone();
            if let Some(p) = current {
                let nonce = format!("{:032x}", rand::rng().random::<u128>());
                let msg = WatchMessage {
                    version: p.version,
                    nonce: nonce.clone(),
                    config: p.config.clone(),
                    modules: p.modules.clone(),
                };
                let Ok(mut line) = serde_json::to_vec(&msg) else {
                    break;
                };
                line.push(b'\n');
                {
                    let mut inner = shared.lock();
                    if let Some(n) = inner.nodes.get_mut(&node) {
                        n.sent_version = Some(p.version);
                        n.nonces.push_back((p.version, nonce));
                        while n.nonces.len() > NONCES_PER_NODE {
                            n.nonces.pop_front();
                        }
                    }
                }
                if tx.send(Bytes::from(line)).await.is_err() {
                    break;
                }
            }
            // Wait for the next version, sending heartbeats meanwhile.
            let next = loop {
                tokio::select! {
                    r = versions.changed() => break r.is_ok(),
                    _ = tx.closed() => break false,
                    _ = stopped(&mut shutdown) => break false,
                    _ = tokio::time::sleep(heartbeat) => {
                        if tx.send(Bytes::from_static(b"\n")).await.is_err() {
                            break false;
                        }
                    }
                }
            };
            if !next {
                break;
            }
        }
    });
    let mut resp = Response::new(ChannelBody(rx).boxed());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    resp
}

// === impl ack, status, modules, push ===

fn ack(shared: &Arc<Shared>, body: &[u8]) -> Response<Body> {
    let ack: Ack = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid ack: {e}"),
                Vec::new(),
            )
        }
    };
    if !valid_node(&ack.node) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid node name".into(),
            Vec::new(),
        );
    }
    let mut inner = shared.lock();
    let Some(node) = inner.nodes.get_mut(&ack.node) else {
        return error(
            StatusCode::CONFLICT,
            format!("node {:?} never watched", ack.node),
            Vec::new(),
        );
    };
    if !node
        .nonces
        .iter()
        .any(|(v, n)| *v == ack.version && *n == ack.nonce)
    {
        return error(
            StatusCode::CONFLICT,
            format!("unknown nonce for version {}", ack.version),
            Vec::new(),
        );
    }
    node.last_seen_ms = now_ms();
    match ack.error {
        None => {
            tracing::info!(node = %ack.node, version = ack.version, "ACK");
            node.acked_version = Some(
                node.acked_version
                    .map_or(ack.version, |v| v.max(ack.version)),
            );
        }
        Some(error) => {
            tracing::warn!(node = %ack.node, version = ack.version, %error, "NACK");
            node.last_nack = Some(Nack {
                version: ack.version,
                error,
                at_ms: now_ms(),
            });
        }
    }
    json(StatusCode::OK, &serde_json::json!({"ok": true}))
}

fn status(shared: &Arc<Shared>) -> Status {
    let version = shared.published.borrow().as_ref().map(|p| p.version);
    let inner = shared.lock();
    let nodes = inner
        .nodes
        .iter()
        .map(|(name, n)| NodeStatus {
            node: name.clone(),
            connected: n.connections > 0,
            sent_version: n.sent_version,
            acked_version: n.acked_version,
            last_nack: n.last_nack.clone(),
            last_seen_ms: n.last_seen_ms,
        })
        .collect();
    Status {
        version,
        nodes,
        desired_error: inner.dir_error.clone(),
    }
}

fn get_module(shared: &Arc<Shared>, hex: &str) -> Response<Body> {
    match shared.module(hex) {
        Some(bytes) => full(StatusCode::OK, "application/wasm", bytes),
        None => error(
            StatusCode::NOT_FOUND,
            format!("unknown module sha256:{hex}"),
            Vec::new(),
        ),
    }
}

fn put_module(shared: &Arc<Shared>, hex: &str, body: Bytes) -> Response<Body> {
    let actual = wire::sha256_hex(&body);
    if actual != hex {
        return error(
            StatusCode::BAD_REQUEST,
            format!("digest mismatch: body is sha256:{actual}"),
            Vec::new(),
        );
    }
    let store = shared.module_store();
    let path = store.join(format!("{hex}.wasm"));
    if !path.is_file() {
        if let Err(e) = std::fs::create_dir_all(&store).and_then(|_| write_atomic(&path, &body)) {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{}: {e}", path.display()),
                Vec::new(),
            );
        }
    }
    json(StatusCode::OK, &serde_json::json!({"sha256": hex}))
}

async fn push(shared: &Arc<Shared>, body: &[u8]) -> Response<Body> {
    let Ok(text) = std::str::from_utf8(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "push body is not UTF-8 YAML".into(),
            Vec::new(),
        );
    };
    let _guard = shared.publish_lock.lock().await;
    let s = shared.clone();
    let text = text.to_string();
    let result =
        tokio::task::spawn_blocking(move || -> Result<Desired, (StatusCode, Vec<String>)> {
            // The full check (filters compiled and configured) before anything is written.
            let d = desired::resolve_checked("push", &text, &s.dir, PathRefs::Forbidden, &|hex| {
                s.module(hex)
            })
            .map_err(|e| (StatusCode::BAD_REQUEST, e.0))?;
            let internal = |e: String| (StatusCode::INTERNAL_SERVER_ERROR, vec![e]);
            // Persist: modules into DIR/modules, the config (modules as paths) as the dir's YAML.
            let store = s.module_store();
            std::fs::create_dir_all(&store)
                .map_err(|e| internal(format!("{}: {e}", store.display())))?;
            for (hex, bytes) in &d.blobs {
                let path = store.join(format!("{hex}.wasm"));
                if !path.is_file() {
                    write_atomic(&path, bytes)
                        .map_err(|e| internal(format!("{}: {e}", path.display())))?;
                }
            }
            let on_disk = desired::rewrite_modules("push", &d.config, |m| {
                m.strip_prefix(wire::SHA256_PREFIX)
                    .map(|hex| format!("{MODULES_DIR}/{hex}.wasm"))
            })
            .map_err(|e| internal(e.to_string()))?;
            let file = desired::config_file(&s.dir).unwrap_or_else(|_| s.dir.join("weir.yaml"));
            write_atomic(&file, on_disk.as_bytes())
                .map_err(|e| internal(format!("{}: {e}", file.display())))?;
            // Publish what the poller will see, so it does not publish it again.
            let (file, text, sig) = dir_signature(&s.dir).map_err(internal)?;
            // (The same state as just checked: no second check.)
            let d = load_dir(&s, &file, &text, false).map_err(|e| internal(e.to_string()))?;
            let mut inner = s.lock();
            inner.seen_sig = Some(sig);
            inner.pending_sig = None;
            Ok(d)
        })
        .await;
    match result {
        Ok(Ok(d)) => {
            let version = shared.publish(d);
            json(StatusCode::OK, &PushResponse { version })
        }
        Ok(Err((status, errors))) => {
            tracing::warn!("push refused:\n{}", errors.join("\n"));
            error(status, errors.join("\n"), errors)
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), Vec::new()),
    }
}

/// Resolves once shutdown was requested (or the handle is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
