//! The harness itself, on small WAT filters: load errors name the step, request/response
//! phases, local answers, a pause resumed by an `http_call` answered by a closure, a pause
//! resumed by a tick, shared data across two workers.

use weir_sdk_harness::{Harness, HarnessError, Step};

/// Bump allocator, ABI marker, memory.
const PRELUDE: &str = r#"
  (memory (export "memory") 4)
  (global $bump (mut i32) (i32.const 8192))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (local.get $p) (i32.add (local.get $n) (i32.const 8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
"#;

fn module(body: &str) -> String {
    format!("(module\n{body}\n{PRELUDE})")
}

fn load(name: &str, wat: &str) -> Result<Harness, HarnessError> {
    Harness::builder_from_bytes(name, module(wat)).load()
}

#[test]
fn load_errors_name_the_step() {
    let e = Harness::load("/nonexistent/filter.wasm", serde_json::json!({})).unwrap_err();
    assert_eq!(e.step(), Step::Read);
    assert!(e.to_string().contains("/nonexistent/filter.wasm"), "{e}");

    let e = Harness::builder_from_bytes("junk", b"\0asm junk".to_vec())
        .load()
        .unwrap_err();
    assert_eq!(e.step(), Step::Compile, "{e}");

    let e = load(
        "picky",
        r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (data (i32.const 16) "field x: bad")
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $log (i32.const 4) (i32.const 16) (i32.const 12)))
    (i32.const 0))"#,
    )
    .unwrap_err();
    assert_eq!(e.step(), Step::Configure);
    let msg = e.to_string();
    assert!(
        msg.starts_with("on_configure failed: filter picky"),
        "{msg}"
    );
    assert!(msg.contains("field x: bad"), "{msg}");

    let e = load(
        "nostart",
        r#"(func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 0))"#,
    )
    .unwrap_err();
    assert_eq!(e.step(), Step::VmStart, "{e}");
}

/// Adds `x-seen: 1` to requests, answers 418 on `/teapot`, adds `x-resp: 1` to responses.
const HEADERS: &str = r#"
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (data (i32.const 16) "x-seen")
  (data (i32.const 24) "1")
  (data (i32.const 32) ":path")
  (data (i32.const 48) "/teapot")
  (data (i32.const 64) "short and stout")
  (data (i32.const 96) "x-resp")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 0) (i32.const 16) (i32.const 6) (i32.const 24) (i32.const 1)))
    (drop (call $get (i32.const 0) (i32.const 32) (i32.const 5) (i32.const 200) (i32.const 204)))
    (if (i32.and (i32.eq (i32.load (i32.const 204)) (i32.const 7))
                 (i64.eq (i64.load (i32.load (i32.const 200))) (i64.load (i32.const 48))))
      (then
        (drop (call $local (i32.const 418) (i32.const 0) (i32.const 0)
          (i32.const 64) (i32.const 15) (i32.const 0) (i32.const 0) (i32.const -1)))
        (return (i32.const 1))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 96) (i32.const 6) (i32.const 24) (i32.const 1)))
    (i32.const 0))
"#;

#[test]
fn request_and_response_phases_and_local_answers() {
    let h = load("hdr", HEADERS).unwrap();
    let out = h
        .request()
        .method("POST")
        .path("/x")
        .header("a", "b")
        .body("payload")
        .send();
    assert!(!out.paused());
    assert!(out.forwarded());
    assert_eq!(out.local_response(), None);
    assert_eq!(out.request_header("x-seen").as_deref(), Some("1"));
    assert_eq!(out.request_header("a").as_deref(), Some("b"));
    assert_eq!(out.request_header(":method").as_deref(), Some("POST"));
    assert_eq!(&out.request_body()[..], b"payload");
    let resp = out
        .respond(201)
        .header("content-type", "text/plain")
        .body("ok")
        .send();
    assert!(!resp.paused());
    assert_eq!(resp.response_header("x-resp").as_deref(), Some("1"));
    assert_eq!(resp.response_header(":status").as_deref(), Some("201"));
    assert_eq!(&resp.response_body()[..], b"ok");

    let out = h.request().path("/teapot").send();
    let lr = out.local_response().expect("local answer");
    assert_eq!(lr.status, 418);
    assert_eq!(lr.text(), "short and stout");
    assert_eq!(out.status(), Some(418));
    assert!(!out.forwarded());
}

/// Pauses every request on a `proxy_http_call` to cluster `authz`; the answer's `:status`
/// is copied to the request as `x-authz-status`, then the stream continues.
const CALLOUT: &str = r#"
  (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (data (i32.const 16) "authz")
  (data (i32.const 32) "\03\00\00\00\07\00\00\00\04\00\00\00\05\00\00\00\06\00\00\00\0a\00\00\00\05\00\00\00:method\00POST\00:path\00/check\00:authority\00authz\00")
  (data (i32.const 128) "ask")
  (data (i32.const 144) ":status")
  (data (i32.const 160) "x-authz-status")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $call (i32.const 16) (i32.const 5) (i32.const 32) (i32.const 71)
      (i32.const 128) (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 300)))
    (i32.const 1))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    ;; header map type 6 = http call response headers
    (if (i32.eqz (call $get (i32.const 6) (i32.const 144) (i32.const 7) (i32.const 200) (i32.const 204)))
      (then (drop (call $add (i32.const 0) (i32.const 160) (i32.const 14)
        (i32.load (i32.const 200)) (i32.load (i32.const 204))))))
    (drop (call $continue (i32.const 0))))
