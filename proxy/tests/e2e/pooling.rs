//! Issue 2, point 4: upstream keep-alive reuse, bounded per endpoint; idle connections close
//! after the pool's `idle_timeout`; a connection the upstream closed is never used for a new
//! request (no spurious 502).

use crate::support::upstream::wait_until;
use crate::support::{Client, Upstream, UpstreamOpts, Weir};

fn yaml(up: &Upstream, pool: &str) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: backend
clusters:
  - name: backend
    endpoints: [{}]
{pool}
"#,
        up.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_sequential_requests_use_one_upstream_connection() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&yaml(&up, "")).await; // --workers 1
    let mut c = weir.h1("edge").await;
    for i in 0..1000 {
        let r = c.get(&format!("/seq/{i}")).await;
        assert_eq!(r.status, 200, "request {i}: {r:?}");
    }
    assert_eq!(up.requests(), 1000);
    assert_eq!(
        up.accepted(),
        1,
        "1,000 sequential requests must reuse one upstream connection"
    );

    // Sequential requests on fresh downstream connections reuse it too.
    for _ in 0..10 {
        assert_eq!(weir.h1("edge").await.get("/fresh").await.status, 200);
    }
    assert_eq!(
        up.accepted(),
        1,
        "pool is per worker, not per downstream connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connection_closes_after_idle_timeout() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&yaml(
        &up,
        "    pool: { max_idle_per_endpoint: 8, idle_timeout: 1s }",
    ))
    .await;
    let mut c = weir.h1("edge").await;
    assert_eq!(c.get("/once").await.status, 200);
    assert_eq!(up.accepted(), 1);
    // The test upstream never closes idle connections itself: this close is the proxy's.
    wait_until("the proxy closes the idle upstream connection", || {
        up.closed() == 1
    })
    .await;
    // And a later request opens a new one.
    assert_eq!(c.get("/again").await.status, 200);
    assert_eq!(up.accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_bounded_per_endpoint() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&yaml(
        &up,
        "    pool: { max_idle_per_endpoint: 2, idle_timeout: 60s }",
    ))
    .await;
    let client = Client::h2c(weir.addr("edge")).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let mut c = client.h2_clone();
        tasks.push(tokio::spawn(async move { c.get("/hold").await }));
    }
    wait_until("10 requests held upstream", || up.held() == 10).await;
    assert_eq!(
        up.accepted(),
        10,
        "HTTP/1.1 upstream: one connection per concurrent request"
    );
    up.release();
    for t in tasks {
        assert_eq!(t.await.expect("task").status, 200);
    }
    wait_until("all but 2 idle connections closed", || up.closed() >= 8).await;
    assert_eq!(up.closed(), 8, "max_idle_per_endpoint: 2 keeps exactly two");
    // The two kept connections serve the next requests.
    let mut c = weir.h1("edge").await;
    for _ in 0..5 {
        assert_eq!(c.get("/reuse").await.status, 200);
    }
    assert_eq!(up.accepted(), 10, "kept idle connections are reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_keep_alive_connections_never_yields_502() {
    // Of every three responses the upstream marks one `connection: close` and closes the
    // connection silently right after another.
    let up = UpstreamOpts::new("closer").closer().start().await;
    let weir = Weir::start(&yaml(&up, "")).await;
    let mut c = weir.h1("edge").await;
    let mut bad = Vec::new();
    for i in 0..200 {
        let r = c.get(&format!("/k/{i}")).await;
        if r.status != 200 {
            bad.push((i, r.status, r.text()));
        }
    }
    assert!(
        bad.is_empty(),
        "requests failed although the upstream was up: {bad:?}"
    );
    assert_eq!(
        up.requests(),
        200,
        "each request reached the upstream exactly once"
    );
    assert!(
        up.accepted() >= 133,
        "closed connections were not reused ({} accepted)",
        up.accepted()
    );
}

/// Cluster `limits.max_connections` / `max_pending` (Envoy's connection circuit breakers):
/// `route_timeout` bounds how long a pending request waits (`/hold` has 30s).
fn limited(up: &Upstream, max_pending: u32, route_timeout: &str) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: /hold }}
        cluster: backend
        timeout: 30s
      - match: {{ path_prefix: / }}
        cluster: backend
        timeout: {route_timeout}
clusters:
  - name: backend
    endpoints: [{}]
    limits: {{ max_connections: 1, max_pending: {max_pending} }}
