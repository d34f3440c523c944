//! Issue 5, points 2–4: `weir-control serve/push/status` with several managed proxies
//! (`weir run --control URL --node NAME`): a push reaches every proxy and is ACKed; an invalid
//! push is refused and never reaches a proxy; a version that fails on the proxy is NACKed with
//! its error and the last good one keeps serving; a wrong module digest is a NACK; the proxies
//! survive the control plane going away, reconnect to it when it is back and get the latest
//! version; a proxy restarted while it is down serves its last good snapshot from `--cache-dir`.

use crate::support::{
    eventually, filter, get_once, node_status, version_config, write_atomic, Control, TempDir,
    Upstream, Weir,
};
use bytes::Bytes;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A directory to push from: `version.wasm` (header_rewrite) and `limit.wasm` (rate_limit).
struct Source {
    dir: TempDir,
    blue: Upstream,
    green: Upstream,
}

impl Source {
    async fn new(label: &str) -> Source {
        let dir = TempDir::new(label);
        std::fs::copy(filter("header_rewrite.wasm"), dir.join("version.wasm")).unwrap();
        std::fs::copy(filter("rate_limit.wasm"), dir.join("limit.wasm")).unwrap();
        Source {
            dir,
            blue: Upstream::start("blue").await,
            green: Upstream::start("green").await,
        }
    }

    /// Writes `NAME.yaml` (tag 1 → cluster blue, else green) and returns its path.
    fn file(&self, name: &str, tag: &str, gen: u64) -> PathBuf {
        let cluster = if tag == "1" { "blue" } else { "green" };
        let text = version_config(
            "version.wasm",
            tag,
            gen,
            cluster,
            self.blue.addr,
            self.green.addr,
        );
        self.raw(name, &text)
    }

    fn raw(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(format!("{name}.yaml"));
        write_atomic(&p, text);
        p
    }
}

/// (x-version, x-gen) served by `addr`.
async fn served(addr: SocketAddr) -> (String, String) {
    let r = get_once(addr, "/probe").await;
    assert_eq!(r.status, 200, "{r:?}");
    (
        r.one("x-version").expect("one x-version"),
        r.one("x-gen").expect("one x-gen"),
    )
}

