//! auth through weir: 401 (with www-authenticate) / 403 / 200 with an API key and a JWT, and
//! the SPIFFE principal of an mTLS client certificate allowed by a rule.

use crate::one_filter_yaml;
use crate::support::certs::CLIENT_SPIFFE_ID;
use crate::support::{Certs, Client, TempDir, Upstream, Weir};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

const SECRET: &str = "e2e-secret-e2e-secret-e2e-secret";

fn hs256(claims: &serde_json::Value) -> String {
    let msg = format!(
        "{}.{}",
        B64.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string()),
        B64.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("hmac key");
    mac.update(msg.as_bytes());
    format!("{msg}.{}", B64.encode(mac.finalize().into_bytes()))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_and_jwt_401_403_200() {
    let up = Upstream::start("up").await;
    let cfg = json!({
        "jwt": {"secret": SECRET, "issuer": "https://issuer.test",
                "claims_to_headers": {"sub": "x-user"}},
        "api_keys": {"header": "x-api-key", "keys": {"k-alice": "alice", "k-bob": "bob"}},
        "rules": [{"action": "deny", "principals": ["bob"], "paths": ["/admin"]}],
        "principal_header": "x-weir-principal"
    });
    let weir = Weir::start(&one_filter_yaml(&up.endpoint(), "auth", &cfg)).await;
    let mut c = weir.h1("edge").await;

    let r = c.get("/orders").await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"weir\"")
    );
    assert_eq!(r.json()["error"], "unauthorized");

    let r = c.get_with("/orders", &[("x-api-key", "nope")]).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());

    let r = c.get_with("/orders", &[("x-api-key", "k-alice")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.upstream_header("x-weir-principal").as_deref(),
        Some("alice")
    );

    let r = c.get_with("/admin/x", &[("x-api-key", "k-bob")]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "forbidden");
    assert_eq!(r.header("www-authenticate"), None);

    let good = hs256(&json!({"sub": "carol", "iss": "https://issuer.test", "exp": now() + 300}));
    let r = c
        .get_with("/orders", &[("authorization", &format!("Bearer {good}"))])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-user").as_deref(), Some("carol"));
    assert_eq!(
        r.upstream_header("x-weir-principal").as_deref(),
        Some("carol")
    );

    let expired = hs256(&json!({"sub": "carol", "iss": "https://issuer.test", "exp": now() - 600}));
    let r = c
        .get_with(
            "/orders",
            &[("authorization", &format!("Bearer {expired}"))],
        )
        .await;
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("invalid_token"), "{challenge}");

    let wrong_iss = hs256(&json!({"sub": "carol", "iss": "https://evil.test", "exp": now() + 300}));
    let r = c
        .get_with(
            "/orders",
            &[("authorization", &format!("Bearer {wrong_iss}"))],
        )
        .await;
    assert_eq!(r.status, 401);
    // Only authorised requests reached the upstream.
    assert_eq!(up.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_spiffe_principal_allowed_by_rule() {
    let up = Upstream::start("up").await;
    let dir = TempDir::new("auth-mtls");
    let certs = Certs::generate(dir.path());
    let cfg = json!({
        "rules": [{"action": "allow", "principals": ["spiffe://weir.test/*"]}],
        "principal_header": "x-weir-principal"
    });
    let yaml = one_filter_yaml(&up.endpoint(), "auth", &cfg).replace(
        "    address: 127.0.0.1:0\n",
        &format!(
            "    address: 127.0.0.1:0\n    tls: {{ cert: {}, key: {}, client_ca: {} }}\n",
            certs.server_cert.display(),
            certs.server_key.display(),
            certs.ca.display()
        ),
    );
    let weir = Weir::start_with(&yaml, 1, dir).await;
    let mut c = Client::tls(
        weir.addr("edge"),
        certs.client_config(&["http/1.1"], true),
        "localhost",
    )
    .await
    .expect("mTLS handshake");
    let r = c.get("/spiffe").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.upstream_header("x-weir-principal").as_deref(),
        Some(CLIENT_SPIFFE_ID)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_principal_not_in_rule_is_403() {
    let up = Upstream::start("up").await;
    let dir = TempDir::new("auth-mtls-deny");
    let certs = Certs::generate(dir.path());
    let cfg = json!({"rules": [{"action": "allow", "principals": ["spiffe://other.test/*"]}]});
    let yaml = one_filter_yaml(&up.endpoint(), "auth", &cfg).replace(
        "    address: 127.0.0.1:0\n",
        &format!(
            "    address: 127.0.0.1:0\n    tls: {{ cert: {}, key: {}, client_ca: {} }}\n",
            certs.server_cert.display(),
            certs.server_key.display(),
            certs.ca.display()
        ),
    );
    let weir = Weir::start_with(&yaml, 1, dir).await;
    let mut c = Client::tls(
        weir.addr("edge"),
        certs.client_config(&["http/1.1"], true),
        "localhost",
    )
    .await
    .expect("mTLS handshake");
    assert_eq!(c.get("/x").await.status, 403);
    assert_eq!(up.requests(), 0);
}

/// As Envoy: a gRPC request gets its local replies in gRPC form — HTTP 200, trailers-only,
/// `grpc-status` mapped from the HTTP status (401 → 16 UNAUTHENTICATED; the proxy's own 503
/// for a dead upstream → 14 UNAVAILABLE) and the text in `grpc-message`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_requests_get_grpc_local_replies() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string(); // closed: connections are refused
    let cfg = json!({"api_keys": {"header": "x-api-key", "keys": {"k1": "svc"}}});
    let weir = Weir::start(&one_filter_yaml(&dead, "auth", &cfg)).await;
    let mut c = Client::h2c(weir.addr("edge")).await;
    let call = |c: &Client, key: Option<&'static str>| {
        let mut b = c
            .request(http::Method::POST, "/pkg.Svc/Method")
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(k) = key {
            b = b.header("x-api-key", k);
        }
        b.body(crate::support::full(vec![0u8, 0, 0, 0, 0]))
            .expect("req")
    };
    let req = call(&c, None);
    let r = c.fetch(req).await.expect("response");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/grpc")
    );
    assert_eq!(r.header("grpc-status").as_deref(), Some("16"), "{r:?}");
    assert!(r.header("grpc-message").is_some(), "{r:?}");
    assert!(
        r.header("www-authenticate").is_some(),
        "the filter's headers stay"
    );
    assert!(r.body.is_empty());
    let req = call(&c, Some("k1"));
    let r = c.fetch(req).await.expect("response");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("grpc-status").as_deref(), Some("14"), "{r:?}");
    assert_eq!(
        r.header("grpc-message").as_deref(),
        Some("upstream_connect_failure")
    );
    // A plain HTTP request still gets the HTTP status.
    let r = weir.h1("edge").await.get("/x").await;
    assert_eq!(r.status, 401);
}
