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
