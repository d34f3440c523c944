//! Harness of the hot-swap tests: temp dirs, the modules (built filters and the lifecycle test
//! guest), `weir` and `weir-control` processes started on ephemeral ports with their readiness
//! lines, a named upstream, and HTTP/1.1 and h2c (prior knowledge) keep-alive clients.
//!
//! Waits are bounded by [`DEADLINE`]; state that only an admin endpoint exposes is polled
//! ([`eventually`]) with a short interval until it holds, never slept on.

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// Upper bound of every wait.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// Interval of polls of admin/status endpoints (state only visible there).
const POLL: Duration = Duration::from_millis(10);

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// Polls `check` until it returns `Some` (bounded by [`DEADLINE`]).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

// === temp dirs ===

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "weir-swap-{label}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `bytes` to `path` atomically (temp file + rename), so readers and watchers never see a
/// half-written file.
pub fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

// === modules ===

/// `target/filters/NAME` after `scripts/build-filters.sh` (run once per test binary).
pub fn filter(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(repo().join("scripts/build-filters.sh"))
            .current_dir(repo())
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run build-filters.sh");
        assert!(
            out.status.success(),
            "build-filters.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let p = repo().join("target/filters").join(name);
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// `proxy/wasm/tests/guests/lifecycle` built for wasm32-unknown-unknown (once per test binary).
pub fn lifecycle_guest() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let manifest = repo().join("proxy/wasm/tests/guests/lifecycle/Cargo.toml");
        let target_dir = repo().join("target/wasm-guests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
            .arg("--manifest-path")
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "lifecycle guest build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target_dir.join("wasm32-unknown-unknown/release/lifecycle_filter.wasm")
    })
}

// === binaries ===

pub fn weir_bin() -> &'static str {
    env!("CARGO_BIN_EXE_weir")
}

/// The `weir-control` binary, next to `weir` in the same target dir and profile. `cargo test
/// --workspace` builds it (weir-control is a workspace member with a `[[bin]]` and tests); for
/// `cargo test -p weir` it is built here once (a no-op when it is fresh). `WEIR_CONTROL_BIN`
/// overrides the path.
pub fn weir_control_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("WEIR_CONTROL_BIN") {
            return PathBuf::from(p);
        }
        let weir = Path::new(weir_bin());
        let profile_dir = weir.parent().expect("weir binary has a directory");
        let bin = profile_dir.join(format!("weir-control{}", std::env::consts::EXE_SUFFIX));
        // <target>/<profile>/weir (or <target>/<triple>/<profile>/weir with --target).
        let profile = profile_dir
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("debug")
            .to_string();
        let mut target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let triple = std::env::var("TARGET").ok();
        if let Some(t) = &triple {
            if target_dir.ends_with(t) {
                target_dir.pop();
            }
        }
        // Fresh already (`cargo test --workspace` built it after the last source change): use
        // it as it is; rebuilding with `-p weir-control` alone would unify features differently
        // and recompile part of the graph.
        if is_fresh(&bin) {
            return bin;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "-p", "weir-control", "--bin", "weir-control"])
            .arg("--manifest-path")
            .arg(repo().join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let out = cmd.output().expect("run cargo build -p weir-control");
        if !out.status.success() {
            // Only tolerable when a binary is there already (e.g. the workspace being edited
            // concurrently); a fresh checkout must build it.
            assert!(
                bin.exists(),
                "cargo build -p weir-control failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!(
                "warning: cargo build -p weir-control failed; using the existing {}",
                bin.display()
            );
        }
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

/// Whether `bin` exists and is newer than every source it is built from (the control plane,
/// the proxy library, the wasm host, the manifests).
fn is_fresh(bin: &Path) -> bool {
    fn newest(p: &Path) -> Option<std::time::SystemTime> {
        let meta = std::fs::metadata(p).ok()?;
        if !meta.is_dir() {
            return meta.modified().ok();
        }
        std::fs::read_dir(p)
            .ok()?
            .flatten()
            .filter_map(|e| newest(&e.path()))
            .max()
    }
    let Some(built) = std::fs::metadata(bin).and_then(|m| m.modified()).ok() else {
        return false;
    };
    let root = repo();
    [
        "control/src",
        "control/Cargo.toml",
        "proxy/src",
        "proxy/Cargo.toml",
        "proxy/wasm/src",
        "proxy/wasm/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
    ]
    .iter()
    .filter_map(|p| newest(&root.join(p)))
    .all(|t| t <= built)
}

/// Starts `cmd` (stdout piped, stderr to `log`) and waits for its `{"event":"ready",...}` line.
async fn spawn_ready(mut cmd: Command, log: &Path) -> Result<(Child, Value), String> {
    let err_file = std::fs::File::create(log).expect("log file");
    let mut child = cmd
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err_file))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["event"] == "ready" {
                    return Some(v);
                }
            }
        }
        None
    })
    .await;
    match ready {
        Ok(Some(v)) => {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok((child, v))
        }
        other => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(format!(
                "no ready line ({}); stderr:\n{}",
                if other.is_err() { "timeout" } else { "exited" },
                std::fs::read_to_string(log).unwrap_or_default()
            ))
        }
    }
}

