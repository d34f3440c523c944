//! `weir demo`: two in-process upstreams, the proxy on an embedded config with the built-in
//! filters (from `target/filters/`, built by `scripts/build-filters.sh`), and a tour of traffic
//! that prints what happens: routing, a weighted split, a canary header, filters adding headers,
//! API-key auth, rate limiting, fault injection, no route, a dead upstream, and the metrics.

use crate::app::{Proxy, StartOptions};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::path::Path;

const CONFIG: &str = r#"
access_log: { path: "off" }   # the demo prints its own account of each request
listeners:
  - name: edge
    address: 127.0.0.1:0
    filters: [headers]
    routes:
      - name: orders-canary
        match: { path_prefix: /orders, headers: { x-canary: "true" } }
        cluster: orders-v2
      - name: orders
        match: { path_prefix: /orders }
        split: { orders-v1: 80, orders-v2: 20 }
      - name: api
        match: { path_prefix: /api }
        cluster: orders-v1
        filters: [auth, limit]
      - name: chaos
        match: { path_prefix: /chaos }
        cluster: orders-v1
        filters: [chaos]
      - name: dead
        match: { path_prefix: /dead }
        cluster: dead
        timeout: 2s
clusters:
  - name: orders-v1
    endpoints: [V1]
  - name: orders-v2
    endpoints: [V2]
  - name: dead
    endpoints: [127.0.0.1:1]
filters:
  - name: headers
    module: FILTERS/header_rewrite.wasm
    config: { request: { set: { x-env: demo } }, response: { set: { x-proxy: weir } } }
  - name: auth
    module: FILTERS/auth.wasm
    config: { api_keys: { header: x-api-key, keys: { demo-key: alice } } }
  - name: limit
    module: FILTERS/rate_limit.wasm
    config: { rate: 3, per: minute, burst: 3, key: "header:x-api-key" }
  - name: chaos
    module: FILTERS/fault.wasm
    config: { abort: { status: 503, percent: 50 } }
"#;

type DemoClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

async fn get(
    client: &DemoClient,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let mut req = http::Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = url.parse().expect("demo URLs are valid");
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("valid name"),
            http::HeaderValue::from_str(v).expect("valid value"),
        );
    }
    match client.request(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, headers, String::from_utf8_lossy(&body).into_owned())
        }
        Err(e) => (0, http::HeaderMap::new(), e.to_string()),
    }
}

fn hv<'a>(h: &'a http::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-")
}

/// Runs the demo; returns the exit code.
pub fn demo() -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir demo: {e}");
            return 1;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("weir demo: {e}");
            1
        }
    }
}

