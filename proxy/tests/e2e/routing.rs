//! Issue 2, point 2: route matching (path exact / prefix / regex, method, headers exact /
//! regex / present, query, virtual hosts with wildcards), first match wins, and a weighted
//! split of 10,000 requests within ±2 points of its weights.

use crate::support::{Client, Upstream, Weir};
use std::collections::HashMap;

async fn upstreams(names: &[&str]) -> Vec<Upstream> {
    let mut v = Vec::new();
    for n in names {
        v.push(Upstream::start(n).await);
    }
    v
}

fn clusters(ups: &[Upstream]) -> String {
    let mut s = String::from("clusters:\n");
    for u in ups {
        s.push_str(&format!(
            "  - name: {}\n    endpoints: [{}]\n",
            u.name,
            u.endpoint()
        ));
    }
    s
}

/// (method, path, request headers, upstream that must answer)
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_kinds_and_first_match_wins() {
    let ups = upstreams(&[
        "exact",
        "prefix",
        "regex",
        "method",
        "hdr_exact",
        "hdr_regex",
        "hdr_present",
        "query",
        "vhost",
        "wild",
        "fallback",
    ])
    .await;
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: exact
        match: {{ path: /exact }}
        cluster: exact
      - name: method
        match: {{ path_prefix: /m, method: [DELETE, PUT] }}
        cluster: method
      - name: hdr_exact
        match: {{ path_prefix: /h, headers: {{ x-canary: "true" }} }}
        cluster: hdr_exact
      - name: hdr_regex
        match: {{ path_prefix: /h, headers: {{ x-version: {{ regex: "^v[0-9]+$" }} }} }}
        cluster: hdr_regex
      - name: hdr_present
        match: {{ path_prefix: /h, headers: {{ x-debug: {{ present: true }} }} }}
        cluster: hdr_present
      - name: query
        match: {{ path_prefix: /q, query: {{ mode: beta }} }}
        cluster: query
      - name: vhost
        match: {{ path_prefix: /, hosts: [api.example.com] }}
        cluster: vhost
      - name: wild
        match: {{ path_prefix: /, hosts: ["*.example.com"] }}
        cluster: wild
      - name: regex
        match: {{ path_regex: "^/items/[0-9]+$" }}
        cluster: regex
      - name: prefix
        match: {{ path_prefix: /exact }}
        cluster: prefix
      - name: fallback
        match: {{ path_prefix: / }}
        cluster: fallback
{}"#,
        clusters(&ups)
    );
    let weir = Weir::start(&yaml).await;
    let mut c = weir.h1("edge").await;
    let cases: &[Case] = &[
        ("GET", "/exact", &[], "exact"),
        ("GET", "/exact/more", &[], "prefix"),
        ("GET", "/exactly", &[], "prefix"),
        ("GET", "/items/42", &[], "regex"),
        ("GET", "/items/abc", &[], "fallback"),
        ("GET", "/items/42/x", &[], "fallback"),
        ("DELETE", "/m/1", &[], "method"),
        ("PUT", "/m/1", &[], "method"),
        ("GET", "/m/1", &[], "fallback"),
        ("GET", "/h", &[("x-canary", "true")], "hdr_exact"),
        ("GET", "/h", &[("x-canary", "false")], "fallback"),
        ("GET", "/h", &[("x-version", "v12")], "hdr_regex"),
        ("GET", "/h", &[("x-version", "v12b")], "fallback"),
        ("GET", "/h", &[("x-debug", "")], "hdr_present"),
        (
            "GET",
            "/h",
            &[("x-debug", "1"), ("x-canary", "true")],
            "hdr_exact",
        ), // first match wins
        ("GET", "/q?mode=beta", &[], "query"),
        ("GET", "/q?x=1&mode=beta", &[], "query"),
        ("GET", "/q?mode=alpha", &[], "fallback"),
        ("GET", "/q", &[], "fallback"),
        ("GET", "/anything", &[("host", "api.example.com")], "vhost"),
        ("GET", "/anything", &[("host", "shop.example.com")], "wild"),
        ("GET", "/anything", &[("host", "a.b.example.com")], "wild"),
        ("GET", "/anything", &[("host", "example.com")], "fallback"),
        ("GET", "/anything", &[("host", "other.test")], "fallback"),
        ("GET", "/exact", &[("host", "api.example.com")], "exact"), // earlier route wins over vhost
    ];
    for (method, path, headers, want) in cases {
        let mut b = c.request(method.parse().expect("method"), path);
        for (k, v) in headers.iter() {
            if *k == "host" {
                b.headers_mut().expect("headers").remove("host");
            }
            b = b.header(*k, *v);
        }
        let req = b.body(crate::support::empty()).expect("request");
        let r = c
            .fetch(req)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(r.status, 200, "{method} {path} {headers:?}: {r:?}");
        assert_eq!(
            r.upstream(),
            *want,
            "{method} {path} {headers:?} routed to the wrong cluster"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_authority_selects_virtual_host() {
    // Over HTTP/2 the virtual host comes from :authority.
    let ups = upstreams(&["vhost", "fallback"]).await;
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: /, hosts: ["*.example.com"] }}
        cluster: vhost
      - match: {{ path_prefix: / }}
        cluster: fallback
{}"#,
        clusters(&ups)
    );
    let weir = Weir::start(&yaml).await;
    let mut c = Client::h2c(weir.addr("edge")).await;
    let req = http::Request::get("http://www.example.com/x")
        .body(crate::support::empty())
        .expect("req");
    let r = c.fetch(req).await.expect("h2 request");
    assert_eq!(r.upstream(), "vhost");
    let req = http::Request::get("http://other.test/x")
        .body(crate::support::empty())
        .expect("req");
    let r = c.fetch(req).await.expect("h2 request");
    assert_eq!(r.upstream(), "fallback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_of_10000_requests_within_two_points() {
    let ups = upstreams(&["v1", "v2", "v3"]).await;
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        split: {{ v1: 70, v2: 20, v3: 10 }}
{}"#,
        clusters(&ups)
    );
    let weir = Weir::start(&yaml).await;
    let addr = weir.addr("edge");
    const CONNS: usize = 4;
    const PER_CONN: usize = 2500;
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::h1(addr).await;
            let mut counts: HashMap<String, usize> = HashMap::new();
            for _ in 0..PER_CONN {
                let r = c.get("/split").await;
                assert_eq!(r.status, 200, "{r:?}");
                *counts.entry(r.upstream()).or_default() += 1;
            }
            counts
        }));
    }
    let mut total: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        for (k, v) in t.await.expect("client task") {
            *total.entry(k).or_default() += v;
        }
    }
    let n = (CONNS * PER_CONN) as f64;
    for (name, weight) in [("v1", 70.0), ("v2", 20.0), ("v3", 10.0)] {
        let pct = 100.0 * *total.get(name).unwrap_or(&0) as f64 / n;
        assert!(
            (pct - weight).abs() <= 2.0,
            "{name}: {pct:.2}% vs weight {weight}% ({total:?})"
        );
    }
}

