//! Shared test helpers: a worker-like runtime (current-thread tokio + LocalSet) and WAT
//! building blocks.
#![allow(dead_code)]

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use weir_wasm::{
    FailurePolicy, HeaderList, HostServices, NoServices, PluginSpec, PluginVm, WasmHost,
};

/// Run `f` the way a weir worker runs requests.
pub fn run_local<F: Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, f)
}

/// A bump allocator, the ABI marker and memory: enough for a WAT filter.
pub fn prelude(marker: &str) -> String {
    format!(
        r#"
  (memory (export "memory") 4)
  (global $bump (mut i32) (i32.const 8192))
  (func (export "{marker}"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (local.get $p) (i32.add (local.get $n) (i32.const 8))))
    (local.get $p))
"#
    )
}

pub fn spec(name: &str) -> PluginSpec {
    let mut s = PluginSpec::new(name);
    s.root_id = format!("{name}-root");
    s.vm_id = format!("{name}-vm");
    s.configuration = b"{}".to_vec();
    s.callback_deadline = Duration::from_millis(50);
    s
}

pub fn spec_with(name: &str, failure: FailurePolicy) -> PluginSpec {
    let mut s = spec(name);
    s.failure = failure;
    s
}

/// Compile `wat` and build a VM for it with `spec`.
pub fn vm(host: &WasmHost, wat: &str, spec: PluginSpec) -> Rc<PluginVm> {
    vm_with(host, wat, spec, Rc::new(NoServices))
}

pub fn vm_with(
    host: &WasmHost,
    wat: &str,
    spec: PluginSpec,
    services: Rc<dyn HostServices>,
) -> Rc<PluginVm> {
    let bytes = wat::parse_str(wat).expect("valid WAT");
    let module = host.compile(&bytes).expect("compiles");
    let plugin = host.prepare(spec, module);
    PluginVm::new(&plugin, services).expect("vm")
}

pub fn prepared(host: &WasmHost, wat: &str, spec: PluginSpec) -> Arc<weir_wasm::PreparedPlugin> {
    let bytes = wat::parse_str(wat).expect("valid WAT");
    host.prepare(spec, host.compile(&bytes).expect("compiles"))
}

/// The request head of `GET path` to `example.com` over http, as filters see it.
pub fn get_request(path: &str) -> HeaderList {
    HeaderList::from_pairs([
        (":method", "GET"),
        (":path", path),
        (":authority", "example.com"),
        (":scheme", "http"),
    ])
}