"#,
        up.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_full_and_no_pending_room_is_503_uo() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&limited(&up, 0, "30s")).await;
    let addr = weir.addr("edge");
    let held = tokio::spawn(async move { Client::h1(addr).await.get("/hold").await.status });
    wait_until("request held", || up.held() == 1).await;
    // The one connection is busy and no request may wait for it.
    let r = weir.h1("edge").await.get("/second").await;
    assert_eq!(r.status, 503, "{}", r.text());
    let line = weir.wait_log("/second", |l| l["path"] == "/second").await;
    assert_eq!(line["response_flags"], "UO", "{line}");
    up.release();
    assert_eq!(held.await.unwrap(), 200);
    // The freed connection serves the next request: still one upstream connection.
    assert_eq!(weir.h1("edge").await.get("/third").await.status, 200);
    assert_eq!(up.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_request_waits_for_a_connection_not_a_new_one() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&limited(&up, 1, "500ms")).await;
    let addr = weir.addr("edge");
    let held = tokio::spawn(async move { Client::h1(addr).await.get("/hold").await.status });
    wait_until("request held", || up.held() == 1).await;
    // Room to wait: it waits for the busy connection (no second one is dialed) until the
    // route timeout, instead of being refused.
    let r = weir.h1("edge").await.get("/waits").await;
    assert_eq!(r.status, 504, "{}", r.text());
    let line = weir.wait_log("/waits", |l| l["path"] == "/waits").await;
    assert_eq!(line["response_flags"], "UT", "{line}");
    assert_eq!(up.accepted(), 1, "no connection beyond max_connections");
    up.release();
    assert_eq!(held.await.unwrap(), 200);
    assert_eq!(weir.h1("edge").await.get("/after").await.status, 200);
    assert_eq!(up.accepted(), 1);
}

/// A request that times out while waiting for the breaker never reached the endpoint: it is a
/// 504 (UT) for the client, not a failure of the endpoint for outlier detection (Envoy blames
/// a host only for requests that got a connection to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_timed_out_in_the_breaker_queue_does_not_eject_the_endpoint() {
    let up = Upstream::start("a").await;
    // The try times out (per_try_timeout) before the route does.
    let yaml = limited(&up, 4, "2s")
        .replace(
            "        timeout: 2s",
            "        timeout: 2s\n        retries: { attempts: 1, per_try_timeout: 200ms, on: [reset] }",
        )
        .replace(
            "    limits:",
            "    outlier: { consecutive_5xx: 1, interval: 1s, base_ejection: 30s, max_ejection_percent: 100 }\n    limits:",
        );
    let weir = Weir::start(&yaml).await;
    let addr = weir.addr("edge");
    let held = tokio::spawn(async move { Client::h1(addr).await.get("/hold").await.status });
    wait_until("request held", || up.held() == 1).await;
    for i in 0..3 {
        let r = weir.h1("edge").await.get(&format!("/queued/{i}")).await;
        assert_eq!(r.status, 504, "{}", r.text());
    }
    let (code, metrics) = weir.admin_get("/metrics").await;
    assert_eq!(code, 200);
    let ejections: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("weir_upstream_ejections_total") && !l.ends_with(" 0"))
        .collect();
    assert!(ejections.is_empty(), "ejected: {ejections:?}");
    up.release();
    assert_eq!(held.await.unwrap(), 200);
    assert_eq!(weir.h1("edge").await.get("/after").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_to_another_endpoint_gives_up_its_slot() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: backend
        timeout: 5s
clusters:
  - name: backend
    endpoints: [{}, {}]
    lb: round_robin
    limits: {{ max_connections: 1, max_pending: 1 }}
"#,
        a.endpoint(),
        b.endpoint()
    );
    let weir = Weir::start(&yaml).await;
    let mut c = weir.h1("edge").await;
    // Round robin: the first request goes to one endpoint and leaves its connection idle (the
    // cluster's only slot); the second goes to the other endpoint and gets the slot at once, the
    // idle connection being closed, instead of waiting for the idle timeout.
    assert_eq!(c.get("/first").await.status, 200);
    assert_eq!(c.get("/second").await.status, 200);
    assert_eq!((a.requests(), b.requests()), (1, 1));
    wait_until("the idle connection closed", || {
        a.closed() + b.closed() == 1
    })
    .await;
    assert_eq!(a.accepted() + b.accepted(), 2);
}
