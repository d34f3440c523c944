//! Client of `weir-control` (DESIGN.md §7): watch the control plane, fetch modules by sha256 and
//! verify them, hand each version to the proxy as a [`Bundle`], and ACK or NACK it.
//!
//! The wire types shared with the `weir-control` server live in [`wire`] (one definition for
//! both sides). The proxy drives a [`ControlClient`] with an `apply` callback that builds,
//! validates and publishes a snapshot (the swap protocol of DESIGN.md §2) and returns `Ok(())`
//! (ACK) or `Err(error)` (NACK, the old snapshot keeps serving):
//!
//! ```no_run
//! # async fn demo() {
//! use weir::control::{Bundle, ControlClient};
//! let client = ControlClient::new("http://127.0.0.1:7000", "node-a")
//!     .with_cache_dir("/var/cache/weir".into());
//! client
//!     .run(|bundle: Bundle| async move {
//!         let config = bundle.load_config(std::path::Path::new("."))?;
//!         // ... build and publish the snapshot ...
//!         Ok(())
//!     })
//!     .await;
//! # }
//! ```
//!
//! The client never panics on what the network sends; whenever the stream ends or fails it
//! reconnects with jittered exponential backoff (100 ms → 5 s). With a cache dir, the last
//! ACKed bundle survives a restart: [`load_cached`] returns it while the control plane is down.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::Rng;

use crate::config::Config;

/// Largest module the client downloads.
const MAX_MODULE_BYTES: usize = 256 * 1024 * 1024;
/// Largest single watch message (one JSON line).
const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
/// The server writes an empty heartbeat line at least this often; silence for longer than
/// [`WATCH_IDLE_TIMEOUT`] means a dead connection.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
const WATCH_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How many recent ACKed bundles keep their modules in the cache dir.
const KEEP_BUNDLES: usize = 3;
const BUNDLE_FILE: &str = "bundle.json";
const MODULES_DIR: &str = "modules";

// === wire ===

/// The control protocol's messages (DESIGN.md §7), shared by the proxy and `weir-control`.
pub mod wire {
    use serde::{Deserialize, Serialize};
    use sha2::{Digest, Sha256};
    use std::collections::BTreeMap;

    /// Prefix of a content-addressed module reference in a config (`module: sha256:<hex>`).
    pub const SHA256_PREFIX: &str = "sha256:";

    /// One line of `GET /v1/watch?node=NAME`: a version of the desired state.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct WatchMessage {
        pub version: u64,
        pub nonce: String,
        /// The config YAML with every filter's `module:` rewritten to `sha256:<hex>`.
        pub config: String,
        /// Filter name → sha256 hex of its module.
        #[serde(default)]
        pub modules: BTreeMap<String, String>,
    }

    /// Body of `POST /v1/ack`: `error: None` is an ACK, `Some(error)` a NACK.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Ack {
        pub node: String,
        pub version: u64,
        pub nonce: String,
        #[serde(default)]
        pub error: Option<String>,
    }

    /// The last NACK of a node.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Nack {
        pub version: u64,
        pub error: String,
        /// Unix time, milliseconds.
        pub at_ms: u64,
    }

    /// One node in `GET /v1/status`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct NodeStatus {
        pub node: String,
        /// At least one watch stream of this node is open.
        pub connected: bool,
        /// Last version sent to the node.
        pub sent_version: Option<u64>,
        pub acked_version: Option<u64>,
        pub last_nack: Option<Nack>,
        /// Unix time, milliseconds, of the node's last watch or ack.
        pub last_seen_ms: u64,
    }

    /// `GET /v1/status`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Status {
        /// The version currently published (none before the first valid config).
        pub version: Option<u64>,
        pub nodes: Vec<NodeStatus>,
        /// Why the watched directory's current content is not published, if it is not.
        #[serde(default)]
        pub desired_error: Option<String>,
    }

    /// Answer of `POST /v1/push`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PushResponse {
        pub version: u64,
    }

    /// Body of every non-2xx answer of the control plane.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct ErrorResponse {
        pub error: String,
        /// Individual errors (one per line of `error`, e.g. `file:line:column: message`).
        #[serde(default)]
        pub errors: Vec<String>,
    }

    /// Lower-case hex sha256 of `bytes`.
    pub fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// A digest as the protocol spells it: 64 lower-case hex characters.
    pub fn is_sha256_hex(s: &str) -> bool {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    /// Percent-encodes a query component (node names).
    pub fn encode_query(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// Decodes a percent-encoded query component (`+` is a space); `None` if malformed.
    pub fn decode_query(s: &str) -> Option<String> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    let hex = s.get(i + 1..i + 3)?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).ok()
    }
}