/// Every request to `primary`, mirrored to `shadow`.
fn mirrored(ups: &[Upstream]) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: primary
        mirror: {{ cluster: shadow, percent: 100 }}
{}"#,
        clusters(ups)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_copies_requests_to_the_shadow_cluster() {
    let ups = upstreams(&["primary", "shadow"]).await;
    let yaml = mirrored(&ups);
    let weir = Weir::start(&yaml).await;
    let mut c = weir.h1("edge").await;
    for _ in 0..10 {
        let r = c.get("/mirrored").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.upstream(),
            "primary",
            "the client gets the primary's answer"
        );
    }
    let shadow = &ups[1];
    crate::support::upstream::wait_until("shadow received every request", || {
        shadow.requests() == 10
    })
    .await;
    assert_eq!(ups[0].requests(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_copies_a_request_body_too() {
    // As Envoy: the body is kept (up to 1 MiB) and sent to the shadow as well.
    let ups = upstreams(&["primary", "shadow"]).await;
    let yaml = mirrored(&ups);
    let weir = Weir::start(&yaml).await;
    let mut c = weir.h1("edge").await;
    for _ in 0..3 {
        let req = c
            .request(http::Method::POST, "/upload")
            .body(crate::support::full(vec![b'm'; 3000]))
            .expect("req");
        let r = c.fetch(req).await.expect("response");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "3000");
        assert_eq!(r.upstream(), "primary");
    }
    let shadow = &ups[1];
    crate::support::upstream::wait_until("the shadow read every body", || {
        shadow.uploaded() == 9000
    })
    .await;
    assert_eq!(shadow.requests(), 3);
    assert_eq!(ups[0].uploaded(), 9000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_rewrite_replaces_the_host_header() {
    let ups = upstreams(&["backend"]).await;
    let yaml = format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: /rewrite }}
        cluster: backend
        host_rewrite: backend.internal
      - match: {{ path_prefix: / }}
        cluster: backend
{}"#,
        clusters(&ups)
    );
    let weir = Weir::start(&yaml).await;
    let mut c = weir.h1("edge").await;
    let r = c.get_with("/rewrite", &[]).await;
    assert_eq!(
        r.upstream_header("host").as_deref(),
        Some("backend.internal")
    );
    let r = c.get_with("/plain", &[]).await;
    assert_eq!(
        r.upstream_header("host"),
        Some(weir.addr("edge").to_string()),
        "without host_rewrite the Host is forwarded unchanged"
    );
}
