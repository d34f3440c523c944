//! WAT filters assembled in the test run: reactor and command modules, ABI 0.1.0, every
//! hostcall linked, validation errors, deadline, memory cap and failure policies.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use weir_wasm::{
    FailureKind, FailurePolicy, FilterChain, Flow, HeaderList, PluginVm, StreamInfo, WasmError,
    WasmHost,
};

fn request(path: &str) -> HeaderList {
    HeaderList::from_pairs([
        (":method", "GET"),
        (":path", path),
        (":authority", "example.com"),
        (":scheme", "http"),
        ("x-in", "1"),
    ])
}

/// A reactor filter: `_initialize`, header reads/writes, a property, a local response on /deny.
fn headers_filter() -> String {
    format!(
        r#"(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  {prelude}
  (global $inited (mut i32) (i32.const 0))
  (data (i32.const 16) "x-wat")
  (data (i32.const 32) "yes")
  (data (i32.const 48) ":path")
  (data (i32.const 64) "x-path")
  (data (i32.const 80) "/deny")
  (data (i32.const 96) "denied")
  (data (i32.const 112) "x-init")
  (data (i32.const 128) "plugin_name")
  (data (i32.const 144) "x-plugin")
  (func (export "_initialize") (global.set $inited (i32.const 1)))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 16) (i32.const 5)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (drop (call $add (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 32) (i32.const 3)))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 48) (i32.const 5) (i32.const 200) (i32.const 204)))
      (then
        (drop (call $add (i32.const 0) (i32.const 64) (i32.const 6)
          (i32.load (i32.const 200)) (i32.load (i32.const 204))))
        (if (i32.and
              (i32.eq (i32.load (i32.const 204)) (i32.const 5))
              (i32.eq (i32.load (i32.load (i32.const 200))) (i32.load (i32.const 80))))
          (then
            (drop (call $local (i32.const 403) (i32.const 96) (i32.const 6)
              (i32.const 96) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const -1)))
            (return (i32.const 1))))))
    (if (i32.eqz (call $prop (i32.const 128) (i32.const 11) (i32.const 208) (i32.const 212)))
      (then (drop (call $add (i32.const 0) (i32.const 144) (i32.const 8)
        (i32.load (i32.const 208)) (i32.load (i32.const 212))))))
    (if (global.get $inited)
      (then (drop (call $add (i32.const 0) (i32.const 112) (i32.const 6) (i32.const 32) (i32.const 3)))))
    (i32.const 0))
)"#,
        prelude = prelude("proxy_abi_version_0_2_1")
    )
}

#[test]
fn reactor_filter_reads_and_writes_headers_and_answers_locally() {
    let host = WasmHost::new().unwrap();
    run_local(async {
        let vm = vm(&host, &headers_filter(), spec("hdr"));
        let chain = FilterChain::new(vec![vm]);
        let mut s = chain.new_stream(StreamInfo::default());
        assert_eq!(
            s.on_request_headers(request("/foo"), true).await,
            Flow::Continue
        );
        let h = s.request_headers().clone();
        assert_eq!(h.get_str("x-wat"), Some("yes"));
        assert_eq!(h.get_str("x-path"), Some("/foo"));
        assert_eq!(h.get_str("x-plugin"), Some("hdr"));
        assert_eq!(h.get_str("x-init"), Some("yes"), "_initialize ran");
        drop(s);

        let mut s = chain.new_stream(StreamInfo::default());
        match s.on_request_headers(request("/deny"), true).await {
            Flow::LocalResponse(lr) => {
                assert_eq!(lr.status, 403);
                assert_eq!(lr.details, "denied");
                assert_eq!(&lr.body[..], b"denied");
            }
            other => panic!("expected a local response, got {other:?}"),
        }
    });
}