// === errors ===

/// Why one exchange with the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("invalid control plane url {0:?} (expected http://HOST:PORT)")]
    InvalidUrl(String),
    #[error("request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("reading the response of {url}: {message}")]
    Body { url: String, message: String },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} timed out")]
    Timeout { url: String },
    #[error("watch stream: {0}")]
    Stream(String),
    #[error("module {filter}: digest mismatch: expected sha256:{expected}, got sha256:{actual}")]
    Digest {
        filter: String,
        expected: String,
        actual: String,
    },
    #[error("module {filter}: invalid digest {digest:?}")]
    BadDigest { filter: String, digest: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ControlError {
    /// A failure of the exchange (connection, timeout, 5xx) rather than of the content.
    pub fn is_transient(&self) -> bool {
        match self {
            ControlError::Http { .. }
            | ControlError::Body { .. }
            | ControlError::Timeout { .. }
            | ControlError::Stream(_) => true,
            ControlError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

fn io_err(path: &Path, source: std::io::Error) -> ControlError {
    ControlError::Io {
        path: path.display().to_string(),
        source,
    }
}

// === impl Bundle ===

/// One version of the desired state, ready for the proxy to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub version: u64,
    pub nonce: String,
    /// Config YAML; filter modules are `sha256:<hex>` references.
    pub config_yaml: String,
    /// Filter name → sha256 hex.
    pub modules: BTreeMap<String, String>,
    /// Holds `<hex>.wasm` for every module of this bundle (see [`resolve_module_refs`]).
    pub module_dir: PathBuf,
}

impl Bundle {
    /// Parses and validates the bundle's config (relative files such as TLS certificates
    /// resolve against `base_dir`), with every `sha256:` module reference rewritten to its
    /// file in [`Bundle::module_dir`]. Errors are one per line.
    pub fn load_config(&self, base_dir: &Path) -> Result<Config, String> {
        let file = format!("control-plane version {}", self.version);
        let mut config = crate::config::load_str_validated(&file, &self.config_yaml, base_dir)
            .map_err(|e| e.to_string())?;
        resolve_module_refs(&mut config, &self.module_dir)?;
        Ok(config)
    }

    /// Path of the module with digest `hex` in this bundle's module dir.
    pub fn module_path(&self, hex: &str) -> PathBuf {
        module_file(&self.module_dir, hex)
    }
}

fn module_file(dir: &Path, hex: &str) -> PathBuf {
    dir.join(format!("{hex}.wasm"))
}

/// Rewrites every `sha256:<hex>` module reference of `config` to the path of
/// `<module_dir>/<hex>.wasm`; errors if such a file is missing. Path references are left alone.
pub fn resolve_module_refs(config: &mut Config, module_dir: &Path) -> Result<(), String> {
    let mut errors = Vec::new();
    for filter in &mut config.filters {
        if let Some(hex) = filter.module.strip_prefix(wire::SHA256_PREFIX) {
            if !wire::is_sha256_hex(hex) {
                errors.push(format!(
                    "filter {}: invalid module digest {:?}",
                    filter.name, filter.module
                ));
                continue;
            }
            let path = module_file(module_dir, hex);
            if !path.is_file() {
                errors.push(format!(
                    "filter {}: module {} not found in {}",
                    filter.name,
                    filter.module,
                    module_dir.display()
                ));
                continue;
            }
            filter.module = path.display().to_string();
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedBundle {
    version: u64,
    nonce: String,
    config: String,
    modules: BTreeMap<String, String>,
}

/// The last ACKed bundle persisted in `cache_dir`, if it is complete and every module still
/// matches its digest. For start-up while the control plane is unreachable.
pub fn load_cached(cache_dir: &Path) -> Option<Bundle> {
    let text = std::fs::read(cache_dir.join(BUNDLE_FILE)).ok()?;
    let cached: CachedBundle = serde_json::from_slice(&text).ok()?;
    let module_dir = cache_dir.join(MODULES_DIR);
    for (filter, hex) in &cached.modules {
        let bytes = match std::fs::read(module_file(&module_dir, hex)) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(filter = %filter, error = %e, "cached module missing");
                return None;
            }
        };
        if !wire::is_sha256_hex(hex) || wire::sha256_hex(&bytes) != *hex {
            tracing::warn!(filter = %filter, "cached module does not match its digest");
            return None;
        }
    }
    Some(Bundle {
        version: cached.version,
        nonce: cached.nonce,
        config_yaml: cached.config,
        modules: cached.modules,
        module_dir,
    })
}

/// Writes `bytes` to `path` atomically (temp file + rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ControlError> {
    let tmp = path.with_extension(format!("tmp{}", rand::rng().random::<u32>()));
    std::fs::write(&tmp, bytes).map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, e)
    })
}

