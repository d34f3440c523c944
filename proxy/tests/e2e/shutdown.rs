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
