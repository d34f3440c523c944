//! Chain execution cost by chain length (issue 6, point 3): one request (request headers,
//! response headers, finish) through chains of 0, 1, 4 and 8 filters, each filter a separate
//! VM that adds one request header — the same guest and driving loop as `proxy/wasm/benches/chain.rs`
//! (H8's per-filter cases), here swept over the length. Run:
//! `cargo bench -p weir-benches --bench chain_length`.

use std::rc::Rc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weir_wasm::{
    FilterChain, Flow, HeaderList, NoServices, PluginSpec, PluginVm, StreamInfo, WasmHost,
};

const WAT: &str = r#"(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 8192))
  (data (i32.const 1024) "x-bench")
  (data (i32.const 1040) "1")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (local.get $p) (i32.add (local.get $n) (i32.const 8))))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 0) (i32.const 1024) (i32.const 7) (i32.const 1040) (i32.const 1)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)"#;

fn chain(host: &WasmHost, n: usize) -> FilterChain {
    let bytes = wat::parse_str(WAT).expect("valid WAT");
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

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let host = WasmHost::new().expect("host");
    let lengths = [0usize, 1, 4, 8];
    let chains: Vec<_> = local.block_on(&rt, async {
        lengths.iter().map(|n| (*n, chain(&host, *n))).collect()
    });
    // Sanity: every filter of the chain runs.
    local.block_on(&rt, async {
        for (n, ch) in &chains {
            assert_eq!(one(ch).await, *n, "chain of {n}: not every filter ran");
        }
    });
    let mut g = c.benchmark_group("chain_length");
    for (n, ch) in &chains {
        g.bench_with_input(BenchmarkId::from_parameter(n), ch, |b, ch| {
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