// === impl ControlClient ===

/// Watches a `weir-control` server as node `node`. See the module docs.
#[derive(Debug, Clone)]
pub struct ControlClient {
    url: String,
    node: String,
    cache_dir: Option<PathBuf>,
    /// `cache_dir/modules`, or a private temp dir removed when [`ControlClient::run`] ends.
    module_dir: PathBuf,
    /// (version, config, modules) the proxy already runs.
    running: Option<(u64, String, BTreeMap<String, String>)>,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// What the client remembers between messages and connections.
struct ClientState {
    module_dir: PathBuf,
    /// (version, config, modules) of the last bundle applied successfully.
    applied: Option<(u64, String, BTreeMap<String, String>)>,
    /// Module sets of recent ACKed bundles (for the cache's garbage collection).
    recent: VecDeque<BTreeSet<String>>,
}

impl ControlClient {
    /// `url` is the server's base URL (`http://HOST:PORT`).
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> Self {
        let url: String = url.into();
        ControlClient {
            url: url.trim_end_matches('/').to_string(),
            node: node.into(),
            cache_dir: None,
            module_dir: std::env::temp_dir().join(format!(
                "weir-modules-{}-{:08x}",
                std::process::id(),
                rand::rng().random::<u32>()
            )),
            running: None,
        }
    }

    /// Persist modules and the last ACKed bundle in `dir` (see [`load_cached`]).
    pub fn with_cache_dir(mut self, dir: PathBuf) -> Self {
        self.module_dir = dir.join(MODULES_DIR);
        self.cache_dir = Some(dir);
        self
    }

