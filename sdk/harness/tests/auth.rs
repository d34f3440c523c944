//! `auth` in the real host: JWT HS256/RS256/ES256 (PEM and JWKS keys), exp/nbf with clock
//! skew, iss/aud, claims_to_headers, API keys, rules (allow/deny, deny wins), the SPIFFE
//! principal from the mTLS peer URI SAN, 401 with `www-authenticate`, 403, bad configs.
//! Test tokens are signed natively with RustCrypto (rsa, p256, hmac).

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::*;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer;
use p256::pkcs8::{EncodePublicKey, LineEnding};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use sha2::Sha256;
use weir_sdk_harness::{Exchange, Harness, Step};

// === token minting ===

const SECRET: &str = "hs256-test-secret-of-some-length";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn rsa_key() -> rsa::RsaPrivateKey {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../filters/auth/testdata/rsa-private.pem"
    ))
    .unwrap();
    rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap()
}

fn rsa_public_pem() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../filters/auth/testdata/rsa-public.pem"
    ))
    .unwrap()
}

fn ec_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap()
}

fn ec_jwk(kid: &str) -> Value {
    let point = ec_key().verifying_key().to_encoded_point(false);
    json!({"kty": "EC", "crv": "P-256", "kid": kid,
           "x": B64.encode(point.x().unwrap()), "y": B64.encode(point.y().unwrap())})
}

