//! Issue 2, point 6: hop-by-hop headers stripped both ways, `x-forwarded-for` appended,
//! `x-forwarded-proto` set, `x-request-id` generated when absent and kept when present, no
//! `via`, Host forwarded unchanged.

use crate::support::client::raw_exchange;
use crate::support::{Upstream, Weir};

fn yaml(up: &Upstream) -> String {
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
"#,
        up.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_request_headers_are_stripped() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&yaml(&up)).await;
    let mut c = weir.h1("edge").await;
    let r2 = c
        .get_with(
            "/echo",
            &[
                ("connection", "keep-alive, x-named-hop"),
                ("x-named-hop", "secret"),
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("te", "gzip"),
                ("x-end-to-end", "kept"),
            ],
        )
        .await;
    let j = r2.json();
    let h = &j["headers"];
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "x-named-hop",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            h.get(name).is_none(),
            "hop-by-hop request header {name} reached the upstream: {h}"
        );
    }
    assert_eq!(h["x-end-to-end"], "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_are_stripped() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&yaml(&up)).await;
    let mut c = weir.h1("edge").await;
    let r = c.get("/hop").await;
    assert_eq!(r.status, 200);
    for name in ["x-hop-named", "keep-alive", "proxy-connection", "via"] {
        assert!(
            r.header(name).is_none(),
            "response header {name} leaked to the client: {:?}",
            r.headers
        );
    }
    if let Some(conn) = r.header("connection") {
        assert!(
            !conn.contains("x-hop-named"),
            "upstream Connection header forwarded: {conn}"
        );
    }
    assert_eq!(r.header("x-end-to-end").as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_request_id_and_host() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&yaml(&up)).await;
    let mut c = weir.h1("edge").await;

    let r = c.get_with("/fwd?q=1", &[]).await;
    assert_eq!(
        r.upstream_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    // HTTP/1.1 upstreams get the origin-form target, not an absolute URI.
    let j = r.json();
    assert_eq!(j["path"], "/fwd?q=1", "{j}");
    assert!(
        j["authority"].is_null(),
        "absolute-form target upstream: {j}"
    );
    assert_eq!(
        r.upstream_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    let id1 = r
        .upstream_header("x-request-id")
        .expect("x-request-id generated");
    assert!(id1.len() >= 16, "request id too short: {id1}");
    assert!(r.upstream_header("via").is_none(), "via added upstream");
    assert!(r.header("via").is_none(), "via added downstream");
    assert_eq!(
        r.upstream_header("host").as_deref(),
        Some(weir.addr("edge").to_string().as_str()),
        "host unchanged"
    );

    let r = c.get_with("/fwd", &[]).await;
    let id2 = r
        .upstream_header("x-request-id")
        .expect("x-request-id generated");
    assert_ne!(id1, id2, "request ids are unique");

    let r = c
        .get_with(
            "/fwd",
            &[
                ("x-forwarded-for", "10.1.2.3"),
                ("x-request-id", "client-chosen-id"),
            ],
        )
        .await;
    assert_eq!(
        r.upstream_header("x-forwarded-for").as_deref(),
        Some("10.1.2.3, 127.0.0.1"),
        "client IP appended"
    );
    assert_eq!(
        r.upstream_header("x-request-id").as_deref(),
        Some("client-chosen-id"),
        "request id kept"
    );

    // An arbitrary Host goes through untouched.
    let mut req = c.request(http::Method::GET, "/host");
    req.headers_mut()
        .expect("headers")
        .insert("host", http::HeaderValue::from_static("shop.example.com"));
    let r = c
        .fetch(req.body(crate::support::empty()).expect("req"))
        .await
        .expect("request");
    assert_eq!(
        r.upstream_header("host").as_deref(),
        Some("shop.example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_http10_request_is_proxied() {
    // HTTP/1.0 without Host still reaches the catch-all route; the answer closes the connection.
    let up = Upstream::start("a").await;
    let weir = Weir::start(&yaml(&up)).await;
    let out = raw_exchange(weir.addr("edge"), b"GET /old HTTP/1.0\r\n\r\n", 1 << 20).await;
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{out}"
    );
    assert!(out.contains("x-upstream: a"), "{out}");
}
