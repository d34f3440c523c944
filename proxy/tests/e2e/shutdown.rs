//! Issue 2, point 10: SIGTERM stops accepting, lets in-flight requests finish within the
//! listener's drain timeout, and exits 0.

use crate::support::upstream::wait_until;
use crate::support::{eventually, Client, Upstream, Weir, DEADLINE};
use std::time::Duration;

fn yaml(up: &Upstream, drain: &str) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    limits: {{ drain_timeout: {drain} }}
    routes:
      - match: {{ path_prefix: / }}
        cluster: backend
        timeout: 60s
clusters:
  - name: backend
    endpoints: [{}]
"#,
        up.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let up = Upstream::start("a").await;
    let mut weir = Weir::start(&yaml(&up, "30s")).await;
    let addr = weir.addr("edge");
    let mut tasks = Vec::new();
    for _ in 0..3 {
        tasks.push(tokio::spawn(async move {
            Client::h1(addr).await.get("/hold").await
        }));
    }
    wait_until("3 requests in flight", || up.held() == 3).await;
    weir.sigterm();
    // New connections are refused (the listener is closed) while the old ones drain.
    eventually(
        "listener stops accepting",
        DEADLINE,
        Duration::from_millis(20),
        || async move { tokio::net::TcpStream::connect(addr).await.is_err() },
    )
    .await;
    up.release();
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!(
            r.status, 200,
            "in-flight request finished during drain: {r:?}"
        );
        assert_eq!(r.text(), "released");
    }
    let status = weir
        .wait_exit(DEADLINE)
        .await
        .expect("weir exits after draining");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status:?}; stderr:\n{}",
        weir.stderr_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_promptly() {
    let up = Upstream::start("a").await;
    let mut weir = Weir::start(&yaml(&up, "30s")).await;
    // An idle keep-alive connection must not hold the drain for the whole drain_timeout.
    let mut c = weir.h1("edge").await;
    assert_eq!(c.get("/").await.status, 200);
    weir.sigterm();
    let status = weir
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("idle weir exits well before drain_timeout");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", weir.stderr_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_shutdown() {
    let up = Upstream::start("a").await;
    let mut weir = Weir::start(&yaml(&up, "1s")).await;
    let addr = weir.addr("edge");
    let stuck = tokio::spawn(async move {
        let mut c = Client::h1(addr).await;
        let req = c
            .request(http::Method::GET, "/hold")
            .body(crate::support::empty())
            .expect("req");
        c.fetch(req).await.map(|r| r.status)
    });
    wait_until("request in flight", || up.held() == 1).await;
    weir.sigterm();
    let status = weir
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("weir exits after drain_timeout (1s)");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", weir.stderr_text());
    // The request that outlived the drain was cut (error or a 5xx), never answered 200.
    let res = tokio::time::timeout(DEADLINE, stuck)
        .await
        .expect("client sees the end")
        .expect("task");
    assert!(!matches!(res, Ok(200)), "{res:?}");
    up.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_http2_streams() {
    let up = Upstream::start("a").await;
    let mut weir = Weir::start(&yaml(&up, "30s")).await;
    let client = Client::h2c(weir.addr("edge")).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut c = client.h2_clone();
        tasks.push(tokio::spawn(async move { c.get("/hold").await }));
    }
    wait_until("4 streams in flight", || up.held() == 4).await;
    weir.sigterm();
    up.release();
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!(
            r.status, 200,
            "in-flight HTTP/2 stream finished during drain: {r:?}"
        );
    }
    drop(client);
    let status = weir
        .wait_exit(DEADLINE)
        .await
        .expect("weir exits after draining HTTP/2");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", weir.stderr_text());
}

/// The access log defaults to stdout (DESIGN.md §8). A parent that reads the ready line and then
/// never reads stdout again must not stall traffic or shutdown: thousands of requests (far more
/// log than a pipe holds) are all answered, and SIGTERM still exits 0 promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_stdout_stalls_neither_traffic_nor_exit() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let up = Upstream::start("a").await;
    let dir = crate::support::TempDir::new("unread-stdout");
    let config = dir.join("weir.yaml");
    // No access_log key: the default, stdout.
    std::fs::write(&config, yaml(&up, "5s")).expect("write config");
    let mut child = tokio::process::Command::new(crate::support::weir::weir_bin())
        .args([
            "run",
            "--workers",
            "1",
            "--admin",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn weir");
    let pid = child.id().expect("pid");
    // Read up to the ready line, then hold the pipe open without reading it.
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready: serde_json::Value = tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
                if v["event"] == "ready" {
                    return v;
                }
            }
        }
        panic!("stdout closed before the ready line")
    })
    .await
    .expect("ready line");
    let edge: std::net::SocketAddr = ready["listeners"]["edge"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("edge address");
    let mut c = Client::h1(edge).await;
    for i in 0..3000 {
        let r = c.get(&format!("/n/{i}")).await;
        assert_eq!(r.status, 200, "request {i}");
    }
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("weir exits although nobody reads its stdout")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    drop(lines);
}
