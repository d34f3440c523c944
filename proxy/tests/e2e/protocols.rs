//! Issue 2, point 1: downstream HTTP/1.1 keep-alive, h2c, TLS with ALPN h2 and http/1.1, mTLS;
//! upstream HTTP/1.1 or HTTP/2 per cluster, plain or TLS (CA, SNI, client certificate).
//! (The 200 MB streaming checks are in `streaming.rs`.)

use crate::support::upstream::wait_until;
use crate::support::{Certs, Client, TempDir, Upstream, UpstreamOpts, Weir};

fn one_route(upstream: &Upstream, cluster_extra: &str) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: all
        match: {{ path_prefix: / }}
        cluster: backend
clusters:
  - name: backend
    endpoints: [{ep}]
{cluster_extra}
"#,
        ep = upstream.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_keep_alive_downstream() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&one_route(&up, "")).await;
    let mut c = weir.h1("edge").await;
    for i in 0..20 {
        let r = c.get(&format!("/echo/{i}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.version, http::Version::HTTP_11);
        assert_eq!(r.json()["path"], format!("/echo/{i}"));
        assert_eq!(r.upstream(), "a");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_downstream_concurrent_streams() {
    let up = Upstream::start("a").await;
    let weir = Weir::start(&one_route(&up, "")).await;
    let c = Client::h2c(weir.addr("edge")).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let mut c = c.h2_clone();
        tasks.push(tokio::spawn(
            async move { (i, c.get(&format!("/s/{i}")).await) },
        ));
    }
    for t in tasks {
        let (i, r) = t.await.expect("task");
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.version, http::Version::HTTP_2);
        assert_eq!(r.json()["path"], format!("/s/{i}"));
    }
}

fn tls_listener_yaml(certs: &Certs, up: &Upstream, client_ca: bool) -> String {
    let ca = if client_ca {
        format!("\n      client_ca: {}", certs.ca.display())
    } else {
        String::new()
    };
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    tls:
      cert: {cert}
      key: {key}{ca}
    routes:
      - match: {{ path_prefix: / }}
        cluster: backend
clusters:
  - name: backend
    endpoints: [{ep}]
"#,
        cert = certs.server_cert.display(),
        key = certs.server_key.display(),
        ep = up.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_downstream_alpn_h2_and_http11() {
    let dir = TempDir::new("tls");
    let certs = Certs::generate(dir.path());
    let up = Upstream::start("a").await;
    let weir = Weir::start_with(&tls_listener_yaml(&certs, &up, false), 1, dir).await;
    let addr = weir.addr("edge");

    let mut h2 = Client::tls(
        addr,
        certs.client_config(&["h2", "http/1.1"], false),
        "localhost",
    )
    .await
    .expect("tls h2");
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]), "ALPN should pick h2");
    let r = h2.get("/over-h2").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(
        r.upstream_header("x-forwarded-proto").as_deref(),
        Some("https")
    );

    let mut h1 = Client::tls(addr, certs.client_config(&["http/1.1"], false), "localhost")
        .await
        .expect("tls h1");
    assert_eq!(
        h1.alpn.as_deref(),
        Some(&b"http/1.1"[..]),
        "ALPN should pick http/1.1"
    );
    for _ in 0..3 {
        let r = h1.get("/over-h1").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.version, http::Version::HTTP_11);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_downstream_requires_client_certificate() {
    let dir = TempDir::new("mtls");
    let certs = Certs::generate(dir.path());
    let up = Upstream::start("a").await;
    let weir = Weir::start_with(&tls_listener_yaml(&certs, &up, true), 1, dir).await;
    let addr = weir.addr("edge");

    let mut ok = Client::tls(addr, certs.client_config(&["http/1.1"], true), "localhost")
        .await
        .expect("mtls handshake");
    assert_eq!(ok.get("/").await.status, 200);

    // Without a certificate: the handshake or the first request fails (TLS 1.3 reports the
    // rejected certificate after the client considers the handshake done).
    match Client::tls(addr, certs.client_config(&["http/1.1"], false), "localhost").await {
        Err(_) => {}
        Ok(mut c) => {
            let req = c
                .request(http::Method::GET, "/")
                .body(crate::support::empty())
                .expect("req");
            let res = c.fetch(req).await;
            assert!(
                res.is_err(),
                "request without client certificate must fail, got {res:?}"
            );
        }
    }
    assert_eq!(
        up.requests(),
        1,
        "only the mTLS client reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_http2_cluster() {
    let up = Upstream::start("h2up").await;
    let weir = Weir::start(&one_route(&up, "    http2: true")).await;
    let mut c = weir.h1("edge").await;
    for _ in 0..5 {
        let r = c.get("/proto").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.json()["version"],
            "HTTP/2.0",
            "cluster http2: true must speak HTTP/2 upstream"
        );
    }
    assert_eq!(up.accepted(), 1, "HTTP/2 upstream connection is reused");

    let up1 = Upstream::start("h1up").await;
    let weir1 = Weir::start(&one_route(&up1, "")).await;
    let r = weir1.h1("edge").await.get("/proto").await;
    assert_eq!(
        r.json()["version"],
        "HTTP/1.1",
        "default upstream protocol is HTTP/1.1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_with_ca_sni_and_client_certificate() {
    let dir = TempDir::new("uptls");
    let certs = Certs::generate(dir.path());
    // The upstream requires a client certificate signed by the CA (upstream mTLS).
    let up = UpstreamOpts::new("tlsup")
        .tls(certs.server_config(&["h2", "http/1.1"], true))
        .start()
        .await;
    let yaml = one_route(
        &up,
        &format!(
            "    tls: {{ ca: {ca}, cert: {cert}, key: {key}, sni: localhost }}",
            ca = certs.ca.display(),
            cert = certs.client_cert.display(),
            key = certs.client_key.display()
        ),
    );
    let weir = Weir::start_with(&yaml, 1, dir).await;
    let mut c = weir.h1("edge").await;
    let r = c.get("/secure").await;
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j["tls"], true);
    assert_eq!(
        j["client_cert"], true,
        "proxy presents its client certificate upstream"
    );
    assert_eq!(j["sni"], "localhost", "SNI from the cluster's tls.sni");
    assert_eq!(j["version"], "HTTP/1.1");
    wait_until("upstream saw the request", || up.requests() >= 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_http2_cluster() {
    let dir = TempDir::new("uptls2");
    let certs = Certs::generate(dir.path());
    let up = UpstreamOpts::new("tlsh2")
        .tls(certs.server_config(&["h2", "http/1.1"], false))
        .start()
        .await;
    let yaml = one_route(
        &up,
        &format!(
            "    http2: true\n    tls: {{ ca: {ca}, sni: localhost }}",
            ca = certs.ca.display()
        ),
    );
    let weir = Weir::start_with(&yaml, 1, dir).await;
    let r = weir.h1("edge").await.get("/secure-h2").await;
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j["tls"], true);
    assert_eq!(j["version"], "HTTP/2.0");
    assert_eq!(j["alpn"], "h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_rejects_unknown_ca() {
    // The upstream's certificate is signed by a CA the cluster does not trust: no request
    // reaches it and the client gets 503 (connect failure).
    let dir = TempDir::new("badca");
    let certs = Certs::generate(dir.path());
    let other = TempDir::new("otherca");
    let other_certs = Certs::generate(other.path());
    let up = UpstreamOpts::new("tlsup")
        .tls(certs.server_config(&["http/1.1"], false))
        .start()
        .await;
    let yaml = one_route(
        &up,
        &format!(
            "    tls: {{ ca: {ca}, sni: localhost }}",
            ca = other_certs.ca.display()
        ),
    );
    let weir = Weir::start_with(&yaml, 1, dir).await;
    let r = weir.h1("edge").await.get("/x").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(up.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_without_ca_trusts_the_system_bundle() {
    // `tls:` without `ca` verifies against the system's trust store (here SSL_CERT_FILE, the
    // test CA): the upstream is reached; with another CA as the system's, it is refused.
    let dir = TempDir::new("sysca");
    let certs = Certs::generate(dir.path());
    let other = TempDir::new("sysca-other");
    let other_certs = Certs::generate(other.path());
    let up = UpstreamOpts::new("tlsup")
        .tls(certs.server_config(&["http/1.1"], false))
        .start()
        .await;
    let yaml = one_route(&up, "    tls: { sni: localhost }");
    let weir = Weir::try_start_env(&yaml, 1, dir, &[("SSL_CERT_FILE", &certs.ca)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = weir.h1("edge").await.get("/x").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["tls"], true, "{r:?}");
    let weir = Weir::try_start_env(
        &yaml,
        1,
        TempDir::new("sysca2"),
        &[("SSL_CERT_FILE", &other_certs.ca)],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let r = weir.h1("edge").await.get("/y").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(up.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_http2_multiplexes_concurrent_requests() {
    let up = Upstream::start("h2up").await;
    let weir = Weir::start(&one_route(&up, "    http2: true")).await;
    let client = Client::h2c(weir.addr("edge")).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let mut c = client.h2_clone();
        tasks.push(tokio::spawn(async move { c.get("/hold").await }));
    }
    wait_until("10 streams held upstream", || up.held() == 10).await;
    assert_eq!(
        up.accepted(),
        1,
        "10 concurrent requests share one HTTP/2 upstream connection"
    );
    up.release();
    for t in tasks {
        assert_eq!(t.await.expect("task").status, 200);
    }
}