async fn run() -> Result<(), String> {
    let filters_dir = std::env::var("WEIR_FILTERS_DIR").unwrap_or_else(|_| "target/filters".into());
    let v1 = crate::bench::upstream::spawn("orders-v1")
        .await
        .map_err(|e| e.to_string())?;
    let v2 = crate::bench::upstream::spawn("orders-v2")
        .await
        .map_err(|e| e.to_string())?;
    println!("== upstreams: orders-v1 on {v1}, orders-v2 on {v2}");
    let yaml = CONFIG
        .replace("V1", &v1.to_string())
        .replace("V2", &v2.to_string())
        .replace("FILTERS", &filters_dir);
    let mut cfg = crate::config::load_str("demo.yaml", &yaml).map_err(|e| e.to_string())?;
    let missing: Vec<String> = cfg
        .filters
        .iter()
        .filter(|f| !Path::new(&f.module).exists())
        .map(|f| f.name.clone())
        .collect();
    if !missing.is_empty() {
        println!(
            "!! filters not built ({}): run scripts/build-filters.sh; the demo goes on without them",
            missing.join(", ")
        );
        cfg.filters.retain(|f| !missing.contains(&f.name));
        for l in &mut cfg.listeners {
            l.filters.retain(|f| !missing.contains(f));
            for r in &mut l.routes {
                r.filters.retain(|f| !missing.contains(f));
            }
        }
    }
    let proxy = Proxy::start(
        cfg,
        Path::new("."),
        StartOptions {
            workers: Some(2),
            admin: Some("127.0.0.1:0".into()),
            node: "demo".into(),
            config_path: None,
        },
    )
    .await
    .map_err(|e| e.join("\n"))?;
    let edge = proxy.listener("edge").ok_or("no edge listener")?;
    let admin = proxy.admin.ok_or("no admin")?;
    println!("== weir is up: listener edge on {edge}, admin on {admin}, 2 workers");
    let client: DemoClient = Client::builder(TokioExecutor::new()).build_http();
    let base = format!("http://{edge}");

    println!("\n-- 1. a request through the header_rewrite filter");
    let (s, h, body) = get(&client, &format!("{base}/orders/42"), &[]).await;
    let seen: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    println!(
        "GET /orders/42 -> {s} from {}; upstream saw x-env={} x-request-id={} x-forwarded-for={}; client got x-proxy={}",
        hv(&h, "x-upstream"),
        seen["headers"]["x-env"].as_str().unwrap_or("-"),
        seen["headers"]["x-request-id"].as_str().unwrap_or("-"),
        seen["headers"]["x-forwarded-for"].as_str().unwrap_or("-"),
        hv(&h, "x-proxy")
    );

    println!("\n-- 2. weighted split orders-v1: 80 / orders-v2: 20 over 200 requests");
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..200 {
        let (_, h, _) = get(&client, &format!("{base}/orders"), &[]).await;
        *counts.entry(hv(&h, "x-upstream").to_string()).or_default() += 1;
    }
    println!("{counts:?}");

    println!("\n-- 3. canary by header (x-canary: true) always reaches orders-v2");
    let mut canary: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..20 {
        let (_, h, _) = get(&client, &format!("{base}/orders"), &[("x-canary", "true")]).await;
        *canary.entry(hv(&h, "x-upstream").to_string()).or_default() += 1;
    }
    println!("{canary:?}");

    println!("\n-- 4. API-key auth and rate limiting (3 per minute per key) on /api");
    let (s, h, _) = get(&client, &format!("{base}/api/orders"), &[]).await;
    println!(
        "no key            -> {s} www-authenticate={}",
        hv(&h, "www-authenticate")
    );
    let (s, _, _) = get(
        &client,
        &format!("{base}/api/orders"),
        &[("x-api-key", "wrong")],
    )
    .await;
    println!("wrong key         -> {s}");
    for i in 1..=5 {
        let (s, h, _) = get(
            &client,
            &format!("{base}/api/orders"),
            &[("x-api-key", "demo-key")],
        )
        .await;
        println!(
            "demo-key, try {i}   -> {s} x-ratelimit-remaining={} retry-after={}",
            hv(&h, "x-ratelimit-remaining"),
            hv(&h, "retry-after")
        );
    }

    println!("\n-- 5. fault injection: abort 50% with 503 on /chaos over 100 requests");
    let mut faults: BTreeMap<u16, u32> = BTreeMap::new();
    for _ in 0..100 {
        let (s, _, _) = get(&client, &format!("{base}/chaos"), &[]).await;
        *faults.entry(s).or_default() += 1;
    }
    println!("{faults:?}");

    println!("\n-- 6. errors mapped in one place");
    let (s, _, b) = get(&client, &format!("{base}/nowhere"), &[]).await;
    println!("GET /nowhere (no route)        -> {s} {}", b.trim());
    let (s, _, b) = get(&client, &format!("{base}/dead"), &[]).await;
    println!("GET /dead (upstream refused)   -> {s} {}", b.trim());

    println!("\n-- 7. metrics (admin /metrics, excerpt)");
    let (_, _, metrics) = get(&client, &format!("http://{admin}/metrics"), &[]).await;
    for line in metrics
        .lines()
        .filter(|l| {
            l.starts_with("weir_requests_total") || l.starts_with("weir_filter_errors_total")
        })
        .take(20)
    {
        println!("{line}");
    }
    proxy.shutdown().await;
    println!("\n== done: weir drained and stopped");
    Ok(())
}
