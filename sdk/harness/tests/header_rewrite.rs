//! `header_rewrite` in the real host: set/add/remove in both directions (order remove, set,
//! add), `%property%` interpolation, path_prefix_rewrite, bad configs.

mod common;

use common::*;
use serde_json::json;
use weir_sdk_harness::Step;

#[test]
fn request_set_add_remove() {
    let h = load(
        "header_rewrite",
        json!({"request": {
            "set": {"x-env": "prod", "x-replaced": "new"},
            "add": {"x-via": ["weir", "edge"], "x-one": "1"},
            "remove": ["x-debug", "x-replaced"]
        }}),
    );
    let out = h
        .request()
        .header("x-debug", "1")
        .header("x-replaced", "old")
        .header("x-replaced", "older")
        .header("x-via", "client")
        .header("x-keep", "k")
        .send();
    assert!(out.forwarded());
    let hs = out.request_headers();
    assert_eq!(hs.get_str("x-debug"), None);
    assert_eq!(
        hs.get_all("x-replaced").count(),
        1,
        "set replaces every value"
    );
    assert_eq!(hs.get_str("x-replaced"), Some("new"));
    assert_eq!(hs.get_str("x-env"), Some("prod"));
    let via: Vec<&[u8]> = hs.get_all("x-via").collect();
    assert_eq!(via, [&b"client"[..], b"weir", b"edge"], "add appends");
    assert_eq!(hs.get_str("x-one"), Some("1"));
    assert_eq!(hs.get_str("x-keep"), Some("k"));
}

#[test]
fn response_set_add_remove() {
    let h = load(
        "header_rewrite",
        json!({"response": {
            "set": {"cache-control": "no-store"},
            "add": {"x-served-by": "weir"},
            "remove": ["server"]
        }}),
    );
    let out = h.request().header("server", "client-sent").send();
    assert_eq!(
        out.request_header("server").as_deref(),
        Some("client-sent"),
        "response rules leave the request alone"
    );
    let resp = out
        .respond(200)
        .header("server", "nginx")
        .header("cache-control", "max-age=60")
        .header("x-served-by", "upstream")
        .body("hello")
        .send();
    assert_eq!(resp.response_header("server"), None);
    assert_eq!(
        resp.response_header("cache-control").as_deref(),
        Some("no-store")
    );
    assert_eq!(
        resp.response_header_all("x-served-by"),
        ["upstream", "weir"]
    );
    assert_eq!(&resp.response_body()[..], b"hello", "body untouched");
}

#[test]
fn property_interpolation() {
    let h = load(
        "header_rewrite",
        json!({
            "request": {"set": {
                "x-client": "%source.address%",
                "x-port": "%source.port%",
                "x-rid": "id=%request.id%",
                "x-spiffe": "%connection.uri_san_peer_certificate%",
                "x-plugin": "%plugin_name%",
                "x-pct": "100%%",
                "x-unknown": "[%no.such.property%]",
                "x-method": "%request.method% %request.path%"
            }},
            "response": {"set": {"x-request-id": "%request.id%", "x-code": "%response.code%"}}
        }),
    );
    let out = h
        .request()
        .method("PUT")
        .path("/a?b=c")
        .source("192.0.2.7:4321")
        .request_id("rid-123")
        .peer_uri_san("spiffe://weir.test/client")
        .send();
    let hs = out.request_headers();
    assert_eq!(hs.get_str("x-client"), Some("192.0.2.7:4321"));
    assert_eq!(
        hs.get_str("x-port"),
        Some("4321"),
        "integers render in decimal"
    );
    assert_eq!(hs.get_str("x-rid"), Some("id=rid-123"));
    assert_eq!(hs.get_str("x-spiffe"), Some("spiffe://weir.test/client"));
    assert_eq!(hs.get_str("x-plugin"), Some("header_rewrite"));
    assert_eq!(hs.get_str("x-pct"), Some("100%"));
    assert_eq!(hs.get_str("x-unknown"), Some("[]"));
    assert_eq!(hs.get_str("x-method"), Some("PUT /a?b=c"));
    let resp = out.respond(404).send();
    assert_eq!(
        resp.response_header("x-request-id").as_deref(),
        Some("rid-123")
    );
    assert_eq!(resp.response_header("x-code").as_deref(), Some("404"));

    // Without request.id from the proxy, the x-request-id header is used.
    let out = h.request().header("x-request-id", "from-header").send();
    assert_eq!(
        out.request_header("x-rid").as_deref(),
        Some("id=from-header")
    );
}

#[test]
fn path_prefix_rewrite() {
    let h = load(
        "header_rewrite",
        json!({"path_prefix_rewrite": {"prefix": "/api/v1/", "replacement": "/"}}),
    );
    for (path, want) in [
        ("/api/v1/users?x=1", "/users?x=1"),
        ("/api/v1/", "/"),
        ("/api/v2/users", "/api/v2/users"),
        ("/other", "/other"),
    ] {
        let out = h.request().path(path).send();
        assert_eq!(out.request_header(":path").as_deref(), Some(want), "{path}");
    }
}

#[test]
fn bad_configs_name_the_field() {
    for (cfg, field) in [
        (
            json!({"request": {"set": {"bad name": "x"}}}),
            "request.set.bad name",
        ),
        (
            json!({"response": {"set": {"x": "%open"}}}),
            "response.set.x",
        ),
        (json!({"request": {"sett": {}}}), "request.sett"),
        (
            json!({"path_prefix_rewrite": {"prefix": "api", "replacement": "/"}}),
            "path_prefix_rewrite.prefix",
        ),
    ] {
        let e = config_error("header_rewrite", cfg.clone());
        assert_eq!(e.step(), Step::Configure, "{cfg}: {e}");
        assert!(e.to_string().contains(field), "{cfg}: {e}");
    }
}
