//! Issue 2, point 7: errors mapped in one place, with Envoy's response flags in the access
//! log: no route 404 (NR); no endpoint reachable 503 (UF / UH); route timeout 504 (UT);
//! malformed request 400; headers over the limit 431; body over the limit 413; upstream
//! reset 502 (UC); exhausted retries keep the last status and add URX; a slow header sender is
//! cut off by the header-read timeout without holding the worker.

use crate::support::client::raw_exchange;
use crate::support::{dead_addr, eventually, full, Client, Upstream, UpstreamOpts, Weir, DEADLINE};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn flags_of(v: &serde_json::Value) -> String {
    v["response_flags"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_nr() {
    let up = Upstream::start("a").await;
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: /api }}
        cluster: backend
clusters:
  - name: backend
    endpoints: [{}]
"#,
        up.endpoint()
    );
    let weir = Weir::start(&yaml).await;
    let mut c = weir.h1("edge").await;
    let r = c.get("/nowhere").await;
    assert_eq!(r.status, 404);
    assert!(r.header("x-upstream").is_none());
    let log = weir.wait_log("404", |v| v["path"] == "/nowhere").await;
    assert_eq!(log["status"], 404);
    assert!(flags_of(&log).contains("NR"), "{log}");
    assert_eq!(log["listener"], "edge");
    for key in [
        "start_time",
        "listener",
        "route",
        "cluster",
        "method",
        "authority",
        "path",
        "protocol",
        "status",
        "response_flags",
        "bytes_received",
        "bytes_sent",
        "duration_ms",
        "upstream_host",
        "request_id",
    ] {
        assert!(
            log.get(key).is_some(),
            "access log entry lacks {key}: {log}"
        );
    }
    // The connection stays usable after a local reply.
    assert_eq!(c.get("/api/ok").await.status, 200);
    let ok = weir.wait_log("200", |v| v["path"] == "/api/ok").await;
    assert_eq!(ok["response_flags"], "-");
    assert_eq!(ok["cluster"], "backend");
    assert_eq!(ok["upstream_host"], up.endpoint());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_is_503_uf() {
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: dead
clusters:
  - name: dead
    endpoints: [{}]
    connect_timeout: 1s
"#,
        dead_addr()
    );
    let weir = Weir::start(&yaml).await;
    let r = weir.h1("edge").await.get("/x").await;
    assert_eq!(r.status, 503, "{r:?}");
    let log = weir.wait_log("503", |v| v["status"] == 503).await;
    assert!(flags_of(&log).contains("UF"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_endpoints_are_503_uh() {
    let up = Upstream::start("sick").await;
    up.set_health(500);
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: sick
clusters:
  - name: sick
    endpoints: [{}]
    health_check: {{ path: /healthz, interval: 100ms, timeout: 1s, unhealthy: 1, healthy: 1 }}
"#,
        up.endpoint()
    );
    let weir = Weir::start(&yaml).await;
    let mut c = weir.h1("edge").await;
    // Health checking is periodic: wait (bounded) until the endpoint is marked down.
    eventually(
        "health check marks the endpoint unhealthy",
        DEADLINE,
        Duration::from_millis(100),
        || {
            let addr = weir.addr("edge");
            async move { Client::h1(addr).await.get("/probe").await.status == 503 }
        },
    )
    .await;
    let r = c.get("/after").await;
    assert_eq!(r.status, 503);
    let log = weir.wait_log("503 UH", |v| v["path"] == "/after").await;
    assert!(flags_of(&log).contains("UH"), "{log}");
    // And it comes back once healthy.
    up.set_health(200);
    eventually(
        "health check marks the endpoint healthy again",
        DEADLINE,
        Duration::from_millis(100),
        || {
            let addr = weir.addr("edge");
            async move { Client::h1(addr).await.get("/probe").await.status == 200 }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_is_504_ut() {
    let up = Upstream::start("stuck").await;
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: stuck
        timeout: 300ms
clusters:
  - name: stuck
    endpoints: [{}]
"#,
        up.endpoint()
    );
    let weir = Weir::start(&yaml).await;
    let start = Instant::now();
    let r = weir.h1("edge").await.get("/hold").await;
    assert_eq!(r.status, 504, "{r:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "timeout took {:?}",
        start.elapsed()
    );
    let log = weir.wait_log("504", |v| v["status"] == 504).await;
    assert!(flags_of(&log).contains("UT"), "{log}");
    up.release();
}

fn limits_yaml(up: &Upstream) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    limits: {{ max_request_headers: 8KiB, max_request_body: 1KiB, header_read_timeout: 500ms }}
    routes:
      - match: {{ path_prefix: / }}
        cluster: backend
clusters:
  - name: backend
    endpoints: [{}]
"#,
        up.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_is_400() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&limits_yaml(&up)).await;
    let out = raw_exchange(weir.addr("edge"), b"THIS IS NOT HTTP\r\n\r\n", 1 << 16).await;
    assert!(
        out.starts_with("HTTP/1.1 400"),
        "malformed request answered {out:?}"
    );
    let out = raw_exchange(
        weir.addr("edge"),
        b"GET / HTTP/1.1\r\nHost: a\r\nbad header line\r\n\r\n",
        1 << 16,
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 400"),
        "bad header line answered {out:?}"
    );
    assert_eq!(up.requests(), 0, "nothing malformed reaches the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_limit_are_431() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&limits_yaml(&up)).await;
    let big = "v".repeat(16 * 1024);
    let req = format!("GET /big HTTP/1.1\r\nHost: a\r\nx-big: {big}\r\n\r\n");
    let out = raw_exchange(weir.addr("edge"), req.as_bytes(), 1 << 16).await;
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "16 KiB of headers with an 8 KiB limit answered {:?}",
        &out[..out.len().min(200)]
    );
    // Just under the limit passes.
    let ok = "v".repeat(4 * 1024);
    let r = weir
        .h1("edge")
        .await
        .get_with("/fits", &[("x-big", &ok)])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_limit_is_413() {
    let up = Upstream::start("sink").await;
    let weir = Weir::start(&limits_yaml(&up)).await;
    let mut c = weir.h1("edge").await;
    let req = c
        .request(http::Method::POST, "/upload")
        .body(full(vec![b'x'; 4096]))
        .expect("req");
    let r = c.fetch(req).await.expect("response");
    assert_eq!(r.status, 413, "{r:?}");
    let mut c = weir.h1("edge").await;
    let req = c
        .request(http::Method::POST, "/upload")
        .body(full(vec![b'x'; 512]))
        .expect("req");
    let r = c.fetch(req).await.expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "512");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_limit_is_413() {
    let up = Upstream::start("sink").await;
    let weir = Weir::start(&limits_yaml(&up)).await;
    let mut req =
        b"POST /upload HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"400\r\n");
        req.extend_from_slice(&[b'y'; 1024]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let out = raw_exchange(weir.addr("edge"), &req, 1 << 16).await;
    assert!(
        out.starts_with("HTTP/1.1 413"),
        "4 KiB chunked body with a 1 KiB limit answered {out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_is_502() {
    let up = UpstreamOpts::new("rst").reset().start().await;
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: rst
clusters:
  - name: rst
    endpoints: [{}]
"#,
        up.endpoint()
    );
    let weir = Weir::start(&yaml).await;
    let r = weir.h1("edge").await.get("/boom").await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(up.requests() >= 1);
    let log = weir.wait_log("502", |v| v["status"] == 502).await;
    assert!(flags_of(&log).contains("UC"), "upstream reset flag: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_keep_last_status_and_add_urx() {
    let up = Upstream::start("flaky").await;
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: flaky
        retries: {{ attempts: 2, per_try_timeout: 2s, on: [5xx] }}
clusters:
  - name: flaky
    endpoints: [{}]
"#,
        up.endpoint()
    );
    let weir = Weir::start(&yaml).await;
    let r = weir.h1("edge").await.get("/status/503").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        matches!(up.requests(), 2 | 3),
        "attempts: 2 → {} upstream requests",
        up.requests()
    );
    let log = weir.wait_log("503", |v| v["status"] == 503).await;
    assert!(flags_of(&log).contains("URX"), "{log}");
    // A 404 is not retried on `5xx`.
    let before = up.requests();
    let r = weir.h1("edge").await.get("/status/404").await;
    assert_eq!(r.status, 404);
    assert_eq!(up.requests(), before + 1);
}

/// Cluster `half`: a dead endpoint and `up`, round robin, behind a route retrying `attempts`
/// times on `on`.
fn half_dead(up: &Upstream, attempts: u32, on: &str) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: half
        retries: {{ attempts: {attempts}, on: [{on}] }}
clusters:
  - name: half
    endpoints: [{dead}, {alive}]
    lb: round_robin
    connect_timeout: 1s
"#,
        dead = dead_addr(),
        alive = up.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_on_another_endpoint() {
    // As Envoy's `retry_on`: `5xx`, `gateway-error` and `reset` take a failed connect too.
    let up = Upstream::start("alive").await;
    for on in ["connect-failure", "5xx", "gateway-error", "reset"] {
        let weir = Weir::start(&half_dead(&up, 3, on)).await;
        let mut c = weir.h1("edge").await;
        for i in 0..6 {
            let r = c.get(&format!("/r/{i}")).await;
            assert_eq!(r.status, 200, "on: [{on}], request {i}: {r:?}");
        }
    }
    assert_eq!(up.requests(), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_a_body_are_retried_with_the_whole_body() {
    // As Envoy: a body is kept (up to 1 MiB) so that a retry sends it again; a longer one is
    // sent once.
    let up = Upstream::start("alive").await;
    let yaml = half_dead(&up, 2, "connect-failure");
    let weir = Weir::start(&yaml).await;
    let mut c = weir.h1("edge").await;
    for i in 0..6 {
        let req = c
            .request(http::Method::POST, "/upload")
            .body(full(vec![b'r'; 10_000]))
            .expect("req");
        let r = c.fetch(req).await.expect("response");
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(r.text(), "10000", "request {i}");
    }
    assert_eq!(up.uploaded(), 60_000);
    // Over the limit: sent once, to whichever endpoint comes; the live one reads it all.
    // (The dead endpoint's 503 may come while the client still sends, which then sees its
    // connection closed: each big body gets a connection of its own.)
    let mut big = 0;
    for _ in 0..2 {
        let mut c = weir.h1("edge").await;
        let req = c
            .request(http::Method::POST, "/upload")
            .body(full(vec![b'b'; 2 << 20]))
            .expect("req");
        match c.fetch(req).await {
            Ok(r) if r.status == 200 => {
                assert_eq!(r.text(), (2 << 20).to_string());
                big += 1;
            }
            Ok(r) => assert_eq!(r.status, 503, "{r:?}"),
            Err(_) => {}
        }
    }
    assert_eq!(
        big, 1,
        "round robin: one of two big bodies met the dead endpoint"
    );
    assert_eq!(up.uploaded(), 60_000 + (2 << 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_try_timeout_is_retried_under_reset() {
    // Envoy's `reset` covers an upstream that does not answer in time (a read timeout).
    let fast = Upstream::start("fast").await;
    fast.release();
    let stuck = Upstream::start("stuck").await;
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: both
        retries: {{ attempts: 2, per_try_timeout: 300ms, on: [reset] }}
clusters:
  - name: both
    endpoints: [{}, {}]
    lb: round_robin
"#,
        stuck.endpoint(),
        fast.endpoint()
    );
    let weir = Weir::start(&yaml).await;
    let mut c = weir.h1("edge").await;
    for i in 0..4 {
        let r = c.get("/hold").await;
        assert_eq!(r.status, 200, "request {i}: {r:?}");
        assert_eq!(
            r.header("x-upstream").as_deref(),
            Some("fast"),
            "request {i}"
        );
    }
    assert!(
        stuck.held() >= 1,
        "round robin sent no try to the stuck endpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_sender_is_cut_off_without_holding_the_worker() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&limits_yaml(&up)).await; // one worker, header_read_timeout 500ms
    let mut slow = tokio::net::TcpStream::connect(weir.addr("edge"))
        .await
        .expect("connect");
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n")
        .await
        .expect("partial head");
    // While the slow client dawdles, the (only) worker serves others.
    let r = weir.h1("edge").await.get("/meanwhile").await;
    assert_eq!(r.status, 200);
    // The proxy closes the slow connection (possibly after a 408) well before our deadline.
    let start = Instant::now();
    let mut buf = Vec::new();
    let res = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(
        res.is_ok(),
        "slow header sender still connected after 10s (header_read_timeout 500ms)"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "unexpected answer to a slow sender: {text:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(
        up.requests(),
        1,
        "the incomplete request never reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_are_retried_then_502_with_urx() {
    let up = UpstreamOpts::new("rst").reset().start().await;
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: rst
        retries: {{ attempts: 2, on: [reset] }}
clusters:
  - name: rst
    endpoints: [{}]
"#,
        up.endpoint()
    );
    let weir = Weir::start(&yaml).await;
    let r = weir.h1("edge").await.get("/boom").await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(
        matches!(up.requests(), 2 | 3),
        "attempts: 2 on reset → {} tries",
        up.requests()
    );
    let log = weir.wait_log("502", |v| v["status"] == 502).await;
    let flags = flags_of(&log);
    assert!(flags.contains("URX"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_downstream_connection_is_closed_after_idle_timeout() {
    let up = Upstream::start("a").await;
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    limits: {{ idle_timeout: 500ms }}
    routes:
      - match: {{ path_prefix: / }}
        cluster: backend
clusters:
  - name: backend
    endpoints: [{}]
"#,
        up.endpoint()
    );
    let weir = Weir::start(&yaml).await;
    let mut s = tokio::net::TcpStream::connect(weir.addr("edge"))
        .await
        .expect("connect");
    s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("request");
    // Read the whole response, then the proxy must close the idle keep-alive connection.
    let mut buf = Vec::new();
    let res = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(
        res.is_ok(),
        "idle connection still open 10s after a 500ms idle_timeout"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}