fn parse_addr(v: &Value) -> SocketAddr {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad address {v}"))
}

// === weir ===

/// A running `weir run` process (killed on drop).
pub struct Weir {
    child: Child,
    pub pid: u32,
    pub admin: SocketAddr,
    /// Listeners of the ready line (empty for a managed proxy started without a cache).
    pub listeners: BTreeMap<String, SocketAddr>,
    pub log: PathBuf,
}

impl Weir {
    /// `weir run --config CONFIG --workers N --admin 127.0.0.1:0 [--watch]`.
    pub async fn standalone(config: &Path, workers: usize, watch: bool, log: &Path) -> Weir {
        let mut cmd = Command::new(weir_bin());
        cmd.arg("run").arg("--config").arg(config).args([
            "--workers",
            &workers.to_string(),
            "--admin",
            "127.0.0.1:0",
        ]);
        if watch {
            cmd.arg("--watch");
        }
        Self::spawn(cmd, log).await
    }

    /// `weir run --control URL --node NODE --workers N --admin 127.0.0.1:0 [--cache-dir D]`.
    pub async fn managed(
        url: &str,
        node: &str,
        cache_dir: Option<&Path>,
        workers: usize,
        log: &Path,
    ) -> Weir {
        let mut cmd = Command::new(weir_bin());
        cmd.args(["run", "--control", url, "--node", node]).args([
            "--workers",
            &workers.to_string(),
            "--admin",
            "127.0.0.1:0",
        ]);
        if let Some(d) = cache_dir {
            cmd.arg("--cache-dir").arg(d);
        }
        Self::spawn(cmd, log).await
    }

    async fn spawn(cmd: Command, log: &Path) -> Weir {
        let (child, ready) = spawn_ready(cmd, log)
            .await
            .unwrap_or_else(|e| panic!("weir did not start: {e}"));
        Weir {
            pid: child.id().unwrap_or(0),
            admin: parse_addr(&ready["admin"]),
            listeners: ready["listeners"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), parse_addr(v))).collect())
                .unwrap_or_default(),
            log: log.to_path_buf(),
            child,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        one_shot(self.admin, "GET", path)
            .await
            .unwrap_or_else(|e| panic!("admin GET {path}: {e}"))
    }

    pub async fn admin_post(&self, path: &str) -> (u16, String) {
        one_shot(self.admin, "POST", path)
            .await
            .unwrap_or_else(|e| panic!("admin POST {path}: {e}"))
    }

    /// `GET /config` as JSON.
    pub async fn config(&self) -> Value {
        let (code, body) = self.admin_get("/config").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("config JSON")
    }

    /// The value of one series of `/metrics` (its exact text before the value, e.g.
    /// `weir_config_swaps_total{result="rejected"}`); 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let (code, body) = self.admin_get("/metrics").await;
        assert_eq!(code, 200, "{body}");
        metric_value(&body, series)
    }

    /// The address of listener `name`, once it is bound (managed proxies bind on swaps).
    pub async fn wait_listener(&self, name: &str) -> SocketAddr {
        eventually(&format!("listener {name} bound"), || async {
            let (code, body) = one_shot(self.admin, "GET", "/listeners").await.ok()?;
            if code != 200 {
                return None;
            }
            let v: Value = serde_json::from_str(&body).ok()?;
            v.get(name)?.as_str()?.parse().ok()
        })
        .await
    }

    /// Sends a signal with `kill -SIG PID`.
    pub fn signal(&self, sig: &str) {
        let st = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} {}", self.pid);
    }

    /// VmRSS of the process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }

    /// Kills the process and waits for it.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The value of `series` in Prometheus text `body`; 0 when absent.
