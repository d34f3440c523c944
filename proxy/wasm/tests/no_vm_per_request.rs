//! Issue 3, point 11: one VM per (filter, worker), built before requests; none per request.
//! A WAT filter counts its `proxy_on_vm_start` calls in a filter metric; 1000 streams through a
//! chain of two filters leave the count at two.

mod common;

use std::rc::Rc;

use common::run_local;
use weir_wasm::{
    FilterChain, Flow, HeaderList, NoServices, PluginSpec, PluginVm, StreamInfo, WasmHost,
};

const WAT: &str = r#"(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $def (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 8192))
  (data (i32.const 1024) "x-vm")
  (data (i32.const 1040) "1")
  (data (i32.const 1056) "test_vm_starts")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (local.get $p) (i32.add (local.get $n) (i32.const 8))))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $def (i32.const 0) (i32.const 1056) (i32.const 14) (i32.const 2048)))
    (drop (call $inc (i32.load (i32.const 2048)) (i64.const 1)))
    (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    ;; Reset the bump allocator per request (the host copies values in through it).
    (global.set $bump (i32.const 8192))
    (drop (call $get (i32.const 0) (i32.const 1024) (i32.const 4) (i32.const 2056) (i32.const 2060)))
    (drop (call $add (i32.const 0) (i32.const 1024) (i32.const 4) (i32.const 1040) (i32.const 1)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
)"#;

#[test]
fn no_vm_is_instantiated_per_request() {
    let host = WasmHost::new().unwrap();
    let module = host.compile(&wat::parse_str(WAT).unwrap()).unwrap();
    run_local(async {
        let vms: Vec<_> = (0..2)
            .map(|i| {
                let p = host.prepare(PluginSpec::new(format!("nvpr{i}")), module.clone());
                PluginVm::new(&p, Rc::new(NoServices)).unwrap()
            })
            .collect();
        let chain = FilterChain::new(vms);
        let starts = || host.metrics().by_name("test_vm_starts").unwrap().value();
        assert_eq!(starts(), 2);
        for _ in 0..1000 {
            let mut s = chain.new_stream(StreamInfo::default());
            let req = HeaderList::from_pairs([
                (":method", "GET"),
                (":path", "/"),
                (":authority", "a"),
                (":scheme", "http"),
            ]);
            assert_eq!(s.on_request_headers(req, true).await, Flow::Continue);
            assert_eq!(s.request_headers().get_str("x-vm"), Some("1"));
            s.finish();
        }
        assert_eq!(starts(), 2, "no VM per request");
        for vm in chain.vms() {
            assert!(!vm.is_failed());
        }
    });
}
