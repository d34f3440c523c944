//! Hostcall micro-benchmarks through the real proxy-wasm host (issue 6, point 3): each case is a
//! small WAT guest whose callback makes the same hostcall [`CALLS`] times in a loop, driven
//! through `weir_wasm::FilterChain` / `ChainStream` exactly as a worker drives it. Criterion
//! reports the time per *request* and, with `Throughput::Elements(CALLS)`, the hostcalls/s; the
//! `baseline` case (same guest, no hostcall in the loop) is the fixed per-request cost to subtract:
//! per-hostcall ≈ (case − baseline) / CALLS.
//!
//! Cases: header get / add / replace (request headers), body get / set (request body, one
//! 64-byte chunk), property get (`request.path`), shared data CAS (get + set with the returned
//! cas). Run: `cargo bench -p weir-benches --bench hostcalls`.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir_wasm::{
    BodyFlow, FilterChain, Flow, HeaderList, NoServices, PluginSpec, PluginVm, StreamInfo, WasmHost,
};

/// Hostcalls per request in every case.
const CALLS: u64 = 100;

/// Where the hostcall happens.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Headers,
    Body,
}

// Data segment layout (all under 1024; the bump allocator starts at 8192 and is reset per callback):
//   0   "x-bench"            (7)   header name
//   16  "1"                  (1)   header value
//   32  "user-agent"         (10)  an existing request header
//   48  "request\0path"      (12)  property path
//   64  "bench-key"          (9)   shared data key
//   80  64 bytes of "b"            body replacement
//   512..: out-params (ptr, len, cas)
const DATA: &str = r#"
  (data (i32.const 0) "x-bench")
  (data (i32.const 16) "1")
  (data (i32.const 32) "user-agent")
  (data (i32.const 48) "request\00path")
  (data (i32.const 64) "bench-key")
  (data (i32.const 80) "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
"#;

/// The loop body for each case (`;; nothing` for the baseline).
fn call(case: &str) -> &'static str {
    match case {
        "baseline" => "",
        // proxy_get_header_map_value(map=0 request headers, key, out ptr, out len)
        "header_get" => "(drop (call $get_header (i32.const 0) (i32.const 32) (i32.const 10) (i32.const 512) (i32.const 516)))",
        // proxy_add_header_map_value(map=0, key, value)
        "header_add" => "(drop (call $add_header (i32.const 0) (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 1)))",
        // proxy_replace_header_map_value(map=0, key, value)
        "header_replace" => "(drop (call $replace_header (i32.const 0) (i32.const 32) (i32.const 10) (i32.const 16) (i32.const 1)))",
        // proxy_get_buffer_bytes(buffer=0 request body, start 0, max 64, out ptr, out len)
        "body_get" => "(drop (call $get_buffer (i32.const 0) (i32.const 0) (i32.const 64) (i32.const 512) (i32.const 516)))",
        // proxy_set_buffer_bytes(buffer=0, start 0, size 64 (replace all), data, len 64)
        "body_set" => "(drop (call $set_buffer (i32.const 0) (i32.const 0) (i32.const 64) (i32.const 80) (i32.const 64)))",
        // proxy_get_property("request\0path", out ptr, out len)
        "property_get" => "(drop (call $get_property (i32.const 48) (i32.const 12) (i32.const 512) (i32.const 516)))",
        // proxy_get_shared_data(key, out ptr, out len, out cas) then
        // proxy_set_shared_data(key, value "1", cas) — one compare-and-swap round trip.
        "shared_data_cas" => "(drop (call $get_shared (i32.const 64) (i32.const 9) (i32.const 512) (i32.const 516) (i32.const 520)))
      (drop (call $set_shared (i32.const 64) (i32.const 9) (i32.const 16) (i32.const 1) (i32.load (i32.const 520))))",
        _ => unreachable!("unknown case {case}"),
    }
}

