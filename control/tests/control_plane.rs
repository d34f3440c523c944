//! weir-control server + the proxy's `ControlClient`, over real sockets on 127.0.0.1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use weir::control::wire::{sha256_hex, Status};
use weir::control::{load_cached, Bundle, ControlClient};
use weir_control::{client, ServeOptions, ServerHandle};

mod common;
use common::wasm;

const WAIT: Duration = Duration::from_secs(20);

// === helpers ===

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weir-control-test-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(module: &str, value: &str) -> String {
    format!(
        "listeners:\n  - name: edge\n    address: 127.0.0.1:0\n    filters: [headers]\n    routes:\n      - name: all\n        match: {{ path_prefix: / }}\n        cluster: up\nclusters:\n  - name: up\n    endpoints: [127.0.0.1:9]\nfilters:\n  - name: headers\n    module: {module}\n    config: {{ value: {value} }}\n"
    )
}

/// Writes a file atomically, as an editor or `cp` + `mv` would.
fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn start(dir: &Path, listen: SocketAddr) -> ServerHandle {
    let mut opts = ServeOptions::new(dir, listen);
    opts.poll_interval = Duration::from_millis(50);
    weir_control::start(opts).await.unwrap()
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// What the test client's `apply` saw: the bundle and the bytes of its modules.
type Applied = (Bundle, Vec<Vec<u8>>);

/// Runs a client whose `apply` records each bundle (with the bytes of its modules read at apply
/// time) and NACKs configs that contain `reject`.
fn spawn_client(
    url: String,
    node: &str,
    cache: Option<PathBuf>,
) -> (
    tokio::task::JoinHandle<()>,
    mpsc::UnboundedReceiver<Applied>,
) {
    let mut c = ControlClient::new(url, node);
    if let Some(dir) = cache {
        c = c.with_cache_dir(dir);
    }
    spawn(c)
}

/// Runs `c` with the recording `apply` of [`spawn_client`].
fn spawn(
    c: ControlClient,
) -> (
    tokio::task::JoinHandle<()>,
    mpsc::UnboundedReceiver<Applied>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(c.run(move |b: Bundle| {
        let tx = tx.clone();
        async move {
            let modules = b
                .modules
                .values()
                .map(|hex| std::fs::read(b.module_path(hex)).unwrap_or_default())
                .collect();
            let reject = b.config_yaml.contains("reject");
            let _ = tx.send((b, modules));
            if reject {
                Err("on_configure failed: rejected by test".to_string())
            } else {
                Ok(())
            }
        }
    }));
    (task, rx)
}

async fn next_bundle(rx: &mut mpsc::UnboundedReceiver<Applied>) -> (Bundle, Vec<Vec<u8>>) {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no bundle in time")
        .expect("client stopped")
}

/// Polls `/v1/status` (bounded) until `pred` holds.
async fn wait_status(url: &str, pred: impl Fn(&Status) -> bool) -> Status {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = client::status(url).await.unwrap();
        if pred(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never matched: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn acked(s: &Status, node: &str) -> Option<u64> {
    s.nodes
        .iter()
        .find(|n| n.node == node)
        .and_then(|n| n.acked_version)
}

// === tests ===

#[tokio::test]
async fn client_gets_current_version_then_every_change() {
    let dir = temp_dir("watch");
    write(&dir.join("a.wasm"), wasm("one"));
    write(&dir.join("weir.yaml"), config("a.wasm", "1"));
    let server = start(&dir, loopback()).await;
    let url = format!("http://{}", server.local_addr());
    let cache = temp_dir("watch-cache");
    let (task, mut rx) = spawn_client(url.clone(), "node-a", Some(cache.clone()));

    let (b1, m1) = next_bundle(&mut rx).await;
    let hex1 = sha256_hex(&wasm("one"));
    assert_eq!(b1.modules.get("headers"), Some(&hex1));
    assert!(
        b1.config_yaml.contains(&format!("sha256:{hex1}")),
        "{}",
        b1.config_yaml
    );
    assert!(!b1.config_yaml.contains("a.wasm"));
    assert_eq!(m1, vec![wasm("one")]);
    let cfg = b1.load_config(&dir).unwrap();
    assert_eq!(std::fs::read(&cfg.filters[0].module).unwrap(), wasm("one"));
    let s = wait_status(&url, |s| acked(s, "node-a") == Some(b1.version)).await;
    assert!(s.nodes[0].connected);

    // A module change is a new version with the new digest.
    write(&dir.join("a.wasm"), wasm("two"));
    let (b2, m2) = next_bundle(&mut rx).await;
    assert!(b2.version > b1.version);
    assert_eq!(b2.modules.get("headers"), Some(&sha256_hex(&wasm("two"))));
    assert_eq!(m2, vec![wasm("two")]);
    assert_ne!(b2.nonce, b1.nonce);

    // A config change too.
    write(&dir.join("weir.yaml"), config("a.wasm", "2"));
    let (b3, _) = next_bundle(&mut rx).await;
    assert!(b3.version > b2.version);
    assert!(b3.config_yaml.contains("value: 2"), "{}", b3.config_yaml);
    wait_status(&url, |s| acked(s, "node-a") == Some(b3.version)).await;

    // An invalid change is not published (status says why); the next valid one is.
    write(&dir.join("weir.yaml"), "listeners: [ {unknown_key: 1} ]\n");
    let s = wait_status(&url, |s| s.desired_error.is_some()).await;
    assert!(
        s.desired_error.as_deref().unwrap().contains("unknown_key"),
        "{s:?}"
    );
    assert_eq!(s.version, Some(b3.version));
    write(&dir.join("weir.yaml"), config("a.wasm", "3"));
    let (b4, _) = next_bundle(&mut rx).await;
    assert!(b4.config_yaml.contains("value: 3"), "{}", b4.config_yaml);
    assert_eq!(b4.version, b3.version + 1);
    assert_eq!(client::status(&url).await.unwrap().desired_error, None);

    // The last good bundle is in the cache, modules included.
    wait_status(&url, |s| acked(s, "node-a") == Some(b4.version)).await;
    let cached = load_cached(&cache).expect("cached bundle");
    assert_eq!(cached.version, b4.version);
    assert_eq!(cached.config_yaml, b4.config_yaml);
    assert_eq!(
        std::fs::read(cached.module_path(&cached.modules["headers"])).unwrap(),
        wasm("two")
    );

    task.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn push_reaches_every_node_and_nack_is_recorded() {
    let dir = temp_dir("push");
    let server = start(&dir, loopback()).await; // empty dir: nothing published yet
    assert_eq!(server.version(), None);
    let url = format!("http://{}", server.local_addr());
    let (task_a, mut rx_a) = spawn_client(url.clone(), "node-a", None);
    let (task_b, mut rx_b) = spawn_client(url.clone(), "node-b", None);
    wait_status(&url, |s| {
        s.nodes.len() == 2 && s.nodes.iter().all(|n| n.connected)
    })
    .await;

    let src = temp_dir("push-src");
    write(&src.join("f.wasm"), wasm("pushed"));
    write(&src.join("weir.yaml"), config("f.wasm", "1"));
    let v1 = client::push_file(&url, &src.join("weir.yaml"))
        .await
        .unwrap();
    let (a1, ma) = next_bundle(&mut rx_a).await;
    let (b1, _) = next_bundle(&mut rx_b).await;
    assert_eq!((a1.version, b1.version), (v1, v1));
    assert_eq!(ma, vec![wasm("pushed")]);
    wait_status(&url, |s| {
        acked(s, "node-a") == Some(v1) && acked(s, "node-b") == Some(v1)
    })
    .await;

    // The push became the directory's desired state (modules stored by digest).
    let on_disk = std::fs::read_to_string(dir.join("weir.yaml")).unwrap();
    let hex = sha256_hex(&wasm("pushed"));
    assert!(
        on_disk.contains(&format!("modules/{hex}.wasm")),
        "{on_disk}"
    );
    assert_eq!(
        std::fs::read(dir.join("modules").join(format!("{hex}.wasm"))).unwrap(),
        wasm("pushed")
    );

    // Pushing the same state again is not a new version.
    assert_eq!(
        client::push_file(&url, &src.join("weir.yaml"))
            .await
            .unwrap(),
        v1
    );

    // A config the proxies reject: NACK recorded, acked version unchanged.
    write(&src.join("weir.yaml"), config("f.wasm", "reject"));
    let v2 = client::push_file(&url, &src.join("weir.yaml"))
        .await
        .unwrap();
    assert_eq!(v2, v1 + 1);
    assert_eq!(next_bundle(&mut rx_a).await.0.version, v2);
    assert_eq!(next_bundle(&mut rx_b).await.0.version, v2);
    let s = wait_status(&url, |s| s.nodes.iter().all(|n| n.last_nack.is_some())).await;
    for n in &s.nodes {
        assert_eq!(n.acked_version, Some(v1), "{n:?}");
        let nack = n.last_nack.as_ref().unwrap();
        assert_eq!(nack.version, v2);
        assert!(nack.error.contains("rejected by test"), "{nack:?}");
    }
    let table = client::format_status(&s);
    assert!(
        table.contains("node-a") && table.contains("rejected by test"),
        "{table}"
    );

    task_a.abort();
    task_b.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_digest_is_a_nack() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    // A faulty control plane: announces module sha256(good) but serves other bytes.
    let good = wasm("good");
    let hex = sha256_hex(&good);
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<weir::control::wire::Ack>();
    let message = serde_json::to_string(&weir::control::wire::WatchMessage {
        version: 7,
        nonce: "n7".into(),
        config: config(&format!("sha256:{hex}"), "1"),
        modules: [("headers".to_string(), hex.clone())].into(),
    })
    .unwrap();
    let fake = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let ack_tx = ack_tx.clone();
            let message = message.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let ack_tx = ack_tx.clone();
                        let message = message.clone();
                        async move {
                            let body = match req.uri().path() {
                                "/v1/watch" => Bytes::from(message + "\n"),
                                "/v1/ack" => {
                                    let body = req.into_body().collect().await.unwrap().to_bytes();
                                    let _ = ack_tx.send(serde_json::from_slice(&body).unwrap());
                                    Bytes::from_static(b"{}")
                                }
                                _ => Bytes::from(wasm("evil")),
                            };
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let (task, mut rx) = spawn_client(format!("http://{addr}"), "node-x", None);
    let ack = tokio::time::timeout(WAIT, ack_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ack.node.as_str(), ack.version, ack.nonce.as_str()),
        ("node-x", 7, "n7")
    );
    let error = ack.error.expect("a NACK");
    assert!(
        error.contains("digest mismatch") && error.contains(&hex),
        "{error}"
    );
    assert!(
        rx.try_recv().is_err(),
        "apply must not run with a bad module"
    );
    task.abort();
    fake.abort();
}

#[tokio::test]
async fn client_reconnects_to_a_restarted_server_and_gets_the_latest() {
    let dir = temp_dir("restart");
    write(&dir.join("a.wasm"), wasm("one"));
    write(&dir.join("weir.yaml"), config("a.wasm", "1"));
    let server = start(&dir, loopback()).await;
    let addr = server.local_addr();
    let url = format!("http://{addr}");
    let (task, mut rx) = spawn_client(url.clone(), "node-a", None);
    let (b1, _) = next_bundle(&mut rx).await;
    wait_status(&url, |s| acked(s, "node-a") == Some(b1.version)).await;
    server.shutdown().await;

    // While it is down the desired state changes; the restarted server publishes it.
    write(&dir.join("a.wasm"), wasm("two"));
    let server = start(&dir, addr).await;
    assert_eq!(server.version(), Some(b1.version + 1));
    let (b2, m2) = next_bundle(&mut rx).await;
    assert_eq!(b2.version, b1.version + 1);
    assert_eq!(m2, vec![wasm("two")]);
    wait_status(&url, |s| acked(s, "node-a") == Some(b2.version)).await;

    // A restart without changes keeps the version; the client re-ACKs without re-applying.
    server.shutdown().await;
    let server = start(&dir, addr).await;
    assert_eq!(server.version(), Some(b2.version));
    wait_status(&url, |s| acked(s, "node-a") == Some(b2.version)).await;
    assert!(
        rx.try_recv().is_err(),
        "same version must not be applied twice"
    );
    task.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn server_refuses_invalid_pushes_and_bad_requests() {
    let dir = temp_dir("refuse");
    let server = start(&dir, loopback()).await;
    let url = format!("http://{}", server.local_addr());
    let http = |method: &str, path: &str, body: Vec<u8>| {
        let url = format!("{url}{path}");
        let method: http::Method = method.parse().unwrap();
        async move {
            use http_body_util::{BodyExt, Full};
            let c =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Full<bytes::Bytes>>();
            let req = http::Request::builder()
                .method(method)
                .uri(url)
                .body(Full::new(bytes::Bytes::from(body)))
                .unwrap();
            let resp = c.request(req).await.unwrap();
            let status = resp.status().as_u16();
            (
                status,
                String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes())
                    .into_owned(),
            )
        }
    };
    // Unknown module digest, path reference, bad YAML: 400 with the errors.
    let unknown = config(&format!("sha256:{}", sha256_hex(b"nothing")), "1");
    let (status, body) = http("POST", "/v1/push", unknown.into_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown module"), "{body}");
    let (status, body) = http("POST", "/v1/push", config("a.wasm", "1").into_bytes()).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = http("POST", "/v1/push", b"listeners: [".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("push:"), "{body}");
    // Upload with a wrong digest, bad digests, acks with unknown nonces, missing node.
    let (status, _) = http(
        "PUT",
        &format!("/v1/modules/{}", sha256_hex(b"x")),
        b"y".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = http("GET", "/v1/modules/..%2Fweir.yaml", vec![]).await;
    assert_eq!(status, 400);
    let (status, _) = http("GET", &format!("/v1/modules/{}", sha256_hex(b"x")), vec![]).await;
    assert_eq!(status, 404);
    let (status, _) = http(
        "POST",
        "/v1/ack",
        br#"{"node":"n","version":1,"nonce":"x","error":null}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = http("POST", "/v1/ack", b"not json".to_vec()).await;
    assert_eq!(status, 400);
    let (status, _) = http("GET", "/v1/watch", vec![]).await;
    assert_eq!(status, 400);
    assert_eq!(server.version(), None);
    server.shutdown().await;
}

#[tokio::test]
async fn cli_serve_push_status() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_weir-control");
    let dir = temp_dir("cli");
    let mut serve = Command::new(bin)
        .args([
            "serve",
            "--dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(serve.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ready["event"], "ready");
    let url = format!("http://{}", ready["listen"].as_str().unwrap());

    let src = temp_dir("cli-src");
    write(&src.join("f.wasm"), wasm("cli"));
    // Invalid: an unknown key (reported with file:line:column) → exit 1, nothing published.
    write(
        &src.join("bad.yaml"),
        format!("{}bogus: 1\n", config("f.wasm", "1")),
    );
    let out = Command::new(bin)
        .args([
            "push",
            "--server",
            &url,
            src.join("bad.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:") && stderr.contains("bogus"),
        "{stderr}"
    );
    // Invalid: a missing module.
    write(&src.join("missing.yaml"), config("nope.wasm", "1"));
    let out = Command::new(bin)
        .args([
            "push",
            "--server",
            &url,
            src.join("missing.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.wasm"));
    assert_eq!(client::status(&url).await.unwrap().version, None);

    write(&src.join("weir.yaml"), config("f.wasm", "1"));
    let out = Command::new(bin)
        .args([
            "push",
            "--server",
            &url,
            src.join("weir.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed["version"], 1);

    let (task, mut rx) = spawn_client(url.clone(), "edge-1", None);
    assert_eq!(next_bundle(&mut rx).await.0.version, 1);
    wait_status(&url, |s| acked(s, "edge-1") == Some(1)).await;
    let out = Command::new(bin)
        .args(["status", "--server", &url])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        table.contains("NODE")
            && table
                .lines()
                .any(|l| l.starts_with("edge-1") && l.contains("yes")),
        "{table}"
    );
    let out = Command::new(bin)
        .args(["status", "--server", &url, "--json"])
        .output()
        .unwrap();
    let s: Status = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(acked(&s, "edge-1"), Some(1));

    task.abort();
    // SIGTERM: a clean exit.
    let term = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = serve.kill();
            panic!("weir-control serve ignored SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn watch_over_http2() {
    use http_body_util::{BodyExt, Empty};
    let dir = temp_dir("h2");
    write(&dir.join("a.wasm"), wasm("one"));
    write(&dir.join("weir.yaml"), config("a.wasm", "1"));
    let server = start(&dir, loopback()).await;
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<bytes::Bytes>>();
    let uri = format!("http://{}/v1/watch?node=h2-node", server.local_addr());
    let resp = c.get(uri.parse().unwrap()).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while !buf.contains(&b'\n') {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.extend_from_slice(&frame.into_data().unwrap());
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap();
    let msg: weir::control::wire::WatchMessage = serde_json::from_slice(line).unwrap();
    assert_eq!(msg.version, server.version().unwrap());
    assert_eq!(msg.modules["headers"], sha256_hex(&wasm("one")));
    let s = client::status(&format!("http://{}", server.local_addr()))
        .await
        .unwrap();
    assert!(s
        .nodes
        .iter()
        .any(|n| n.node == "h2-node" && n.connected && n.sent_version == Some(msg.version)));
    drop(body);
    server.shutdown().await;
}

#[tokio::test]
async fn proxy_restarted_while_control_plane_down_starts_from_cache() {
    let dir = temp_dir("cache-restart");
    write(&dir.join("a.wasm"), wasm("one"));
    write(&dir.join("weir.yaml"), config("a.wasm", "1"));
    let server = start(&dir, loopback()).await;
    let addr = server.local_addr();
    let url = format!("http://{addr}");
    let cache = temp_dir("cache-restart-cache");
    let (task, mut rx) = spawn_client(url.clone(), "node-a", Some(cache.clone()));
    let (b1, _) = next_bundle(&mut rx).await;
    wait_status(&url, |s| acked(s, "node-a") == Some(b1.version)).await;
    // Both go down; the proxy restarts first and serves its cached bundle.
    task.abort();
    let _ = task.await;
    server.shutdown().await;
    let cached = load_cached(&cache).expect("cached bundle");
    assert_eq!(
        (cached.version, &cached.config_yaml),
        (b1.version, &b1.config_yaml)
    );
    let cfg = cached.load_config(&dir).unwrap();
    assert_eq!(std::fs::read(&cfg.filters[0].module).unwrap(), wasm("one"));
    let (task, mut rx) = spawn(
        ControlClient::new(url.clone(), "node-a")
            .with_cache_dir(cache.clone())
            .with_running(&cached),
    );
    // The control plane comes back with the same version: ACKed without re-applying.
    let server = start(&dir, addr).await;
    wait_status(&url, |s| acked(s, "node-a") == Some(b1.version)).await;
    assert!(
        rx.try_recv().is_err(),
        "the running bundle must not be applied again"
    );
    // A new version is applied as usual.
    write(&dir.join("weir.yaml"), config("a.wasm", "2"));
    let (b2, _) = next_bundle(&mut rx).await;
    assert_eq!(b2.version, b1.version + 1);
    task.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn bootstrap_with_fetch_current_then_run() {
    let dir = temp_dir("bootstrap");
    write(&dir.join("a.wasm"), wasm("boot"));
    write(&dir.join("weir.yaml"), config("a.wasm", "1"));
    let server = start(&dir, loopback()).await;
    let url = format!("http://{}", server.local_addr());
    let c = ControlClient::new(url.clone(), "boot-node");
    let first = c.fetch_current().await.unwrap();
    assert_eq!(Some(first.version), server.version());
    assert_eq!(
        std::fs::read(first.module_path(&first.modules["headers"])).unwrap(),
        wasm("boot")
    );
    // Not acknowledged until the proxy runs it and the client says so.
    let s = client::status(&url).await.unwrap();
    assert_eq!(acked(&s, "boot-node"), None);
    let (task, mut rx) = spawn(c.with_running(&first));
    wait_status(&url, |s| acked(s, "boot-node") == Some(first.version)).await;
    assert!(
        rx.try_recv().is_err(),
        "the running bundle must not be applied again"
    );
    task.abort();
    server.shutdown().await;
}