/// The C++ SDK's encodings: a property path whose last segment ends in NUL too, and an empty
/// header map sent as a single 0x00 byte (both allowed by the spec and taken by Envoy).
#[test]
fn nul_ended_property_path_and_one_zero_byte_empty_map_are_taken() {
    let wat = format!(
        r#"(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))
  {prelude}
  (data (i32.const 16) "request\00path\00")
  (data (i32.const 48) "x-p")
  (data (i32.const 64) "\00")
  (data (i32.const 80) "teapot")
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $prop (i32.const 16) (i32.const 13) (i32.const 200) (i32.const 204)))
      (then (drop (call $add (i32.const 0) (i32.const 48) (i32.const 3)
        (i32.load (i32.const 200)) (i32.load (i32.const 204))))))
    (drop (call $local (i32.const 418) (i32.const 80) (i32.const 6)
      (i32.const 80) (i32.const 6) (i32.const 64) (i32.const 1) (i32.const -1)))
    (i32.const 1))
)"#,
        prelude = prelude("proxy_abi_version_0_2_1")
    );
    let host = WasmHost::new().unwrap();
    run_local(async {
        let vm = vm(&host, &wat, spec("cpp"));
        let chain = FilterChain::new(vec![vm]);
        let mut s = chain.new_stream(StreamInfo::default());
        match s.on_request_headers(request("/foo"), true).await {
            Flow::LocalResponse(lr) => {
                assert_eq!(lr.status, 418);
                assert_eq!(&lr.body[..], b"teapot");
            }
            other => panic!("a 0x00 header map was refused: {other:?}"),
        }
        assert_eq!(s.request_headers().get_str("x-p"), Some("/foo"));
    });
}

/// A command module: `_start` (ending in proc_exit(0)) and WASI file-system imports it never
/// calls, from both WASI module names.
#[test]
fn command_module_with_unused_fs_imports_links_and_runs() {
    let wat = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func (param i32 i32 i32) (result i32)))
  (import "wasi_unstable" "fd_close" (func (param i32) (result i32)))
  (import "wasi_unstable" "fd_seek" (func (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  {prelude}
  (global $started (mut i32) (i32.const 0))
  (data (i32.const 16) "x-started")
  (data (i32.const 32) "yes")
  (data (i32.const 48) "hello from _start\n")
  (func (export "_start")
    (i32.store (i32.const 300) (i32.const 48))
    (i32.store (i32.const 304) (i32.const 18))
    (drop (call $write (i32.const 1) (i32.const 300) (i32.const 1) (i32.const 308)))
    (drop (call $clock (i32.const 0) (i64.const 0) (i32.const 320)))
    (drop (call $random (i32.const 400) (i32.const 16)))
    (global.set $started (i32.const 1))
    (call $exit (i32.const 0)))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (global.get $started)
      (then (drop (call $add (i32.const 0) (i32.const 16) (i32.const 9) (i32.const 32) (i32.const 3)))))
    (i32.const 0))
)"#,
        prelude = prelude("proxy_abi_version_0_2_1")
    );
    let host = WasmHost::new().unwrap();
    run_local(async {
        let chain = FilterChain::new(vec![vm(&host, &wat, spec("cmd"))]);
        let mut s = chain.new_stream(StreamInfo::default());
        assert_eq!(
            s.on_request_headers(request("/"), true).await,
            Flow::Continue
        );
        assert_eq!(s.request_headers().get_str("x-started"), Some("yes"));
    });
}

