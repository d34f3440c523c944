//! The example Rust filter (examples/rust-filter) in the real host, built for
//! wasm32-unknown-unknown and wasm32-wasip1.

mod common;

use common::*;
use serde_json::json;
use weir_sdk_harness::Step;

#[test]
fn adds_the_greeting_to_responses() {
    for name in ["example_rust", "example_rust_wasi"] {
        let h = load(name, json!({"greeting": "hi from the harness"}));
        let out = h.request().path("/x").send();
        assert!(out.forwarded(), "{name}");
        assert_eq!(
            out.request_header("x-hello"),
            None,
            "{name}: requests untouched"
        );
        let resp = out.respond(200).body("body").send();
        assert_eq!(
            resp.response_header("x-hello").as_deref(),
            Some("hi from the harness"),
            "{name}"
        );
        assert_eq!(&resp.response_body()[..], b"body");
    }
}

#[test]
fn default_greeting() {
    let h = load("example_rust", json!({}));
    let out = h.request().send();
    let resp = out.respond(204).send();
    assert_eq!(resp.response_header("x-hello").as_deref(), Some("hello"));
}

#[test]
fn unknown_field_is_rejected() {
    let e = config_error("example_rust", json!({"greting": "typo"}));
    assert_eq!(e.step(), Step::Configure);
    assert!(e.to_string().contains("greting"), "{e}");
}