fn ec_public_pem() -> String {
    ec_key()
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

fn rsa_jwk(kid: &str) -> Value {
    let k = rsa_key().to_public_key();
    json!({"kty": "RSA", "kid": kid, "n": B64.encode(k.n().to_bytes_be()),
           "e": B64.encode(k.e().to_bytes_be())})
}

/// A signed JWT: `alg` is HS256, RS256 or ES256 (or anything else: unsigned garbage).
fn token(alg: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": alg, "typ": "JWT"});
    if let Some(k) = kid {
        header["kid"] = json!(k);
    }
    let msg = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig: Vec<u8> = match alg {
        "HS256" => {
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(msg.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "RS256" => {
            let sk = rsa::pkcs1v15::SigningKey::<Sha256>::new(rsa_key());
            let sig: rsa::pkcs1v15::Signature = rsa::signature::Signer::sign(&sk, msg.as_bytes());
            rsa::signature::SignatureEncoding::to_vec(&sig)
        }
        "ES256" => {
            let sig: p256::ecdsa::Signature = ec_key().sign(msg.as_bytes());
            sig.to_bytes().to_vec()
        }
        _ => Vec::new(),
    };
    format!("{msg}.{}", B64.encode(sig))
}

fn claims() -> Value {
    json!({"sub": "alice", "iss": "https://issuer.test", "aud": "orders",
           "email": "alice@example.com", "exp": now() + 300, "iat": now()})
}

fn with(mut c: Value, k: &str, v: Value) -> Value {
    c[k] = v;
    c
}

// === helpers ===

fn jwt_filter(keys: Value) -> Harness {
    load(
        "auth",
        json!({
            "jwt": {"issuer": "https://issuer.test", "audiences": ["orders", "billing"],
                    "keys": keys, "secret": SECRET, "clock_skew": "60s",
                    "claims_to_headers": {"sub": "x-user", "email": "x-email"}},
            "principal_header": "x-weir-principal"
        }),
    )
}

fn bearer(h: &Harness, tok: &str) -> Exchange {
    h.request()
        .header("authorization", &format!("Bearer {tok}"))
        .send()
}

#[track_caller]
fn assert_401(out: &Exchange, why: &str) {
    let lr = out
        .local_response()
        .unwrap_or_else(|| panic!("{why}: expected 401, request went through"));
    assert_eq!(lr.status, 401, "{why}: {}", lr.text());
    let challenge = lr.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("realm=\"weir\""), "{why}: {challenge}");
    assert_eq!(lr.json()["error"], "unauthorized", "{why}");
}

#[track_caller]
fn assert_invalid_token(out: &Exchange, why: &str, desc: &str) {
    assert_401(out, why);
    let lr = out.local_response().unwrap();
    let challenge = lr.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{why}: {challenge}"
    );
    assert!(
        challenge.contains(desc),
        "{why}: {challenge} (wanted {desc})"
    );
}

#[track_caller]
fn assert_allowed(out: &Exchange, principal: &str) {
    assert!(
        out.forwarded(),
        "expected the request through, got {:?}",
        out.local_response()
    );
    assert_eq!(
        out.request_header("x-weir-principal").as_deref(),
        Some(principal)
    );
}

// === JWT ===

fn all_keys() -> Value {
    json!([rsa_public_pem(), ec_jwk("ec1")])
}

#[test]
fn valid_tokens_of_every_algorithm() {
    let h = jwt_filter(all_keys());
    for alg in ["HS256", "RS256", "ES256"] {
        let out = bearer(&h, &token(alg, None, &claims()));
        assert_allowed(&out, "alice");
        assert_eq!(
            out.request_header("x-user").as_deref(),
            Some("alice"),
            "{alg}"
        );
        assert_eq!(
            out.request_header("x-email").as_deref(),
            Some("alice@example.com")
        );
        assert!(
            out.request_header("authorization").is_some(),
            "forwarded by default"
        );
    }
}

#[test]
fn keys_as_jwks_and_pem() {
    // Inline JWKS with RSA and EC keys.
    let h = jwt_filter(json!({"keys": [rsa_jwk("r1"), ec_jwk("e1")]}));
    assert_allowed(&bearer(&h, &token("RS256", Some("r1"), &claims())), "alice");
    assert_allowed(&bearer(&h, &token("ES256", Some("e1"), &claims())), "alice");
    assert_allowed(&bearer(&h, &token("ES256", None, &claims())), "alice");
    // PEM text for EC.
    let h = jwt_filter(json!(ec_public_pem()));
    assert_allowed(&bearer(&h, &token("ES256", None, &claims())), "alice");
    assert_invalid_token(
        &bearer(&h, &token("RS256", None, &claims())),
        "no RSA key configured",
        "signature",
    );
}

#[test]
fn exp_and_nbf_with_clock_skew() {
    let h = jwt_filter(all_keys());
    let t = now();
    for (claims, ok, why) in [
        (
            with(claims(), "exp", json!(t - 120)),
            false,
            "expired beyond skew",
        ),
        (
            with(claims(), "exp", json!(t - 30)),
            true,
            "expired within skew",
        ),
        (
            with(claims(), "nbf", json!(t + 120)),
            false,
            "not yet valid beyond skew",
        ),
        (
            with(claims(), "nbf", json!(t + 30)),
            true,
            "nbf within skew",
        ),
        (
            with(claims(), "exp", json!("soon")),
            false,
            "exp not a number",
        ),
    ] {
        let out = bearer(&h, &token("ES256", None, &claims));
        if ok {
            assert_allowed(&out, "alice");
        } else {
            assert_401(&out, why);
        }
    }
    let out = bearer(
        &h,
        &token("HS256", None, &with(claims(), "exp", json!(t - 120))),
    );
    assert_invalid_token(&out, "expired", "expired");

    // No skew: a token expired a second ago is refused.
    let h = load(
        "auth",
        json!({"jwt": {"secret": SECRET, "clock_skew": "0s"}}),
    );
    assert_401(
        &bearer(
            &h,
            &token("HS256", None, &with(claims(), "exp", json!(t - 2))),
        ),
        "no skew",
    );
}

#[test]
fn wrong_issuer_audience_signature_or_alg() {
    let h = jwt_filter(all_keys());
    let cases = [
        (
            token(
                "RS256",
                None,
                &with(claims(), "iss", json!("https://evil.test")),
            ),
            "issuer",
        ),
        (
            token("RS256", None, &with(claims(), "aud", json!("payments"))),
            "audience",
        ),
        (
            token("RS256", None, &with(claims(), "aud", json!(["x", "y"]))),
            "audience list",
        ),
        (token("none", None, &claims()), "alg none"),
        (token("HS512", None, &claims()), "unsupported alg"),
        ("not.a.jwt".to_string(), "garbage"),
        ("abc".to_string(), "not three parts"),
    ];
    for (tok, why) in cases {
        assert_401(&bearer(&h, &tok), why);
    }
    // Tampered claims: the signature no longer matches.
    let good = token("ES256", None, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(with(claims(), "sub", json!("admin")).to_string()),
        parts[2]
    );
    assert_invalid_token(&bearer(&h, &forged), "tampered", "signature");
    // aud as a list containing an accepted audience is fine.
    let out = bearer(
        &h,
        &token(
            "RS256",
            None,
            &with(claims(), "aud", json!(["x", "billing"])),
        ),
    );
    assert_allowed(&out, "alice");
    // Not a Bearer scheme.
    let out = h
        .request()
        .header(
            "authorization",
            &format!("Basic {}", token("RS256", None, &claims())),
        )
        .send();
    assert_invalid_token(&out, "basic scheme", "Bearer");
}

#[test]
fn missing_credential_is_401_and_identity_headers_are_stripped() {
    let h = jwt_filter(all_keys());
    let out = h.request().header("x-user", "mallory").send();
    assert_401(&out, "no credential");
    assert_eq!(
        out.local_response().unwrap().header("www-authenticate"),
        Some("Bearer realm=\"weir\"")
    );
    // A client cannot inject identity headers next to a valid token.
    let out = h
        .request()
        .header("x-user", "mallory")
        .header("x-weir-principal", "root")
        .header(
            "authorization",
            &format!("Bearer {}", token("HS256", None, &claims())),
        )
        .send();
    assert_allowed(&out, "alice");
    assert_eq!(out.request_headers().get_all("x-user").count(), 1);
    assert_eq!(out.request_header("x-user").as_deref(), Some("alice"));
}

#[test]
fn custom_header_and_not_forwarded() {
    let h = load(
        "auth",
        json!({"jwt": {"secret": SECRET, "header": "x-token", "forward": false,
                       "principal_claim": "email"},
               "principal_header": "x-weir-principal"}),
    );
    let out = h
        .request()
        .header("x-token", &token("HS256", None, &claims()))
        .send();
    assert_allowed(&out, "alice@example.com");
    assert_eq!(
        out.request_header("x-token"),
        None,
        "token removed upstream"
    );
}

// === API keys ===

#[test]
fn api_keys() {
    let h = load(
        "auth",
        json!({"api_keys": {"header": "x-api-key", "keys": {"s3cr3t": "batch-job", "k2": "cron"}},
               "principal_header": "x-weir-principal"}),
    );
    assert_allowed(
        &h.request().header("x-api-key", "s3cr3t").send(),
        "batch-job",
    );
    assert_allowed(&h.request().header("x-api-key", "k2").send(), "cron");
    let out = h.request().header("x-api-key", "wrong").send();
    assert_401(&out, "unknown key");
    let lr = out.local_response().unwrap();
    assert_eq!(
        lr.header("www-authenticate"),
        Some("ApiKey realm=\"weir\", header=\"x-api-key\"")
    );
    assert_401(&h.request().send(), "no key");
}

// === rules ===

#[test]
fn rules_allow_deny_and_deny_wins() {
    let h = load(
        "auth",
        json!({
            "api_keys": {"keys": {"ka": "alice", "kb": "bob", "kc": "carol"}},
            "rules": [
                {"action": "deny", "methods": ["DELETE"], "paths": ["/admin"]},
                {"action": "deny", "principals": ["carol"]},
                {"action": "allow", "principals": ["alice", "carol"]},
                {"action": "allow", "principals": ["bob"], "methods": ["GET"], "paths": ["/public"]}
            ],
            "principal_header": "x-weir-principal"
        }),
    );
    let send = |key: &str, method: &str, path: &str| {
        h.request()
            .method(method)
            .path(path)
            .header("x-api-key", key)
            .send()
    };
    assert_allowed(&send("ka", "GET", "/admin"), "alice");
    assert_allowed(&send("ka", "POST", "/orders"), "alice");
    assert_allowed(&send("kb", "GET", "/public/x?y=1"), "bob");
    for (key, method, path, why) in [
        (
            "ka",
            "DELETE",
            "/admin/users",
            "deny wins over alice's allow",
        ),
        ("kc", "GET", "/orders", "carol is denied although allowed"),
        ("kb", "POST", "/public", "bob: method not allowed"),
        ("kb", "GET", "/orders", "bob: path not allowed"),
    ] {
        let out = send(key, method, path);
        let lr = out
            .local_response()
            .unwrap_or_else(|| panic!("{why}: went through"));
        assert_eq!(lr.status, 403, "{why}");
        assert_eq!(lr.json()["error"], "forbidden", "{why}");
        assert_eq!(lr.header("www-authenticate"), None, "{why}");
    }
}

#[test]
fn anonymous_requests_go_to_the_rules_when_allowed() {
    let h = load(
        "auth",
        json!({"allow_anonymous": true,
               "rules": [{"action": "deny", "paths": ["/private"]}]}),
    );
    assert!(h.request().path("/open").send().forwarded());
    assert_eq!(h.request().path("/private").send().status(), Some(403));
}

// === SPIFFE / mTLS ===

#[test]
fn spiffe_principal_from_the_peer_certificate() {
    let h = load(
        "auth",
        json!({"rules": [{"action": "allow", "principals": ["spiffe://weir.test/ns/prod/*"]}],
               "principal_header": "x-weir-principal"}),
    );
    let out = h
        .request()
        .peer_uri_san("spiffe://weir.test/ns/prod/sa/web")
        .send();
    assert_allowed(&out, "spiffe://weir.test/ns/prod/sa/web");
    let out = h
        .request()
        .peer_uri_san("spiffe://weir.test/ns/dev/sa/web")
        .send();
    assert_eq!(out.status(), Some(403));
    assert_401(&h.request().send(), "no client certificate");
}

// === config errors ===

#[test]
fn bad_configs_name_the_field() {
    for (cfg, field) in [
        (json!({"rules": [{"action": "maybe"}]}), "rules"),
        (
            json!({"jwt": {"keys": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"}}),
            "jwt.keys",
        ),
        (
            json!({"jwt": {"secret": SECRET, "clock_skew": "a while"}}),
            "jwt.clock_skew",
        ),
        (json!({"api_keys": {"keys": {"k": 1}}}), "api_keys"),
        (json!({"jwt": {"secret": SECRET}, "extra": 1}), "extra"),
    ] {
        let e = config_error("auth", cfg.clone());
        assert_eq!(e.step(), Step::Configure, "{cfg}: {e}");
        assert!(e.to_string().contains(field), "{cfg}: {e}");
    }
}