pub fn metric_value(body: &str, series: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

// === weir-control ===

/// A running `weir-control serve` (killed on drop).
pub struct Control {
    child: Child,
    pub addr: SocketAddr,
    pub url: String,
}

impl Control {
    /// `weir-control serve --dir DIR --listen LISTEN`.
    pub async fn start(dir: &Path, listen: &str, log: &Path) -> Control {
        let mut cmd = Command::new(weir_control_bin());
        cmd.arg("serve")
            .arg("--dir")
            .arg(dir)
            .args(["--listen", listen]);
        let (child, ready) = spawn_ready(cmd, log)
            .await
            .unwrap_or_else(|e| panic!("weir-control did not start: {e}"));
        let addr = parse_addr(&ready["listen"]);
        Control {
            child,
            addr,
            url: format!("http://{addr}"),
        }
    }

    /// `weir-control push --server URL FILE`: the version, or the CLI's stderr on failure.
    pub async fn push(&self, file: &Path) -> Result<u64, String> {
        let out = Command::new(weir_control_bin())
            .args(["push", "--server", &self.url])
            .arg(file)
            .output()
            .await
            .expect("run weir-control push");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            assert_eq!(out.status.code(), Some(1), "push exit status: {stderr}");
            return Err(stderr);
        }
        let v: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("push output {stdout:?}: {e}"));
        Ok(v["version"].as_u64().expect("pushed version"))
    }

    /// `weir-control status --server URL [--json]`: stdout.
    pub async fn status_cli(&self, json: bool) -> String {
        let mut cmd = Command::new(weir_control_bin());
        cmd.args(["status", "--server", &self.url]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().await.expect("run weir-control status");
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `GET /v1/status` as JSON.
    pub async fn status(&self) -> Option<Value> {
        let (code, body) = one_shot(self.addr, "GET", "/v1/status").await.ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    /// Waits until node `node`'s status entry satisfies `pred`; returns the entry.
    pub async fn wait_node(&self, node: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(&format!("{node}: {what}"), || async {
            let s = self.status().await?;
            let n = node_status(&s, node)?;
            pred(&n).then_some(n)
        })
        .await
    }

    /// Waits until `node` has ACKed `version` (or a later one).
    pub async fn wait_acked(&self, node: &str, version: u64) -> Value {
        self.wait_node(node, &format!("acked version {version}"), |n| {
            n["acked_version"].as_u64() >= Some(version)
        })
        .await
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The entry of `node` in a status document.
pub fn node_status(status: &Value, node: &str) -> Option<Value> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["node"] == node)
        .cloned()
}

// === upstream ===

/// An HTTP/1.1 + h2c server on 127.0.0.1:0 that answers every request with 200, header
/// `x-upstream: NAME` and body `NAME PATH`. Requests to `/hold` wait for [`Upstream::release`]
/// (counted in [`Upstream::held`] meanwhile).
pub struct Upstream {
    pub addr: SocketAddr,
    held: Arc<AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let held = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let counter = held.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let (counter, released) = (counter.clone(), released.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let path = req.uri().path().to_string();
                            let (counter, mut released) = (counter.clone(), released.clone());
                            async move {
                                let _ = req.into_body().collect().await;
                                if path == "/hold" {
                                    counter.fetch_add(1, Ordering::SeqCst);
                                    let _ = released.wait_for(|r| *r).await;
                                    counter.fetch_sub(1, Ordering::SeqCst);
                                }
                                let mut resp = http::Response::new(Full::new(Bytes::from(
                                    format!("{name} {path}"),
                                )));
                                resp.headers_mut()
                                    .insert("x-upstream", http::HeaderValue::from_static(name));
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            held,
            release,
            task,
        }
    }

    /// Requests waiting in `/hold`.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Answers every held request (and every later `/hold` at once).
    pub fn release(&self) {
        let _ = self.release.send(true);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === clients ===

/// HTTP version of a [`Conn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    /// h2c with prior knowledge.
    H2,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One keep-alive client connection.
pub struct Conn {
    sender: Sender,
    addr: SocketAddr,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// Every value of header `name`, as text.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// The single value of header `name`, if it has exactly one.
    pub fn one(&self, name: &str) -> Option<String> {
        let all = self.all(name);
        (all.len() == 1).then(|| all.into_iter().next()).flatten()
    }
}

impl Conn {
    pub async fn connect(addr: SocketAddr, proto: Proto) -> Result<Conn, String> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let io = TokioIo::new(tcp);
        let sender = match proto {
            Proto::H1 => {
                let (send, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| format!("h1 handshake: {e}"))?;
                tokio::spawn(conn);
                Sender::H1(send)
            }
            Proto::H2 => {
                let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("h2 handshake: {e}"))?;
                tokio::spawn(conn);
                Sender::H2(send)
            }
        };
        Ok(Conn { sender, addr })
    }

    /// GET `path` on this connection.
    pub async fn get(&mut self, path: &str) -> Result<Resp, String> {
        let req = Request::builder()
            .method("GET")
            .uri(format!("http://{}{path}", self.addr))
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let fut = async {
            let resp = match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await.map_err(|e| format!("h1 not ready: {e}"))?;
                    s.send_request(req).await
                }
                Sender::H2(s) => {
                    s.ready().await.map_err(|e| format!("h2 not ready: {e}"))?;
                    s.send_request(req).await
                }
            }
            .map_err(|e| format!("request: {e}"))?;
            let status = resp.status().as_u16();
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok(Resp {
                status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(DEADLINE, fut)
            .await
            .map_err(|_| "timed out".to_string())?
    }
}

/// One request on a fresh HTTP/1.1 connection: (status, body).
pub async fn one_shot(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let fut = async {
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(DEADLINE, fut)
        .await
        .map_err(|_| format!("{method} {path} timed out"))?
}

/// GET `path` on a fresh HTTP/1.1 connection to `addr`.
pub async fn get_once(addr: SocketAddr, path: &str) -> Resp {
    let mut c = Conn::connect(addr, Proto::H1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c.get(path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

// === configs ===

/// A config: listener `edge` on 127.0.0.1:0 (or `address`) routing `/` to `cluster` through
/// filter `version` = header_rewrite setting response headers `x-version: TAG` and
/// `x-gen: GEN`; clusters `blue` and `green`.
pub fn version_config(
    module: &str,
    tag: &str,
    gen: u64,
    cluster: &str,
    blue: SocketAddr,
    green: SocketAddr,
) -> String {
    format!(
        r#"listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [version]
    routes:
      - name: all
        match: {{ path_prefix: / }}
        cluster: {cluster}
clusters:
  - name: blue
    endpoints: [{blue}]
  - name: green
    endpoints: [{green}]
filters:
  - name: version
    module: {module}
    config: {{ response: {{ set: {{ x-version: "{tag}", x-gen: "{gen}" }} }} }}
"#
    )
}
