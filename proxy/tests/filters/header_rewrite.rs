//! header_rewrite through weir: `%source.address%` and `%request.id%` reach the upstream,
//! response rules reach the client, path_prefix_rewrite changes the upstream path.

use crate::one_filter_yaml;
use crate::support::{Upstream, Weir};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_and_prefix_rewrite_reach_the_upstream() {
    let up = Upstream::start("up").await;
    let cfg = json!({
        "request": {"set": {"x-client": "%source.address%", "x-rid": "%request.id%",
                            "x-env": "prod"},
                    "remove": ["x-debug"]},
        "response": {"set": {"x-request-id-echo": "%request.id%"}, "remove": ["x-upstream"]},
        "path_prefix_rewrite": {"prefix": "/api/v1/", "replacement": "/"}
    });
    let weir = Weir::start(&one_filter_yaml(&up.endpoint(), "header_rewrite", &cfg)).await;
    let mut c = weir.h1("edge").await;

    let r = c
        .get_with(
            "/api/v1/orders?id=7",
            &[("x-request-id", "rid-42"), ("x-debug", "1")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["path"], "/orders?id=7", "{body}");
    let client = r.upstream_header("x-client").expect("x-client");
    let addr: std::net::SocketAddr = client.parse().expect("source.address is ip:port");
    assert!(addr.ip().is_loopback(), "{client}");
    assert_ne!(addr.port(), 0);
    assert_eq!(r.upstream_header("x-rid").as_deref(), Some("rid-42"));
    assert_eq!(r.upstream_header("x-env").as_deref(), Some("prod"));
    assert_eq!(r.upstream_header("x-debug"), None);
    assert_eq!(r.header("x-request-id-echo").as_deref(), Some("rid-42"));
    assert_eq!(r.header("x-upstream"), None, "response header removed");

    // Without a client x-request-id, weir makes one: the filter sees the same id the
    // upstream gets.
    let r = c.get("/other").await;
    let body = r.json();
    assert_eq!(body["path"], "/other");
    let rid = r.upstream_header("x-rid").expect("x-rid");
    assert!(!rid.is_empty());
    assert_eq!(
        r.upstream_header("x-request-id").as_deref(),
        Some(rid.as_str())
    );
}

/// The proxy's own reply when the upstream fails goes through the response phases too (as
/// Envoy's local replies go through its encoder filters): a response header the filter sets is
/// on a 503 from a dead upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_rules_apply_to_the_proxys_reply_for_a_dead_upstream() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    }; // closed: connections are refused
    let cfg = json!({ "response": {"set": {"x-proxied-by": "weir", "x-details": "%response.code_details%"}} });
    let weir = Weir::start(&one_filter_yaml(&dead, "header_rewrite", &cfg)).await;
    let r = weir.h1("edge").await.get("/x").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("x-proxied-by").as_deref(), Some("weir"), "{r:?}");
    assert_eq!(
        r.header("x-details").as_deref(),
        Some("upstream_connect_failure"),
        "{r:?}"
    );
}

/// As Envoy: changing the request headers clears the route cache, so the route is picked again
/// on the headers the filter left — a header it sets can route the request to a canary, and a
/// path it rewrites to one no route matches is a 404 `NR` (through the response phases).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_the_filter_sets_reroutes_the_request() {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let cfg = json!({
        "request": {"set": {"x-canary": "true"}},
        "response": {"set": {"x-proxied-by": "weir", "x-details": "%response.code_details%"}},
        "path_prefix_rewrite": {"prefix": "/old/", "replacement": "/gone/"}
    });
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [f]
    routes:
      - name: to-canary
        match: {{ path_prefix: /api, headers: {{ x-canary: "true" }} }}
        cluster: canary
      - name: api
        match: {{ path_prefix: /api }}
        cluster: stable
      - name: old
        match: {{ path_prefix: /old }}
        cluster: stable
clusters:
  - name: stable
    endpoints: [{stable}]
  - name: canary
    endpoints: [{canary}]
filters:
  - name: f
    module: {module}
    config: {cfg}
    limits: {{ callback_deadline: 1s }}
"#,
        stable = stable.endpoint(),
        canary = canary.endpoint(),
        module = crate::module("header_rewrite"),
    );
    let weir = Weir::start(&yaml).await;
    let mut c = weir.h1("edge").await;
    for i in 0..3 {
        let r = c.get(&format!("/api/{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-upstream").as_deref(), Some("canary"), "{r:?}");
        assert_eq!(r.upstream_header("x-canary").as_deref(), Some("true"));
    }
    assert_eq!(stable.requests(), 0);
    let r = c.get("/old/thing").await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("x-proxied-by").as_deref(), Some("weir"), "{r:?}");
    assert_eq!(r.header("x-details").as_deref(), Some("route_not_found"));
    assert_eq!(stable.requests(), 0);
    let log = weir.wait_log("the 404", |v| v["status"] == 404).await;
    assert_eq!(log["response_flags"], "NR", "{log}");
}