/// ABI 0.1.0: two-argument headers callback, proxy_get_configuration, proxy_continue_request.
#[test]
fn abi_0_1_0_module_runs() {
    let wat = format!(
        r#"(module
  (import "env" "proxy_get_configuration" (func $conf (param i32 i32) (result i32)))
  (import "env" "proxy_continue_request" (func $cont (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  {prelude}
  (global $conflen (mut i32) (i32.const 0))
  (data (i32.const 16) "x-v010")
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $conf (i32.const 200) (i32.const 204)))
    (global.set $conflen (i32.load (i32.const 204)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32) (result i32)
    ;; header value: the configuration bytes
    (drop (call $add (i32.const 0) (i32.const 16) (i32.const 6) (i32.load (i32.const 200)) (global.get $conflen)))
    ;; resume from inside the callback, then pause: the stream must go on
    (drop (call $cont))
    (i32.const 1))
)"#,
        prelude = prelude("proxy_abi_version_0_1_0")
    );
    let host = WasmHost::new().unwrap();
    run_local(async {
        let mut sp = spec("v010");
        sp.configuration = br#"{"a":1}"#.to_vec();
        let vm = vm(&host, &wat, sp);
        assert_eq!(vm.plugin().module().abi(), weir_wasm::AbiVersion::V0_1_0);
        let chain = FilterChain::new(vec![vm]);
        let mut s = chain.new_stream(StreamInfo::default());
        assert_eq!(
            s.on_request_headers(request("/"), true).await,
            Flow::Continue
        );
        assert_eq!(s.request_headers().get_str("x-v010"), Some(r#"{"a":1}"#));
    });
}

#[test]
fn every_env_hostcall_links_with_the_spec_signature_and_grpc_is_unimplemented() {
    // (name, params) with "j" for i64.
    let sigs: &[(&str, &str)] = &[
        ("proxy_log", "iii"),
        ("proxy_get_log_level", "i"),
        ("proxy_get_current_time_nanoseconds", "i"),
        ("proxy_set_tick_period_milliseconds", "i"),
        ("proxy_get_buffer_bytes", "iiiii"),
        ("proxy_set_buffer_bytes", "iiiii"),
        ("proxy_get_buffer_status", "iii"),
        ("proxy_get_header_map_pairs", "iii"),
        ("proxy_set_header_map_pairs", "iii"),
        ("proxy_get_header_map_size", "ii"),
        ("proxy_get_header_map_value", "iiiii"),
        ("proxy_add_header_map_value", "iiiii"),
        ("proxy_replace_header_map_value", "iiiii"),
        ("proxy_remove_header_map_value", "iii"),
        ("proxy_continue_stream", "i"),
        ("proxy_close_stream", "i"),
        ("proxy_send_local_response", "iiiiiiii"),
        ("proxy_set_effective_context", "i"),
        ("proxy_done", ""),
        ("proxy_http_call", "iiiiiiiiii"),
        ("proxy_grpc_call", "iiiiiiiiiiii"),
        ("proxy_grpc_stream", "iiiiiiiii"),
        ("proxy_grpc_send", "iiii"),
        ("proxy_grpc_cancel", "i"),
        ("proxy_grpc_close", "i"),
        ("proxy_get_status", "iii"),
        ("proxy_get_shared_data", "iiiii"),
        ("proxy_set_shared_data", "iiiii"),
        ("proxy_register_shared_queue", "iii"),
        ("proxy_resolve_shared_queue", "iiiii"),
        ("proxy_enqueue_shared_queue", "iii"),
        ("proxy_dequeue_shared_queue", "iii"),
        ("proxy_define_metric", "iiii"),
        ("proxy_increment_metric", "ij"),
        ("proxy_record_metric", "ij"),
        ("proxy_get_metric", "ii"),
        ("proxy_get_property", "iiii"),
        ("proxy_set_property", "iiii"),
        ("proxy_call_foreign_function", "iiiiii"),
        ("proxy_get_configuration", "ii"),
        ("proxy_continue_request", ""),
        ("proxy_continue_response", ""),
        ("proxy_clear_route_cache", ""),
    ];
    assert_eq!(sigs.len(), weir_wasm::abi::ENV_FUNCTIONS.len());
    let mut imports = String::new();
    for (name, params) in sigs {
        let p: Vec<&str> = params
            .chars()
            .map(|c| if c == 'j' { "i64" } else { "i32" })
            .collect();
        imports.push_str(&format!(
            "  (import \"env\" \"{name}\" (func ${name} (param {}) (result i32)))\n",
            p.join(" ")
        ));
    }
    let wat = format!(
        r#"(module
{imports}
  {prelude}
  (global $grpc (mut i32) (i32.const -1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (global.set $grpc (call $proxy_grpc_call (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 100)))
    ;; 12 = UNIMPLEMENTED
    (i32.eq (global.get $grpc) (i32.const 12)))
)"#,
        prelude = prelude("proxy_abi_version_0_2_1")
    );
    let host = WasmHost::new().unwrap();
    let bytes = wat::parse_str(&wat).unwrap();
    let module = host.compile(&bytes).unwrap();
    assert!(
        module.unknown_imports().is_empty(),
        "{:?}",
        module.unknown_imports()
    );
    run_local(async {
        let plugin = host.prepare(spec("all"), module);
        PluginVm::new(&plugin, std::rc::Rc::new(weir_wasm::NoServices))
            .expect("configure returned true");
    });
}

#[test]
fn modules_without_marker_or_allocator_are_rejected() {
    let host = WasmHost::new().unwrap();
    let no_marker = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "malloc") (param i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let err = host.compile(&no_marker).unwrap_err();
    assert!(matches!(err, WasmError::NoAbiMarker), "{err}");
    assert!(err.to_string().contains("proxy_abi_version_0_2_1"));

    let no_alloc = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_0")))"#,
    )
    .unwrap();
    let err = host.compile(&no_alloc).unwrap_err();
    assert!(matches!(err, WasmError::NoAllocator), "{err}");
    assert!(err.to_string().contains("malloc"));

    // malloc alone is enough.
    let malloc_only = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_0"))
             (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#,
    )
    .unwrap();
    assert_eq!(
        host.compile(&malloc_only).unwrap().abi(),
        weir_wasm::AbiVersion::V0_2_0
    );
    // Same bytes → same cached module.
    let a = host.compile(&malloc_only).unwrap();
    let b = host.compile(&malloc_only).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
}

#[test]
fn configure_returning_false_fails_naming_the_filter() {
    let wat = format!(
        r#"(module {prelude}
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 0)))"#,
        prelude = prelude("proxy_abi_version_0_2_1")
    );
    let host = WasmHost::new().unwrap();
    let plugin = prepared(&host, &wat, spec("badconf"));
    let err = PluginVm::new(&plugin, std::rc::Rc::new(weir_wasm::NoServices)).unwrap_err();
    assert!(matches!(err, WasmError::Configure { .. }), "{err}");
    assert!(err.to_string().contains("badconf"), "{err}");
    assert_eq!(plugin.stats().errors(FailureKind::Config), 1);
}