    /// The proxy already runs `bundle` (e.g. it started from [`load_cached`]): when the control
    /// plane sends the same version with the same content, it is ACKed without calling `apply`.
    pub fn with_running(mut self, bundle: &Bundle) -> Self {
        self.running = Some((
            bundle.version,
            bundle.config_yaml.clone(),
            bundle.modules.clone(),
        ));
        self
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where fetched modules are written (`<hex>.wasm`).
    pub fn module_dir(&self) -> &Path {
        &self.module_dir
    }

    /// For start-up without a cached bundle: waits for the control plane's current version,
    /// fetches and verifies its modules, and returns it *without* acknowledging it. Start the
    /// proxy from it, then `run` the client [`with_running`](Self::with_running) it: the
    /// control plane re-sends it on connect and gets its ACK then. One attempt; on error
    /// retry after [`backoff`]. Bound the wait with a timeout if the control plane may have
    /// nothing published yet.
    pub async fn fetch_current(&self) -> Result<Bundle, ControlError> {
        let http = http_client();
        let url = format!(
            "{}/v1/watch?node={}",
            self.url,
            wire::encode_query(&self.node)
        );
        let req = request(http::Method::GET, &url, Bytes::new(), None)?;
        let resp = match tokio::time::timeout(REQUEST_TIMEOUT, http.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(source)) => return Err(ControlError::Http { url, source }),
            Err(_) => return Err(ControlError::Timeout { url }),
        };
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = read_body(&url, resp.into_body(), 64 * 1024)
                .await
                .unwrap_or_default();
            let body = String::from_utf8_lossy(&body).into_owned();
            return Err(ControlError::Status { url, status, body });
        }
        let mut body = resp.into_body();
        let mut buf = BytesMut::new();
        let msg: wire::WatchMessage = loop {
            let frame = match tokio::time::timeout(WATCH_IDLE_TIMEOUT, body.frame()).await {
                Err(_) => {
                    return Err(ControlError::Stream(
                        "no data or heartbeat for too long".into(),
                    ))
                }
                Ok(None) => {
                    return Err(ControlError::Stream("stream ended before a version".into()))
                }
                Ok(Some(Err(e))) => return Err(ControlError::Stream(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
            }
            let mut found = None;
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line = buf.split_to(pos + 1);
                if !line.iter().all(|b| b.is_ascii_whitespace()) {
                    found =
                        Some(serde_json::from_slice(&line[..pos]).map_err(|e| {
                            ControlError::Stream(format!("malformed message: {e}"))
                        })?);
                    break;
                }
            }
            if let Some(m) = found {
                break m;
            }
            if buf.len() > MAX_MESSAGE_BYTES {
                return Err(ControlError::Stream(format!(
                    "message longer than {MAX_MESSAGE_BYTES} bytes"
                )));
            }
        };
        std::fs::create_dir_all(&self.module_dir).map_err(|e| io_err(&self.module_dir, e))?;
        self.fetch_modules(&http, &self.module_dir, &msg.modules)
            .await?;
        Ok(Bundle {
            version: msg.version,
            nonce: msg.nonce,
            config_yaml: msg.config,
            modules: msg.modules,
            module_dir: self.module_dir.clone(),
        })
    }

    /// Runs forever: watch, fetch, `apply`, ACK/NACK, reconnect with backoff. Cancel by dropping
    /// the future (or aborting its task). `apply` returns `Err(message)` to NACK a bundle.
    ///
    /// Accepts closures returning `LocalBoxFuture<'static, Result<(), String>>` (for `!Send`
    /// per-worker state; run it on a `LocalSet`) as well as `Send` futures.
    pub async fn run<F, Fut>(self, mut apply: F)
    where
        F: FnMut(Bundle) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let module_dir = self.module_dir.clone();
        // A private temp module dir goes away with the client.
        let _cleanup = RemoveOnDrop(self.cache_dir.is_none().then(|| module_dir.clone()));
        let mut state = ClientState {
            module_dir,
            applied: self.running.clone(),
            recent: VecDeque::new(),
        };
        if let Some(dir) = &self.cache_dir {
            if let Some(b) = load_cached(dir) {
                state
                    .recent
                    .push_back(b.modules.values().cloned().collect());
            }
        }
        if let Some((_, _, modules)) = &self.running {
            state.recent.push_back(modules.values().cloned().collect());
        }
        let http = http_client();

        let mut attempt: u32 = 0;
        loop {
            if let Err(e) = std::fs::create_dir_all(&state.module_dir) {
                tracing::warn!(dir = %state.module_dir.display(), error = %e, "cannot create module dir");
            }
            match self.watch_once(&http, &mut state, &mut apply).await {
                Ok(received) => {
                    tracing::info!(url = %self.url, "control stream ended; reconnecting");
                    if received {
                        attempt = 0;
                    }
                }
                Err((received, e)) => {
                    tracing::warn!(url = %self.url, error = %e, "control stream failed; reconnecting");
                    if received {
                        attempt = 0;
                    }
                }
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt = attempt.saturating_add(1);
        }
    }