async fn control_version(weir: &Weir) -> u64 {
    weir.config().await["control_version"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_reaches_every_proxy_nack_keeps_the_last_good() {
    let src = Source::new("push-src").await;
    let state = TempDir::new("push-state");
    let control = Control::start(state.path(), "127.0.0.1:0", &state.join("control.log")).await;
    let a = Weir::managed(&control.url, "node-a", None, 1, &src.dir.join("a.log")).await;
    let b = Weir::managed(&control.url, "node-b", None, 2, &src.dir.join("b.log")).await;
    assert!(a.listeners.is_empty(), "nothing to serve before a version");

    // A push reaches both proxies; both ACK it and serve it.
    let v1 = control
        .push(&src.file("v1", "1", 1))
        .await
        .expect("push v1");
    for (node, weir) in [("node-a", &a), ("node-b", &b)] {
        control.wait_acked(node, v1).await;
        let edge = weir.wait_listener("edge").await;
        assert_eq!(served(edge).await, ("1".into(), "1".into()), "{node}");
        assert_eq!(control_version(weir).await, v1, "{node}");
    }
    let text = control.status_cli(false).await;
    assert!(
        text.contains("node-a") && text.contains("node-b") && text.contains(&v1.to_string()),
        "status lists both nodes with the acked version:\n{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&control.status_cli(true).await).unwrap();
    for node in ["node-a", "node-b"] {
        let n = node_status(&json, node).expect("node in status --json");
        assert_eq!(n["acked_version"].as_u64(), Some(v1), "{n}");
        assert!(n["last_nack"].is_null(), "{n}");
    }

    // Invalid pushes are refused (exit 1, the error) and never reach a proxy.
    let bad_yaml = src.raw("bad", "listeners: [ {name: edge\n");
    let err = control.push(&bad_yaml).await.expect_err("bad YAML refused");
    assert!(err.contains("bad.yaml"), "the error names the file: {err}");
    std::fs::write(src.dir.join("junk.wasm"), b"junk, not a module").unwrap();
    let text = std::fs::read_to_string(src.file("junk", "2", 2))
        .unwrap()
        .replace("version.wasm", "junk.wasm");
    let junk = src.raw("junk", &text);
    let err = control
        .push(&junk)
        .await
        .expect_err("a non-wasm module is refused");
    assert!(err.contains("junk.wasm"), "{err}");
    let status = control.status().await.unwrap();
    assert_eq!(
        status["version"].as_u64(),
        Some(v1),
        "nothing published: {status}"
    );
    for (node, weir) in [("node-a", &a), ("node-b", &b)] {
        let n = node_status(&status, node).unwrap();
        assert_eq!(n["sent_version"].as_u64(), Some(v1), "{node}: {n}");
        assert_eq!(control_version(weir).await, v1);
        assert_eq!(served(weir.wait_listener("edge").await).await.1, "1");
    }

    // A filter config the filter itself rejects (rate_limit's on_configure refuses rate 0) is
    // caught by the push's full check (DESIGN.md §7): refused, never published.
    let text = std::fs::read_to_string(src.file("refused", "2", 3)).unwrap();
    let text = format!(
        "{}  - name: limit\n    module: limit.wasm\n    config: {{ rate: 0 }}\n",
        text.replace("filters: [version]", "filters: [version, limit]")
    );
    let err = control
        .push(&src.raw("refused", &text))
        .await
        .expect_err("a filter config the filter rejects is refused by push");
    assert!(err.contains("limit"), "the error names the filter: {err}");
    let status = control.status().await.unwrap();
    assert_eq!(status["version"].as_u64(), Some(v1), "{status}");

    // A version that can only fail on the proxies (a new listener on an address already in
    // use there) passes the push, is NACKed by every proxy with the error, and the last good
    // keeps serving.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();
    let text = std::fs::read_to_string(src.file("fails", "2", 3)).unwrap();
    let text = text.replacen(
        "listeners:\n",
        &format!(
            "listeners:\n  - name: busy\n    address: {busy_addr}\n    routes:\n      - match: {{ path_prefix: / }}\n        cluster: green\n"
        ),
        1,
    );
    let v2 = control
        .push(&src.raw("fails", &text))
        .await
        .expect("the push itself is valid");
    assert!(v2 > v1);
    for (node, weir) in [("node-a", &a), ("node-b", &b)] {
        let n = control
            .wait_node(node, "NACK of the failing version", |n| {
                n["last_nack"]["version"].as_u64() == Some(v2)
            })
            .await;
        let error = n["last_nack"]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("busy"),
            "{node}: the error names the listener: {n}"
        );
        assert_eq!(n["acked_version"].as_u64(), Some(v1), "{node}: {n}");
        assert_eq!(control_version(weir).await, v1, "{node}");
        assert_eq!(
            served(weir.wait_listener("edge").await).await,
            ("1".into(), "1".into())
        );
        assert!(
            weir.metric(r#"weir_config_swaps_total{result="rejected"}"#)
                .await
                >= 1.0,
            "{node}"
        );
    }
    let text = control.status_cli(false).await;
    assert!(
        text.contains("busy"),
        "status shows the NACK's error:\n{text}"
    );
    drop(busy);

    // The next good version is ACKed and served everywhere.
    let v3 = control
        .push(&src.file("v3", "2", 4))
        .await
        .expect("push v3");
    for (node, weir) in [("node-a", &a), ("node-b", &b)] {
        control.wait_acked(node, v3).await;
        assert_eq!(
            served(weir.wait_listener("edge").await).await,
            ("2".into(), "4".into())
        );
        let r = get_once(weir.wait_listener("edge").await, "/x").await;
        assert_eq!(
            r.one("x-upstream").as_deref(),
            Some("green"),
            "the route changed too"
        );
    }
}

// === a control plane that serves a module with the wrong bytes ===

type Frame = hyper::body::Frame<Bytes>;

/// One watch stream: the test sends its lines; acks come back on `acks`.
struct FakeControl {
    addr: SocketAddr,
    lines: tokio::sync::mpsc::UnboundedSender<String>,
    acks: tokio::sync::mpsc::UnboundedReceiver<weir::control::wire::Ack>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeControl {
    /// Serves `modules` (hex → bytes, whatever the hex says) and one watch stream.
    async fn start(modules: std::collections::HashMap<String, Bytes>) -> FakeControl {
        use http_body_util::{BodyExt, Full, StreamBody};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (line_tx, line_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let (ack_tx, ack_rx) = tokio::sync::mpsc::unbounded_channel();
        let line_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(line_rx)));
        let modules = std::sync::Arc::new(modules);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (ack_tx, line_rx, modules) = (ack_tx.clone(), line_rx.clone(), modules.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (ack_tx, line_rx, modules) =
                                (ack_tx.clone(), line_rx.clone(), modules.clone());
                            async move {
                                type B = http_body_util::combinators::BoxBody<
                                    Bytes,
                                    std::convert::Infallible,
                                >;
                                let path = req.uri().path().to_string();
                                let body: B = if path == "/v1/watch" {
                                    match line_rx.lock().await.take() {
                                        Some(rx) => {
                                            let s = futures_util::stream::unfold(
                                                rx,
                                                |mut rx| async move {
                                                    let line = rx.recv().await?;
                                                    Some((
                                                        Ok::<_, std::convert::Infallible>(
                                                            Frame::data(Bytes::from(line + "\n")),
                                                        ),
                                                        rx,
                                                    ))
                                                },
                                            );
                                            StreamBody::new(s).boxed()
                                        }
                                        None => Full::new(Bytes::new()).boxed(),
                                    }
                                } else if path == "/v1/ack" {
                                    let body = req
                                        .into_body()
                                        .collect()
                                        .await
                                        .map(|b| b.to_bytes())
                                        .unwrap_or_default();
                                    if let Ok(ack) = serde_json::from_slice(&body) {
                                        let _ = ack_tx.send(ack);
                                    }
                                    Full::new(Bytes::from_static(b"{}")).boxed()
                                } else {
                                    let hex = path.rsplit('/').next().unwrap_or_default();
                                    Full::new(modules.get(hex).cloned().unwrap_or_default()).boxed()
                                };
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        FakeControl {
            addr,
            lines: line_tx,
            acks: ack_rx,
            task,
        }
    }

    fn send(&self, version: u64, config: String, modules: &[(&str, &str)]) {
        let msg = weir::control::wire::WatchMessage {
            version,
            nonce: format!("n{version}"),
            config,
            modules: modules
                .iter()
                .map(|(f, h)| (f.to_string(), h.to_string()))
                .collect(),
        };
        self.lines
            .send(serde_json::to_string(&msg).unwrap())
            .unwrap();
    }

    async fn ack(&mut self) -> weir::control::wire::Ack {
        tokio::time::timeout(crate::support::DEADLINE, self.acks.recv())
            .await
            .expect("an ack in time")
            .expect("ack channel open")
    }
}

impl Drop for FakeControl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_module_digest_is_a_nack_and_the_last_good_keeps_serving() {
    use weir::control::wire::sha256_hex;
    let src = Source::new("digest").await;
    let good = Bytes::from(std::fs::read(filter("header_rewrite.wasm")).unwrap());
    let good_hex = sha256_hex(&good);
    // The announced digest is of a module the server then serves other (valid wasm) bytes for.
    let announced = Bytes::from(std::fs::read(filter("fault.wasm")).unwrap());
    let announced_hex = sha256_hex(&announced);
    let evil = Bytes::from(std::fs::read(filter("auth.wasm")).unwrap());
    let mut fake = FakeControl::start(
        [
            (good_hex.clone(), good.clone()),
            (announced_hex.clone(), evil),
        ]
        .into_iter()
        .collect(),
    )
    .await;
    let weir = Weir::managed(
        &format!("http://{}", fake.addr),
        "node-d",
        None,
        1,
        &src.dir.join("d.log"),
    )
    .await;

    let config = |hex: &str, tag: &str| {
        version_config(
            &format!("sha256:{hex}"),
            tag,
            1,
            "blue",
            src.blue.addr,
            src.green.addr,
        )
    };
    fake.send(1, config(&good_hex, "1"), &[("version", &good_hex)]);
    let ack = fake.ack().await;
    assert_eq!((ack.version, ack.error.as_deref()), (1, None), "{ack:?}");
    let edge = weir.wait_listener("edge").await;
    assert_eq!(served(edge).await.0, "1");

    fake.send(
        2,
        config(&announced_hex, "2"),
        &[("version", &announced_hex)],
    );
    let ack = fake.ack().await;
    assert_eq!(
        (ack.node.as_str(), ack.version, ack.nonce.as_str()),
        ("node-d", 2, "n2")
    );
    let error = ack.error.expect("a NACK");
    assert!(
        error.contains("digest mismatch") && error.contains(&announced_hex),
        "{error}"
    );
    assert_eq!(served(edge).await.0, "1", "the last good keeps serving");
    assert_eq!(control_version(&weir).await, 1);
}

// === failures of the control plane ===

/// Rewrites the `x-version`/`x-gen` values of the directory's desired state (the YAML a push
/// left there) while the server is down.
fn edit_desired(dir: &Path, tag: &str, gen: u64) {
    let file = dir.join("weir.yaml");
    let text = std::fs::read_to_string(&file).expect("the pushed desired state");
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let set = &mut doc["filters"][0]["config"]["response"]["set"];
    set["x-version"] = serde_yaml::Value::String(tag.into());
    set["x-gen"] = serde_yaml::Value::String(gen.to_string());
    write_atomic(&file, serde_yaml::to_string(&doc).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_down_restarted_and_cache_dir() {
    let src = Source::new("restart-src").await;
    let state = TempDir::new("restart-state");
    let control = Control::start(state.path(), "127.0.0.1:0", &state.join("control-1.log")).await;
    let addr = control.addr;
    let url = control.url.clone();
    let cache_a = src.dir.join("cache-a");
    let a = Weir::managed(&url, "node-a", Some(&cache_a), 1, &src.dir.join("a1.log")).await;
    let b = Weir::managed(&url, "node-b", None, 1, &src.dir.join("b.log")).await;
    let v1 = control.push(&src.file("v1", "1", 1)).await.unwrap();
    control.wait_acked("node-a", v1).await;
    control.wait_acked("node-b", v1).await;
    let edge_b = b.wait_listener("edge").await;
    a.wait_listener("edge").await;

    // Control plane gone: traffic goes on.
    control.kill().await;
    for _ in 0..20 {
        assert_eq!(served(edge_b).await, ("1".into(), "1".into()));
    }

    // A proxy restarted meanwhile starts on its cached last good snapshot.
    a.kill().await;
    let a = Weir::managed(&url, "node-a", Some(&cache_a), 1, &src.dir.join("a2.log")).await;
    let edge_a = *a
        .listeners
        .get("edge")
        .expect("the cached snapshot's listener is in the ready line");
    assert_eq!(served(edge_a).await, ("1".into(), "1".into()));
    assert_eq!(control_version(&a).await, v1);

    // The desired state changes while the server is down; the restarted server (same directory,
    // same port) publishes it, and both proxies reconnect and get it.
    edit_desired(state.path(), "2", 2);
    let control = Control::start(
        state.path(),
        &addr.to_string(),
        &state.join("control-2.log"),
    )
    .await;
    assert_eq!(control.addr, addr);
    let latest = eventually(
        "the restarted server publishes the edited state",
        || async {
            let s = control.status().await?;
            let v = s["version"].as_u64()?;
            (v > v1).then_some(v)
        },
    )
    .await;
    for (node, weir) in [("node-a", &a), ("node-b", &b)] {
        control.wait_acked(node, latest).await;
        let edge = weir.wait_listener("edge").await;
        assert_eq!(served(edge).await, ("2".into(), "2".into()), "{node}");
        assert_eq!(control_version(weir).await, latest);
    }
    assert_eq!(
        b.wait_listener("edge").await,
        edge_b,
        "listener kept across swaps"
    );
}

// === readiness and the reported version in managed mode ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_ready_and_config_version_follow_the_control_plane() {
    use weir::control::wire::sha256_hex;
    let src = Source::new("managed-ready").await;
    let version_wasm = Bytes::from(std::fs::read(filter("header_rewrite.wasm")).unwrap());
    let version_hex = sha256_hex(&version_wasm);
    let limit_wasm = Bytes::from(std::fs::read(filter("rate_limit.wasm")).unwrap());
    let limit_hex = sha256_hex(&limit_wasm);
    let mut fake = FakeControl::start(
        [
            (version_hex.clone(), version_wasm),
            (limit_hex.clone(), limit_wasm),
        ]
        .into_iter()
        .collect(),
    )
    .await;
    let url = format!("http://{}", fake.addr);
    let cache = src.dir.join("cache");
    let weir = Weir::managed(&url, "node-r", Some(&cache), 1, &src.dir.join("r1.log")).await;
    let version_metric = "weir_config_version";

    // Connected, nothing sent yet: no configuration to serve.
    let (code, body) = weir.admin_get("/ready").await;
    assert_eq!(code, 503, "not ready before the first version: {body}");
    assert_eq!(weir.metric(version_metric).await, 0.0);
    assert_eq!(control_version(&weir).await, 0);

    let config = |tag: &str| {
        version_config(
            &format!("sha256:{version_hex}"),
            tag,
            1,
            "blue",
            src.blue.addr,
            src.green.addr,
        )
    };
    // The control plane's version 5 (its numbering, not the proxy's snapshot counter).
    fake.send(5, config("5"), &[("version", &version_hex)]);
    let ack = fake.ack().await;
    assert_eq!((ack.version, ack.error.as_deref()), (5, None), "{ack:?}");
    let (code, body) = weir.admin_get("/ready").await;
    assert_eq!((code, body.trim()), (200, "ready"));
    assert_eq!(weir.metric(version_metric).await, 5.0);
    assert_eq!(control_version(&weir).await, 5);
    assert_eq!(served(weir.wait_listener("edge").await).await.0, "5");

    // Version 6 builds but fails on the workers (rate_limit rejects rate 0): a NACK. The
    // reported version stays the one being served, and the proxy stays ready.
    let failing = format!(
        "{}  - name: limit\n    module: sha256:{limit_hex}\n    config: {{ rate: 0 }}\n",
        config("6").replace("filters: [version]", "filters: [version, limit]")
    );
    fake.send(
        6,
        failing,
        &[("version", &version_hex), ("limit", &limit_hex)],
    );
    let ack = fake.ack().await;
    assert_eq!(ack.version, 6);
    assert!(ack.error.is_some(), "a NACK: {ack:?}");
    assert_eq!(
        weir.metric(version_metric).await,
        5.0,
        "a NACK changes nothing"
    );
    assert_eq!(control_version(&weir).await, 5);
    assert_eq!(weir.admin_get("/ready").await.0, 200);
    assert!(
        weir.metric(r#"weir_config_swaps_total{result="rejected"}"#)
            .await
            >= 1.0
    );

    // Version 9 (the control plane may skip numbers) is applied: reported as 9, although the
    // local snapshot counter moved on differently (start, 5, the rejected 6, 9).
    fake.send(9, config("9"), &[("version", &version_hex)]);
    let ack = fake.ack().await;
    assert_eq!((ack.version, ack.error.as_deref()), (9, None), "{ack:?}");
    assert_eq!(weir.metric(version_metric).await, 9.0);
    let cfg = weir.config().await;
    assert_eq!(cfg["control_version"], 9, "{cfg}");
    assert_ne!(
        cfg["version"], 9,
        "the local snapshot version is another number: {cfg}"
    );
    assert_eq!(served(weir.wait_listener("edge").await).await.0, "9");
    weir.kill().await;
    drop(fake);

    // Restarted while the control plane is unreachable: the cached bundle is a configuration
    // to serve, so ready at once, reporting its control-plane version.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dead_url = format!("http://{dead}");
    let weir = Weir::managed(
        &dead_url,
        "node-r",
        Some(&cache),
        1,
        &src.dir.join("r2.log"),
    )
    .await;
    let (code, body) = weir.admin_get("/ready").await;
    assert_eq!((code, body.trim()), (200, "ready"), "served from the cache");
    assert_eq!(weir.metric(version_metric).await, 9.0);
    assert_eq!(control_version(&weir).await, 9);
    let edge = *weir.listeners.get("edge").expect("cached listener");
    assert_eq!(served(edge).await.0, "9");
    weir.kill().await;

    // Without a cache and with the control plane unreachable: not ready, version 0, and the
    // admin endpoint keeps answering so.
    let weir = Weir::managed(&dead_url, "node-s", None, 1, &src.dir.join("s.log")).await;
    for _ in 0..3 {
        let (code, body) = weir.admin_get("/ready").await;
        assert_eq!(code, 503, "{body}");
        assert_eq!(weir.metric(version_metric).await, 0.0);
    }
    assert!(weir.listeners.is_empty());
}