/// Loops forever when the request has an `x-loop` header.
fn looping_filter() -> String {
    format!(
        r#"(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  {prelude}
  (data (i32.const 16) "x-loop")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 16) (i32.const 6) (i32.const 200) (i32.const 204)))
      (then (loop $forever (br $forever))))
    (i32.const 0))
)"#,
        prelude = prelude("proxy_abi_version_0_2_1")
    )
}

fn looping_request() -> HeaderList {
    let mut h = request("/");
    h.add("x-loop", "1");
    h
}

#[test]
fn deadline_stops_an_infinite_loop_fail_closed() {
    let host = WasmHost::new().unwrap();
    run_local(async {
        let looping = vm(
            &host,
            &looping_filter(),
            spec_with("loop", FailurePolicy::FailClosed),
        );
        let other = vm(&host, &headers_filter(), spec("other"));
        let chain = FilterChain::new(vec![looping.clone()]);
        let started = Instant::now();
        let mut s = chain.new_stream(StreamInfo::default());
        match s.on_request_headers(looping_request(), true).await {
            Flow::LocalResponse(lr) => {
                assert_eq!(lr.status, 503);
                assert_eq!(lr.details, "filter_failed");
            }
            other => panic!("expected 503, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(looping.plugin().stats().errors(FailureKind::Timeout), 1);
        // Fail closed: the VM stays failed.
        let mut s = chain.new_stream(StreamInfo::default());
        assert!(matches!(
            s.on_request_headers(request("/"), true).await,
            Flow::LocalResponse(_)
        ));
        // Another filter on the same worker keeps serving.
        let chain2 = FilterChain::new(vec![other]);
        let mut s = chain2.new_stream(StreamInfo::default());
        assert_eq!(
            s.on_request_headers(request("/x"), true).await,
            Flow::Continue
        );
        let mut text = String::new();
        host.render_prometheus(&mut text);
        assert!(
            text.contains(r#"weir_filter_errors_total{filter="loop",kind="timeout"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"weir_filter_duration_seconds_count{filter="other",phase="request_headers"}"#
            ),
            "{text}"
        );
    });
}

#[test]
fn fail_open_skips_the_failed_filter() {
    let host = WasmHost::new().unwrap();
    run_local(async {
        let looping = vm(
            &host,
            &looping_filter(),
            spec_with("loop-open", FailurePolicy::FailOpen),
        );
        let hdr = vm(&host, &headers_filter(), spec("hdr2"));
        let chain = FilterChain::new(vec![looping, hdr]);
        let mut s = chain.new_stream(StreamInfo::default());
        assert_eq!(
            s.on_request_headers(looping_request(), true).await,
            Flow::Continue
        );
        assert_eq!(
            s.request_headers().get_str("x-wat"),
            Some("yes"),
            "next filter ran"
        );
        drop(s);
        let mut s = chain.new_stream(StreamInfo::default());
        assert_eq!(
            s.on_request_headers(request("/"), true).await,
            Flow::Continue
        );
    });
}

#[test]
fn reload_rebuilds_the_vm() {
    let host = WasmHost::new().unwrap();
    run_local(async {
        let looping = vm(
            &host,
            &looping_filter(),
            spec_with("loop-reload", FailurePolicy::Reload),
        );
        let chain = FilterChain::new(vec![looping.clone()]);
        let mut s = chain.new_stream(StreamInfo::default());
        assert!(matches!(
            s.on_request_headers(looping_request(), true).await,
            Flow::LocalResponse(_)
        ));
        drop(s);
        assert!(looping.is_failed());
        // The first reload is immediate: the next stream works again.
        let mut s = chain.new_stream(StreamInfo::default());
        assert_eq!(
            s.on_request_headers(request("/"), true).await,
            Flow::Continue
        );
        assert!(!looping.is_failed());
    });
}

#[test]
fn memory_growth_past_the_cap_traps_cleanly() {
    let wat = format!(
        r#"(module {prelude}
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (memory.grow (i32.const 1000)))
    (i32.const 0)))"#,
        prelude = prelude("proxy_abi_version_0_2_1")
    );
    let host = WasmHost::new().unwrap();
    run_local(async {
        let mut sp = spec("oom");
        sp.memory_limit_bytes = 1 << 20;
        let v = vm(&host, &wat, sp);
        let chain = FilterChain::new(vec![v.clone()]);
        let mut s = chain.new_stream(StreamInfo::default());
        assert!(
            matches!(s.on_request_headers(request("/"), true).await, Flow::LocalResponse(lr) if lr.status == 503)
        );
        assert_eq!(v.plugin().stats().errors(FailureKind::Oom), 1);
    });
}