    /// One watch connection. Returns whether at least one message was handled.
    async fn watch_once<F, Fut>(
        &self,
        http: &HttpClient,
        state: &mut ClientState,
        apply: &mut F,
    ) -> Result<bool, (bool, ControlError)>
    where
        F: FnMut(Bundle) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let url = format!(
            "{}/v1/watch?node={}",
            self.url,
            wire::encode_query(&self.node)
        );
        let req = request(http::Method::GET, &url, Bytes::new(), None).map_err(|e| (false, e))?;
        let resp = match tokio::time::timeout(REQUEST_TIMEOUT, http.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(source)) => return Err((false, ControlError::Http { url, source })),
            Err(_) => return Err((false, ControlError::Timeout { url })),
        };
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = read_body(&url, resp.into_body(), 64 * 1024)
                .await
                .unwrap_or_default();
            return Err((
                false,
                ControlError::Status {
                    url,
                    status,
                    body: String::from_utf8_lossy(&body).into_owned(),
                },
            ));
        }
        tracing::info!(url = %self.url, node = %self.node, "connected to control plane");
        let mut body = resp.into_body();
        let mut buf = BytesMut::new();
        let mut received = false;
        loop {
            let frame = match tokio::time::timeout(WATCH_IDLE_TIMEOUT, body.frame()).await {
                Err(_) => {
                    return Err((
                        received,
                        ControlError::Stream("no data or heartbeat for too long".into()),
                    ))
                }
                Ok(None) => return Ok(received),
                Ok(Some(Err(e))) => return Err((received, ControlError::Stream(e.to_string()))),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
            }
            // Drain whatever else already arrived so only the newest message is applied.
            while let Some(next) = body.frame().now_or_never() {
                match next {
                    None => break,
                    Some(Err(e)) => return Err((received, ControlError::Stream(e.to_string()))),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            buf.extend_from_slice(&data);
                        }
                    }
                }
            }
            let mut latest: Option<Bytes> = None;
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line = buf.split_to(pos + 1).freeze();
                let line = line.slice(..pos);
                if !line.iter().all(|b| b.is_ascii_whitespace()) {
                    latest = Some(line);
                }
            }
            if buf.len() > MAX_MESSAGE_BYTES {
                return Err((
                    received,
                    ControlError::Stream(format!("message longer than {MAX_MESSAGE_BYTES} bytes")),
                ));
            }
            let Some(line) = latest else { continue };
            let msg: wire::WatchMessage = match serde_json::from_slice(&line) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring malformed control message");
                    continue;
                }
            };
            received = true;
            self.handle(http, state, apply, msg)
                .await
                .map_err(|e| (received, e))?;
        }
    }

    /// Fetch, apply, persist, ACK/NACK one message. Errors are NACKed or logged, never returned.
    async fn handle<F, Fut>(
        &self,
        http: &HttpClient,
        state: &mut ClientState,
        apply: &mut F,
        msg: wire::WatchMessage,
    ) -> Result<(), ControlError>
    where
        F: FnMut(Bundle) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let version = msg.version;
        let nonce = msg.nonce.clone();
        let already = matches!(&state.applied, Some((v, c, m)) if *v == msg.version && *c == msg.config && *m == msg.modules);
        let result = if already {
            tracing::debug!(version, "version already applied; re-acknowledging");
            Ok(())
        } else {
            match self
                .fetch_modules(http, &state.module_dir, &msg.modules)
                .await
            {
                // The control plane went away mid-fetch: not this version's fault, so no NACK;
                // the reconnect will deliver the then-current version again.
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => Err(e.to_string()),
                Ok(()) => {
                    let bundle = Bundle {
                        version,
                        nonce: nonce.clone(),
                        config_yaml: msg.config.clone(),
                        modules: msg.modules.clone(),
                        module_dir: state.module_dir.clone(),
                    };
                    apply(bundle).await
                }
            }
        };
        match &result {
            Ok(()) => {
                tracing::info!(version, "applied control plane version");
                if !already {
                    state.applied = Some((version, msg.config.clone(), msg.modules.clone()));
                    self.persist(state, &msg);
                }
            }
            Err(e) => tracing::warn!(version, error = %e, "rejected control plane version"),
        }
        let ack = wire::Ack {
            node: self.node.clone(),
            version,
            nonce,
            error: result.err(),
        };
        if let Err(e) = self.post_ack(http, &ack).await {
            tracing::warn!(version, error = %e, "could not send ack");
        }
        Ok(())
    }

    async fn fetch_modules(
        &self,
        http: &HttpClient,
        dir: &Path,
        modules: &BTreeMap<String, String>,
    ) -> Result<(), ControlError> {
        let mut done = BTreeSet::new();
        for (filter, hex) in modules {
            if !wire::is_sha256_hex(hex) {
                return Err(ControlError::BadDigest {
                    filter: filter.clone(),
                    digest: hex.clone(),
                });
            }
            if !done.insert(hex.clone()) {
                continue;
            }
            let path = module_file(dir, hex);
            if path.is_file() {
                continue;
            }
            let url = format!("{}/v1/modules/{hex}", self.url);
            let req = request(http::Method::GET, &url, Bytes::new(), None)?;
            let bytes = send(http, req, &url, MAX_MODULE_BYTES).await?;
            let actual = wire::sha256_hex(&bytes);
            if actual != *hex {
                return Err(ControlError::Digest {
                    filter: filter.clone(),
                    expected: hex.clone(),
                    actual,
                });
            }
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            write_atomic(&path, &bytes)?;
        }
        Ok(())
    }

    /// After an ACK: write bundle.json and drop modules no recent bundle uses.
    fn persist(&self, state: &mut ClientState, msg: &wire::WatchMessage) {
        state
            .recent
            .push_back(msg.modules.values().cloned().collect());
        while state.recent.len() > KEEP_BUNDLES {
            state.recent.pop_front();
        }
        let Some(dir) = &self.cache_dir else { return };
        let cached = CachedBundle {
            version: msg.version,
            nonce: msg.nonce.clone(),
            config: msg.config.clone(),
            modules: msg.modules.clone(),
        };
        let result = serde_json::to_vec_pretty(&cached)
            .map_err(|e| io_err(dir, std::io::Error::other(e)))
            .and_then(|json| write_atomic(&dir.join(BUNDLE_FILE), &json));
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not persist the last good bundle");
            return;
        }
        let keep: BTreeSet<&String> = state.recent.iter().flatten().collect();
        if let Ok(entries) = std::fs::read_dir(&state.module_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if let Some(hex) = name.strip_suffix(".wasm") {
                    if !keep.contains(&hex.to_string()) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
    }

    async fn post_ack(&self, http: &HttpClient, ack: &wire::Ack) -> Result<(), ControlError> {
        let url = format!("{}/v1/ack", self.url);
        let body = serde_json::to_vec(ack).map_err(|e| ControlError::Stream(e.to_string()))?;
        let req = request(
            http::Method::POST,
            &url,
            Bytes::from(body),
            Some("application/json"),
        )?;
        send(http, req, &url, 64 * 1024).await.map(|_| ())
    }
}

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Delay before reconnect attempt `attempt` (0-based): 100 ms doubling to 5 s, jittered to
/// between half and all of that.
pub fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_MAX);
    let ms = base.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

