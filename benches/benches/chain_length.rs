//! Chain execution cost (issue 3, point 11 and issue 6, point 3): one request (request headers,
//! response headers, finish: `proxy_on_context_create`, the two header callbacks, `proxy_on_done`,
//! `proxy_on_log`, `proxy_on_delete` per filter) on one worker-like thread (current-thread tokio
//! + `LocalSet`), through
//!
//! - `no_filter`: an empty chain (the harness loop: header lists, stream state);
//! - `empty_filter`: one WAT filter whose callbacks just continue;
//! - chains of 1, 4 and 8 filters, each a separate VM adding one request header.
//!
//! The VMs are built once before measuring; the bench checks that every filter runs and, at the
//! end, that no VM was instantiated per request (each module counts its `proxy_on_vm_start`
//! calls in a filter metric). Run: `cargo bench -p weir-benches --bench chain_length`.

use std::rc::Rc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weir_wasm::{
    FilterChain, Flow, HeaderList, NoServices, PluginSpec, PluginVm, StreamInfo, WasmHost,
};

/// A filter: continue everywhere; optionally add `x-bench: 1` to the request headers. Its
/// `proxy_on_vm_start` increments the counter `bench_vm_starts`.
fn wat(add_header: bool) -> String {
    let body = if add_header {
        "(drop (call $add (i32.const 0) (i32.const 1024) (i32.const 7) (i32.const 1040) (i32.const 1)))"
    } else {
        ""
    };
    format!(
        r#"(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $def (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 8192))
  (data (i32.const 1024) "x-bench")
  (data (i32.const 1040) "1")
  (data (i32.const 1056) "bench_vm_starts")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (local.get $p) (i32.add (local.get $n) (i32.const 8))))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $def (i32.const 0) (i32.const 1056) (i32.const 15) (i32.const 2048)))
    (drop (call $inc (i32.load (i32.const 2048)) (i64.const 1)))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    {body}
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)"#
    )
}

fn chain(host: &WasmHost, add_header: bool, n: usize) -> FilterChain {
    let bytes = wat::parse_str(wat(add_header)).expect("valid WAT");
    let module = host.compile(&bytes).expect("compiles");
    let vms = (0..n)
        .map(|i| {
            let plugin = host.prepare(PluginSpec::new(format!("f{i}")), module.clone());
            let vm = PluginVm::new(&plugin, Rc::new(NoServices)).expect("vm");
            vm.activate();
            vm
        })
        .collect();
    FilterChain::new(vms)
}

fn request() -> HeaderList {
    HeaderList::from_pairs([
        (":method", "GET"),
        (":path", "/bench"),
        (":authority", "example.com"),
        (":scheme", "http"),
        ("user-agent", "criterion"),
        ("accept", "*/*"),
    ])
}

fn response() -> HeaderList {
    HeaderList::from_pairs([(":status", "200"), ("content-length", "0")])
}

/// One request through `chain`; returns how many `x-bench` headers the filters added.
async fn one(chain: &FilterChain) -> usize {
    let mut s = chain.new_stream(StreamInfo::default());
    let flow = s.on_request_headers(request(), true).await;
    debug_assert_eq!(flow, Flow::Continue);
    let added = s
        .request_headers()
        .iter()
        .filter(|(k, _)| *k == &b"x-bench"[..])
        .count();
    let flow = s.on_response_headers(response(), true).await;
    debug_assert_eq!(flow, Flow::Continue);
    s.finish();
    added
}

fn vm_starts(host: &WasmHost) -> i64 {
    host.metrics()
        .by_name("bench_vm_starts")
        .expect("metric")
        .value()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let host = WasmHost::new().expect("host");
    // (case, chain, headers it adds per request)
    let cases: Vec<(String, FilterChain, usize)> = local.block_on(&rt, async {
        let mut v = vec![
            ("no_filter".to_string(), FilterChain::new(Vec::new()), 0),
            ("empty_filter".to_string(), chain(&host, false, 1), 0),
        ];
        for n in [1usize, 4, 8] {
            v.push((format!("add_header/{n}"), chain(&host, true, n), n));
        }
        v
    });
    let vms_built = vm_starts(&host);
    assert_eq!(vms_built, 14, "1 + 1 + 4 + 8 VMs");
    // Sanity: every filter of each chain runs.
    local.block_on(&rt, async {
        for (name, ch, added) in &cases {
            assert_eq!(one(ch).await, *added, "{name}: not every filter ran");
        }
    });
    let mut g = c.benchmark_group("chain_length");
    for (name, ch, _) in &cases {
        g.bench_with_input(BenchmarkId::from_parameter(name), ch, |b, ch| {
            b.iter_custom(|iters| {
                local.block_on(&rt, async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        one(ch).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
    assert_eq!(
        vm_starts(&host),
        vms_built,
        "a VM was instantiated during the requests"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
