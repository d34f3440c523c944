//! A module's `weir.callbacks` custom section: the host makes only the stream callbacks it
//! lists (plus context create and delete); one not listed is never entered. Modules without
//! the section get every callback; an unknown name fails the compile.

mod common;

use bytes::Bytes;
use common::*;
use weir_wasm::metrics::Phase;
use weir_wasm::{BodyFlow, Callbacks, FilterChain, Flow, HeaderList, StreamInfo, WasmHost};

/// Traps in every stream callback except response headers (which adds `x-seen`) and log;
/// `section` is the `weir.callbacks` annotation (or none).
fn filter(section: &str) -> String {
    format!(
        r#"(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  {prelude}
  {section}
  (data (i32.const 16) "x-seen")
  (data (i32.const 32) "yes")
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) unreachable)
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) unreachable)
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 16) (i32.const 6) (i32.const 32) (i32.const 3)))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) unreachable)
  (func (export "proxy_on_done") (param i32) (result i32) unreachable)
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)"#,
        prelude = prelude("proxy_abi_version_0_2_1")
    )
}

#[test]
fn only_the_declared_callbacks_are_entered() {
    let host = WasmHost::new().unwrap();
    run_local(async {
        let wat = filter(r#"(@custom "weir.callbacks" "response_headers, log")"#);
        let vm = vm(&host, &wat, spec("declared"));
        let chain = FilterChain::new(vec![vm.clone()]);
        let mut s = chain.new_stream(StreamInfo::default());
        assert!(!s.filters_response_body());
        assert_eq!(
            s.on_request_headers(get_request("/"), false).await,
            Flow::Continue
        );
        let body = s.on_request_body(Bytes::from_static(b"up"), true).await;
        assert!(matches!(body, Ok(BodyFlow::Continue(_))), "{body:?}");
        let resp = HeaderList::from_pairs([(":status", "200")]);
        assert_eq!(s.on_response_headers(resp, false).await, Flow::Continue);
        assert_eq!(s.response_headers().get_str("x-seen"), Some("yes"));
        let body = s.on_response_body(Bytes::from_static(b"down"), true).await;
        match body {
            Ok(BodyFlow::Continue(b)) => assert_eq!(&b[..], b"down"),
            other => panic!("expected the body to pass, got {other:?}"),
        }
        drop(s);

        assert!(!vm.is_failed(), "no trapping callback was entered");
        let stats = vm.plugin().stats();
        assert_eq!(stats.calls(Phase::ResponseHeaders), 1);
        assert_eq!(stats.calls(Phase::Log), 1);
        assert_eq!(stats.calls(Phase::ContextCreate), 1);
        assert_eq!(stats.calls(Phase::Delete), 1);
        for p in [
            Phase::RequestHeaders,
            Phase::RequestBody,
            Phase::ResponseBody,
            Phase::Done,
        ] {
            assert_eq!(stats.calls(p), 0, "{p:?} was called");
        }
    });
}

#[test]
fn without_the_section_every_callback_is_entered() {
    let host = WasmHost::new().unwrap();
    run_local(async {
        let vm = vm(&host, &filter(""), spec("undeclared"));
        assert_eq!(vm.plugin().module().callbacks(), Callbacks::ALL);
        let chain = FilterChain::new(vec![vm.clone()]);
        let mut s = chain.new_stream(StreamInfo::default());
        assert!(s.filters_response_body());
        // The request-headers callback traps: the stream gets the fail-closed 503.
        match s.on_request_headers(get_request("/"), true).await {
            Flow::LocalResponse(lr) => assert_eq!(lr.status, 503),
            other => panic!("expected the trap's 503, got {other:?}"),
        }
        assert!(vm.is_failed());
    });
}

#[test]
fn an_unknown_callback_name_fails_the_compile() {
    let host = WasmHost::new().unwrap();
    let wat = filter(r#"(@custom "weir.callbacks" "request_header")"#);
    let bytes = wat::parse_str(&wat).unwrap();
    let err = host.compile(&bytes).unwrap_err().to_string();
    assert!(
        err.contains("weir.callbacks") && err.contains("unknown callback `request_header`"),
        "{err}"
    );
}

/// Declares only `log`, which copies the `response.size` property into a stream property.
fn size_logger() -> String {
    size_logger_of("response")
}

/// Declares only `log`, which copies the `size` property of `side` (`request` or `response`)
/// into the stream property `size-seen`.
fn size_logger_of(side: &str) -> String {
    format!(
        r#"(module
  (import "env" "proxy_get_property" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_property" (func $set (param i32 i32 i32 i32) (result i32)))
  {prelude}
  (@custom "weir.callbacks" "log")
  (data (i32.const 16) "{side}\00size")
  (data (i32.const 48) "size-seen")
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32)
    (if (i32.eqz (call $get (i32.const 16) (i32.const {plen}) (i32.const 200) (i32.const 204)))
      (then (drop (call $set (i32.const 48) (i32.const 9)
        (i32.load (i32.const 200)) (i32.load (i32.const 204)))))))
  (func (export "proxy_on_delete") (param i32))
)"#,
        prelude = prelude("proxy_abi_version_0_2_1"),
        plen = side.len() + 5,
    )
}

#[test]
fn a_body_that_bypasses_the_chain_is_still_counted_for_log() {
    let host = WasmHost::new().unwrap();
    run_local(async {
        let vm = vm(&host, &size_logger(), spec("size"));
        let chain = FilterChain::new(vec![vm]);
        let mut s = chain.new_stream(StreamInfo::default());
        assert!(!s.filters_response_body());
        let resp = HeaderList::from_pairs([(":status", "200")]);
        assert_eq!(s.on_response_headers(resp, false).await, Flow::Continue);
        // What the proxy does for a body no filter takes: it records the frames it streams.
        let recorder = s.response_recorder();
        recorder.data(4);
        recorder.data(6);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", "abc".parse().unwrap());
        recorder.trailers(&trailers);
        assert_eq!(s.response_trailers().get_str("x-checksum"), Some("abc"));
        s.finish();
        assert_eq!(s.property(b"size-seen"), Some(10i64.to_le_bytes().to_vec()));
    });
}

#[test]
fn a_request_body_that_bypasses_the_chain_is_still_counted_for_log() {
    let host = WasmHost::new().unwrap();
    run_local(async {
        let vm = vm(&host, &size_logger_of("request"), spec("size"));
        let chain = FilterChain::new(vec![vm]);
        let mut s = chain.new_stream(StreamInfo::default());
        assert!(!s.filters_request_body());
        let req = HeaderList::from_pairs([
            (":method", "POST"),
            (":path", "/upload"),
            (":authority", "example.test"),
            (":scheme", "http"),
        ]);
        assert_eq!(s.on_request_headers(req, false).await, Flow::Continue);
        // What the proxy does for a request body no filter takes: the body goes upstream as
        // is, recording its frames — from whichever thread polls it (the recorder is `Send`).
        let recorder = s.request_recorder();
        std::thread::spawn(move || {
            recorder.data(7);
            recorder.data(5);
            let mut trailers = http::HeaderMap::new();
            trailers.insert("x-checksum", "abc".parse().unwrap());
            recorder.trailers(&trailers);
        })
        .join()
        .unwrap();
        let resp = HeaderList::from_pairs([(":status", "200")]);
        assert_eq!(s.on_response_headers(resp, true).await, Flow::Continue);
        assert_eq!(s.request_trailers().get_str("x-checksum"), Some("abc"));
        s.finish();
        assert_eq!(s.property(b"size-seen"), Some(12i64.to_le_bytes().to_vec()));
    });
}