#[test]
fn initial_memory_over_the_cap_fails_instantiation() {
    let wat = r#"(module (memory (export "memory") 100) (func (export "proxy_abi_version_0_2_1"))
        (func (export "malloc") (param i32) (result i32) (i32.const 0)))"#;
    let host = WasmHost::new().unwrap();
    let mut sp = spec("bigmem");
    sp.memory_limit_bytes = 1 << 20;
    let plugin = prepared(&host, wat, sp);
    let err = PluginVm::new(&plugin, std::rc::Rc::new(weir_wasm::NoServices)).unwrap_err();
    assert!(err.to_string().contains("bigmem"), "{err}");
}

#[test]
fn bad_guest_pointer_traps_instead_of_panicking() {
    let wat = format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  {prelude}
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const -16) (i32.const 1000)))
    (i32.const 0)))"#,
        prelude = prelude("proxy_abi_version_0_2_1")
    );
    let host = WasmHost::new().unwrap();
    run_local(async {
        let v = vm(&host, &wat, spec("badptr"));
        let chain = FilterChain::new(vec![v.clone()]);
        let mut s = chain.new_stream(StreamInfo::default());
        assert!(matches!(
            s.on_request_headers(request("/"), true).await,
            Flow::LocalResponse(_)
        ));
        assert_eq!(v.plugin().stats().errors(FailureKind::Trap), 1);
    });
    let _ = Bytes::new();
}

/// A module that does not compile is reported on one line, with where (DESIGN.md §4): text that
/// is neither a wasm binary nor WAT, a truncated binary, WAT that fails validation.
#[test]
fn compile_errors_are_one_line() {
    let host = WasmHost::new().unwrap();
    let err = |bytes: &[u8]| match host.compile(bytes) {
        Ok(_) => panic!("{:?} compiled", String::from_utf8_lossy(bytes)),
        Err(e) => e.to_string(),
    };
    let garbage = err(b"garbage\nmore");
    assert!(!garbage.contains('\n'), "{garbage}");
    assert!(
        garbage.contains("nor WAT text") && garbage.contains("at 1:1"),
        "{garbage}"
    );
    let truncated = err(b"\0asm\x01\0\0\0\x01\x02");
    assert!(
        !truncated.contains('\n') && truncated.contains("end-of-file"),
        "{truncated}"
    );
    let invalid = err(b"(module (func (result i32) (i64.const 1)))");
    assert!(
        !invalid.contains('\n') && invalid.contains("type mismatch"),
        "{invalid}"
    );
    assert!(!invalid.contains("nor WAT"), "{invalid}");
}