// === http helpers ===

fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.set_keepalive(Some(Duration::from_secs(30)));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

fn request(
    method: http::Method,
    url: &str,
    body: Bytes,
    content_type: Option<&str>,
) -> Result<http::Request<Full<Bytes>>, ControlError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| ControlError::InvalidUrl(url.to_string()))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(ControlError::InvalidUrl(url.to_string()));
    }
    let mut builder = http::Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        builder = builder.header(http::header::CONTENT_TYPE, ct);
    }
    builder
        .body(Full::new(body))
        .map_err(|_| ControlError::InvalidUrl(url.to_string()))
}

async fn read_body(
    url: &str,
    body: hyper::body::Incoming,
    limit: usize,
) -> Result<Bytes, ControlError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(ControlError::Body {
            url: url.to_string(),
            message: e.to_string(),
        }),
    }
}

/// Sends `req`, requires a 2xx and returns the body (at most `limit` bytes).
async fn send(
    http: &HttpClient,
    req: http::Request<Full<Bytes>>,
    url: &str,
    limit: usize,
) -> Result<Bytes, ControlError> {
    let fut = async {
        let resp = http
            .request(req)
            .await
            .map_err(|source| ControlError::Http {
                url: url.to_string(),
                source,
            })?;
        let status = resp.status();
        let body = read_body(url, resp.into_body(), limit).await?;
        if !status.is_success() {
            return Err(ControlError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(body)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| ControlError::Timeout {
            url: url.to_string(),
        })?
}

#[cfg(test)]
mod tests {
    use super::wire::*;
    use super::*;

    #[test]
    fn query_roundtrip() {
        for s in ["node-a", "a b/c?&=é", ""] {
            assert_eq!(decode_query(&encode_query(s)).as_deref(), Some(s));
        }
        assert_eq!(decode_query("%4"), None);
        assert_eq!(decode_query("%zz"), None);
    }

    #[test]
    fn digests() {
        let h = sha256_hex(b"abc");
        assert!(is_sha256_hex(&h));
        assert!(!is_sha256_hex(&h.to_uppercase()));
        assert!(!is_sha256_hex("../etc/passwd"));
    }

    #[test]
    fn backoff_is_bounded() {
        for attempt in 0..40 {
            let d = backoff(attempt);
            assert!(d >= BACKOFF_MIN / 2 && d <= BACKOFF_MAX, "{d:?}");
        }
    }

    #[test]
    fn cached_bundle_is_verified() {
        let dir = std::env::temp_dir().join(format!("weir-control-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(MODULES_DIR)).unwrap();
        assert_eq!(load_cached(&dir), None);
        let hex = sha256_hex(b"\0asm module");
        let cached = CachedBundle {
            version: 3,
            nonce: "n".into(),
            config: "filters: []\n".into(),
            modules: [("f".to_string(), hex.clone())].into(),
        };
        std::fs::write(dir.join(BUNDLE_FILE), serde_json::to_vec(&cached).unwrap()).unwrap();
        assert_eq!(load_cached(&dir), None, "module missing");
        let module = module_file(&dir.join(MODULES_DIR), &hex);
        std::fs::write(&module, b"\0asm tampered").unwrap();
        assert_eq!(load_cached(&dir), None, "module corrupted");
        std::fs::write(&module, b"\0asm module").unwrap();
        let b = load_cached(&dir).unwrap();
        assert_eq!((b.version, b.module_path(&hex)), (3, module));
        std::fs::write(dir.join(BUNDLE_FILE), b"{not json").unwrap();
        assert_eq!(load_cached(&dir), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn resolves_refs() {
        let dir = std::env::temp_dir().join(format!("weir-control-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hex = sha256_hex(b"\0asm");
        std::fs::write(module_file(&dir, &hex), b"\0asm").unwrap();
        let yaml = format!(
            "filters:\n  - name: a\n    module: sha256:{hex}\n  - name: b\n    module: x.wasm\n"
        );
        let mut config = crate::config::load_str("t", &yaml).unwrap();
        resolve_module_refs(&mut config, &dir).unwrap();
        assert_eq!(
            config.filters[0].module,
            module_file(&dir, &hex).display().to_string()
        );
        assert_eq!(config.filters[1].module, "x.wasm");
        let missing = format!(
            "filters:\n  - name: a\n    module: sha256:{}\n",
            sha256_hex(b"nope")
        );
        let mut config = crate::config::load_str("t", &missing).unwrap();
        assert!(resolve_module_refs(&mut config, &dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
