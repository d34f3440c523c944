//! VM groups (DESIGN.md §5): filters with the same non-empty vm_id and module share one
//! instance on a worker, each as a root context of its own (own configuration); an empty vm_id
//! gives each filter its own instance. A failure takes the shared instance down for every
//! member; a `reload` rebuilds it with every member's root context.

mod common;

use std::rc::Rc;

use common::*;
use weir_wasm::{
    FailurePolicy, FilterChain, Flow, NoServices, PluginSpec, PluginVm, StreamInfo, VmGroups,
    WasmHost,
};

/// Each root keeps the first byte of its configuration; each request-headers callback bumps a
/// module-wide counter and adds `x-seen: <root's byte><counter>`. A root configured with `T`
/// traps instead.
fn counter_filter() -> String {
    format!(
        r#"(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buf (param i32 i32 i32 i32 i32) (result i32)))
  {prelude}
  (global $n (mut i32) (i32.const 0))
  (data (i32.const 16) "x-seen")
  (func (export "proxy_on_context_create") (param $ctx i32) (param $root i32)
    (if (i32.ne (local.get $root) (i32.const 0))
      (then (i32.store8 (i32.add (i32.const 200) (local.get $ctx))
        (i32.load8_u (i32.add (i32.const 100) (local.get $root)))))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (drop (call $buf (i32.const 7) (i32.const 0) (local.get $size) (i32.const 64) (i32.const 68)))
    (i32.store8 (i32.add (i32.const 100) (local.get $root)) (i32.load8_u (i32.load (i32.const 64))))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (if (i32.eq (i32.load8_u (i32.add (i32.const 200) (local.get $ctx))) (i32.const 84))
      (then unreachable))
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (i32.store8 (i32.const 48) (i32.load8_u (i32.add (i32.const 200) (local.get $ctx))))
    (i32.store8 (i32.const 49) (i32.add (i32.const 48) (global.get $n)))
    (drop (call $add (i32.const 0) (i32.const 16) (i32.const 6) (i32.const 48) (i32.const 2)))
    (i32.const 0))
  (func (export "proxy_on_delete") (param i32))
)"#,
        prelude = prelude("proxy_abi_version_0_2_1")
    )
}

fn member(name: &str, vm_id: &str, config: &[u8], failure: FailurePolicy) -> PluginSpec {
    let mut s = spec_with(name, failure);
    s.vm_id = vm_id.into();
    s.configuration = config.to_vec();
    s
}

/// Build `specs` on one worker the way weir does (one [`VmGroups`] per snapshot).
fn build(host: &WasmHost, specs: Vec<PluginSpec>) -> Vec<Rc<PluginVm>> {
    let bytes = wat::parse_str(counter_filter()).expect("valid WAT");
    let module = host.compile(&bytes).expect("compiles");
    let mut groups = VmGroups::default();
    specs
        .into_iter()
        .map(|s| {
            let plugin = host.prepare(s, module.clone());
            PluginVm::new_in(&plugin, Rc::new(NoServices), &mut groups).expect("vm")
        })
        .collect()
}

/// The `x-seen` values one request through `chain` collects.
async fn seen(chain: &FilterChain) -> (Flow, Vec<String>) {
    let mut s = chain.new_stream(StreamInfo::default());
    let flow = s.on_request_headers(get_request("/"), true).await;
    let values = s
        .request_headers()
        .get_all("x-seen")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    (flow, values)
}

#[test]
fn filters_with_the_same_vm_id_and_module_share_one_instance() {
    let host = WasmHost::new().unwrap();
    run_local(async {
        let vms = build(
            &host,
            vec![
                member("a", "group", b"A", FailurePolicy::FailClosed),
                member("b", "group", b"B", FailurePolicy::FailClosed),
            ],
        );
        let chain = FilterChain::new(vms);
        // One counter for both filters, and each root kept its own configuration.
        assert_eq!(
            seen(&chain).await,
            (Flow::Continue, vec!["A1".into(), "B2".into()])
        );
        assert_eq!(
            seen(&chain).await,
            (Flow::Continue, vec!["A3".into(), "B4".into()])
        );
    });
}

#[test]
fn different_or_empty_vm_ids_get_instances_of_their_own() {
    let host = WasmHost::new().unwrap();
    run_local(async {
        for (va, vb) in [("", ""), ("one", "two")] {
            let vms = build(
                &host,
                vec![
                    member("a", va, b"A", FailurePolicy::FailClosed),
                    member("b", vb, b"B", FailurePolicy::FailClosed),
                ],
            );
            let chain = FilterChain::new(vms);
            assert_eq!(
                seen(&chain).await,
                (Flow::Continue, vec!["A1".into(), "B1".into()]),
                "vm_ids {va:?} and {vb:?}"
            );
        }
    });
}

#[test]
fn a_failure_takes_the_group_down_and_reload_rebuilds_every_root() {
    let host = WasmHost::new().unwrap();
    run_local(async {
        let vms = build(
            &host,
            vec![
                member("steady", "group", b"S", FailurePolicy::FailClosed),
                member("trapper", "group", b"T", FailurePolicy::Reload),
            ],
        );
        let (steady, trapper) = (vms[0].clone(), vms[1].clone());
        let alone = FilterChain::new(vec![steady.clone()]);
        assert_eq!(seen(&alone).await, (Flow::Continue, vec!["S1".into()]));

        // The trap is the trapper's: it answers 503, and the shared instance is gone for both.
        let both = FilterChain::new(vms);
        let (flow, _) = seen(&both).await;
        assert!(matches!(flow, Flow::LocalResponse(_)), "{flow:?}");
        assert!(trapper.is_failed() && steady.is_failed());
        let (flow, _) = seen(&alone).await;
        assert!(
            matches!(flow, Flow::LocalResponse(_)),
            "fail_closed member: {flow:?}"
        );

        // The trapper's reload (due at once after a first failure) rebuilds the instance when
        // its next stream starts, with both roots configured again: the steady member serves
        // from a fresh instance (its counter starts over).
        let reloading = FilterChain::new(vec![trapper.clone()]);
        let pending = reloading.new_stream(StreamInfo::default());
        assert!(!trapper.is_failed() && !steady.is_failed());
        assert_eq!(seen(&alone).await, (Flow::Continue, vec!["S1".into()]));
        drop(pending);
    });
}
