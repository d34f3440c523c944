//! Built-in filters chained as in weir (`filters: [auth, headers]`): auth's principal header is
//! visible to header_rewrite after it; a 401 from auth never reaches header_rewrite; response
//! rules run on the way back.

mod common;

use common::*;
use serde_json::json;
use weir_sdk_harness::Harness;

#[test]
fn auth_then_header_rewrite() {
    let h = Harness::builder(wasm("auth"))
        .config(json!({"api_keys": {"keys": {"k1": "alice"}},
                       "principal_header": "x-weir-principal"}))
        .then(Harness::builder(wasm("header_rewrite")).config(json!({
            "request": {"set": {"x-who": "user=%request.headers.x-weir-principal%"}},
            "response": {"set": {"x-chain": "header_rewrite"}}
        })))
        .load()
        .unwrap();
    let out = h.request().header("x-api-key", "k1").send();
    assert!(out.forwarded());
    assert_eq!(out.request_header("x-who").as_deref(), Some("user=alice"));
    let resp = out.respond(200).send();
    assert_eq!(
        resp.response_header("x-chain").as_deref(),
        Some("header_rewrite")
    );

    let out = h.request().header("x-api-key", "nope").send();
    let lr = out.local_response().expect("401");
    assert_eq!(lr.status, 401);
    assert_eq!(
        lr.header("x-chain"),
        None,
        "a local answer skips the response rules"
    );
}