"#;

#[test]
fn http_call_answered_by_a_closure_resumes_the_stream() {
    let h = load("callout", CALLOUT).unwrap();
    // No handler: the call cannot start, the stream stays paused.
    let out = h.request().send();
    assert!(out.paused());
    drop(out);

    h.on_http_call(|cluster, req| {
        assert_eq!(cluster, "authz");
        assert_eq!(req.method(), "POST");
        assert_eq!(&req.body()[..], b"ask");
        Ok(http::Response::builder()
            .status(if req.uri().path() == "/check" {
                204
            } else {
                500
            })
            .body(bytes::Bytes::new())
            .unwrap())
    });
    let out = h.request().send();
    assert!(!out.paused(), "resumed by the call's answer");
    assert_eq!(out.request_header("x-authz-status").as_deref(), Some("204"));
    let calls = h.http_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].cluster, "authz");
    assert_eq!(calls[1].method, "POST");
    assert_eq!(calls[1].timeout, std::time::Duration::from_millis(1000));
    assert_eq!(&calls[1].body[..], b"ask");
}

/// Pauses each request and remembers its context; every tick (5 ms) resumes the last one.
const TICKER: &str = r#"
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $eff (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (global $parked (mut i32) (i32.const 0))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $tick (i32.const 5)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (global.set $parked (local.get $ctx))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (if (global.get $parked)
      (then
        (drop (call $eff (global.get $parked)))
        (drop (call $continue (i32.const 0)))
        (global.set $parked (i32.const 0)))))
"#;

#[test]
fn tick_resumes_a_paused_stream() {
    let h = load("ticker", TICKER).unwrap();
    let out = h.request().send();
    assert!(out.paused());
    let before = h.ticks();
    h.tick();
    assert!(h.ticks() > before);
    assert!(!out.paused(), "resumed by on_tick");
    assert!(out.forwarded());

    // wait() drives the worker until the stream resumes.
    let out = h.request().send();
    assert!(out.paused());
    out.wait();
    assert!(out.forwarded());
}

/// Counts requests in shared data key `n` (one byte, CAS loop).
const COUNTER: &str = r#"
  (import "env" "proxy_get_shared_data" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (data (i32.const 16) "n")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $v i32)
    (loop $retry
      (local.set $v (i32.const 0))
      (i32.store (i32.const 208) (i32.const 0))
      (if (i32.eqz (call $get (i32.const 16) (i32.const 1) (i32.const 200) (i32.const 204) (i32.const 208)))
        (then (local.set $v (i32.load8_u (i32.load (i32.const 200))))))
      (i32.store8 (i32.const 300) (i32.add (local.get $v) (i32.const 1)))
      (br_if $retry (call $set (i32.const 16) (i32.const 1) (i32.const 300) (i32.const 1) (i32.load (i32.const 208)))))
    (i32.const 0))
"#;

#[test]
fn two_workers_share_data_by_vm_id() {
    let h = Harness::builder_from_bytes("counter", module(COUNTER))
        .vm_id("shared")
        .load()
        .unwrap();
    let w2 = h.worker().unwrap();
    for i in 0..10 {
        let w = if i % 2 == 0 { &h } else { &w2 };
        assert!(w.request().send().forwarded());
    }
    assert_eq!(h.shared_data("n"), Some(vec![10]));
    assert_eq!(w2.shared_data("n"), Some(vec![10]));
    assert_eq!(h.shared_data_len(), 1);

    // Another harness (its own host) does not see it.
    let other = Harness::builder_from_bytes("counter", module(COUNTER))
        .vm_id("shared")
        .load()
        .unwrap();
    assert_eq!(other.shared_data("n"), None);
}

#[test]
fn chains_run_in_order_and_responses_in_reverse() {
    // Filter 1 answers /teapot locally; filter 2 (the counter) only sees what filter 1 lets
    // through.
    let h = Harness::builder_from_bytes("hdr", module(HEADERS))
        .vm_id("a")
        .then(Harness::builder_from_bytes("counter", module(COUNTER)).vm_id("a"))
        .load()
        .unwrap();
    assert_eq!(h.vms().len(), 2);
    assert!(h.request().send().forwarded());
    assert_eq!(h.request().path("/teapot").send().status(), Some(418));
    assert!(h.request().send().forwarded());
    assert_eq!(
        h.shared_data("n"),
        Some(vec![2]),
        "the second filter saw 2 requests"
    );
    let out = h.request().send();
    let resp = out.respond(200).send();
    assert_eq!(resp.response_header("x-resp").as_deref(), Some("1"));
}

#[test]
fn guest_logs_are_captured() {
    let h = load(
        "logger",
        r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (data (i32.const 16) "request seen")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 3) (i32.const 16) (i32.const 12)))
    (i32.const 0))"#,
    )
    .unwrap();
    h.request().send();
    h.request().send();
    let logs = h.take_logs();
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(logs[0].level, weir_sdk_harness::Level::WARN);
    assert_eq!(logs[0].filter, "logger");
    assert_eq!(logs[0].message, "request seen");
    assert!(h.logs().is_empty());
}