fn wat(case: &str, phase: Phase) -> String {
    let body = call(case);
    let looped = format!(
        "(global.set $bump (i32.const 8192))
    (local.set $i (i32.const 0))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (i32.const {CALLS})))
      {body}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))"
    );
    let (headers, req_body) = match phase {
        Phase::Headers => (looped.as_str(), ""),
        Phase::Body => ("", looped.as_str()),
    };
    format!(
        r#"(module
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (global $bump (mut i32) (i32.const 8192))
  {DATA}
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (local.get $p) (i32.add (local.get $n) (i32.const 8))))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (local $i i32)
    {headers}
    (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (local $i i32)
    {req_body}
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)"#
    )
}

fn chain(host: &WasmHost, case: &str, phase: Phase) -> FilterChain {
    let bytes = wat::parse_str(wat(case, phase)).expect("valid WAT");
    let module = host.compile(&bytes).expect("compiles");
    let plugin = host.prepare(PluginSpec::new(case.to_string()), module);
    let vm = PluginVm::new(&plugin, Rc::new(NoServices)).expect("vm");
    vm.activate();
    FilterChain::new(vec![vm])
}

fn request(with_body: bool) -> HeaderList {
    let mut h = vec![
        (":method", if with_body { "POST" } else { "GET" }),
        (":path", "/bench"),
        (":authority", "example.com"),
        (":scheme", "http"),
        ("user-agent", "criterion"),
        ("accept", "*/*"),
    ];
    if with_body {
        h.push(("content-length", "64"));
    }
    HeaderList::from_pairs(h)
}

/// One request through `chain`; with `Phase::Body` the request carries one 64-byte chunk.
async fn one(chain: &FilterChain, phase: Phase, body: &Bytes) {
    let mut s = chain.new_stream(StreamInfo::default());
    match phase {
        Phase::Headers => {
            let flow = s.on_request_headers(request(false), true).await;
            debug_assert_eq!(flow, Flow::Continue);
        }
        Phase::Body => {
            let flow = s.on_request_headers(request(true), false).await;
            debug_assert_eq!(flow, Flow::Continue);
            let out = s.on_request_body(body.clone(), true).await;
            debug_assert!(matches!(out, Ok(BodyFlow::Continue(_))));
        }
    }
    s.finish();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let host = WasmHost::new().expect("host");
    let body = Bytes::from(vec![b'a'; 64]);
    let cases = [
        ("baseline", Phase::Headers),
        ("header_get", Phase::Headers),
        ("header_add", Phase::Headers),
        ("header_replace", Phase::Headers),
        ("property_get", Phase::Headers),
        ("shared_data_cas", Phase::Headers),
        ("baseline_body", Phase::Body),
        ("body_get", Phase::Body),
        ("body_set", Phase::Body),
    ];
    let chains: Vec<_> = local.block_on(&rt, async {
        cases
            .iter()
            .map(|(name, phase)| {
                let case = if *name == "baseline_body" {
                    "baseline"
                } else {
                    name
                };
                (*name, *phase, chain(&host, case, *phase))
            })
            .collect()
    });

    // Sanity: the hostcalls really do what they say (one request, then inspect).
    local.block_on(&rt, async {
        for (name, phase, ch) in &chains {
            let mut s = ch.new_stream(StreamInfo::default());
            let _ = s
                .on_request_headers(request(*phase == Phase::Body), *phase == Phase::Headers)
                .await;
            if *name == "header_add" {
                let n = s
                    .request_headers()
                    .iter()
                    .filter(|(k, _)| *k == &b"x-bench"[..])
                    .count();
                assert_eq!(n as u64, CALLS, "header_add: {n} x-bench headers");
            }
            if *name == "header_replace" {
                assert_eq!(s.request_headers().get("user-agent"), Some(&b"1"[..]));
            }
            if *phase == Phase::Body {
                let out = s.on_request_body(body.clone(), true).await;
                if *name == "body_set" {
                    match out {
                        Ok(BodyFlow::Continue(b)) => assert_eq!(&b[..], &[b'b'; 64][..]),
                        _ => panic!("body_set: body not forwarded"),
                    }
                }
            }
            s.finish();
        }
    });

    let mut g = c.benchmark_group("hostcall");
    g.throughput(Throughput::Elements(CALLS));
    for (name, phase, ch) in &chains {
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                local.block_on(&rt, async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        one(ch, *phase, &body).await;
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
