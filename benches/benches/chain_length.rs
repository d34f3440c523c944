//! Chain execution cost (issue 3, point 11 and issue 6, point 3): one request (request headers,
//! response headers, finish: `proxy_on_context_create`, the two header callbacks, `proxy_on_done`,
//! `proxy_on_log`, `proxy_on_delete` per filter) on one worker-like thread (current-thread tokio
//! + `LocalSet`), through
//!
//! - `no_filter`: an empty chain (the harness loop: header lists, stream state);
//! - `empty_filter`: one WAT filter whose callbacks just continue;
//! - chains of 1, 4 and 8 filters, each a separate VM adding one request header;
//! - `builtin/4`: the four built-in filters as `benches/compare.sh` chains them (auth with an API
//!   key, a global rate_limit bucket, header_rewrite, fault at 0 %), from `target/filters/`
//!   (`scripts/build-filters.sh`; skipped with a note when they are not built), on a request and
//!   response head converted from and written back to `http` types as the proxy does, plus one
//!   response body chunk. This is the chain's whole per-request cost minus the network.
//!
//! The VMs are built once before measuring; the bench checks that every filter runs and, at the
//! end, that no VM was instantiated per request (each module counts its `proxy_on_vm_start`
//! calls in a filter metric). Run: `cargo bench -p weir-benches --bench chain_length`.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
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

/// The built-in filters named in `only` (all four when empty), configured as
/// `benches/compare.sh` does; `None` when the modules are not built.
fn builtin_chain(host: &WasmHost, only: &[&str]) -> Option<FilterChain> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/filters");
    let filters = [
        (
            "auth",
            "auth",
            r#"{"api_keys":{"header":"x-api-key","keys":{"bench-key":"bench"}}}"#,
        ),
        (
            "limit",
            "rate_limit",
            r#"{"rate":1000000000,"per":"second","key":"global"}"#,
        ),
        (
            "headers",
            "header_rewrite",
            r#"{"request":{"set":{"x-env":"bench"},"remove":["x-debug"]},"response":{"set":{"x-proxied-by":"weir"}}}"#,
        ),
        (
            "fault",
            "fault",
            r#"{"delay":{"fixed":"200ms","percent":0},"abort":{"status":503,"percent":0},"header_override":false}"#,
        ),
    ];
    let mut vms = Vec::new();
    for (name, file, config) in filters {
        if !only.is_empty() && !only.contains(&file) {
            continue;
        }
        let path = dir.join(format!("{file}.wasm"));
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!(
                "chain_length: {} missing (run scripts/build-filters.sh): builtin/4 skipped",
                path.display()
            );
            return None;
        };
        let module = host.compile(&bytes).expect("built-in filter compiles");
        let mut spec = PluginSpec::new(name);
        spec.configuration = config.as_bytes().to_vec();
        let vm = PluginVm::new(&host.prepare(spec, module), Rc::new(NoServices)).expect("vm");
        vm.activate();
        vms.push(vm);
    }
    Some(FilterChain::new(vms))
}

/// One request through the built-in chain, converted as the proxy does; returns the response
/// header `x-proxied-by` (set by header_rewrite) to prove the chain ran.
async fn one_builtin(chain: &FilterChain) -> Option<http::HeaderValue> {
    let req = http::Request::builder()
        .uri("/")
        .header("host", "127.0.0.1:28184")
        .header("x-api-key", "bench-key")
        .header("x-forwarded-for", "127.0.0.1")
        .header("x-forwarded-proto", "http")
        .header("x-request-id", "9f1c2a7e5b3d4c6a8e0f1a2b3c4d5e6f")
        .body(())
        .expect("request");
    let mut s = chain.new_stream(StreamInfo::default());
    let (parts, _) = req.into_parts();
    let mut parts = parts;
    let list = HeaderList::from_request(&parts.method, &parts.uri, "http", &parts.headers);
    assert_eq!(s.on_request_headers(list, true).await, Flow::Continue);
    s.request_headers()
        .apply_to_request(&mut parts.method, &mut parts.uri, &mut parts.headers)
        .expect("request head");
    std::hint::black_box(http::Request::from_parts(parts, ()));
    let (mut rparts, _) = http::Response::builder()
        .header("server", "nginx/1.22.1")
        .header("date", "Sun, 22 Nov 2026 08:56:35 GMT")
        .header("content-type", "text/plain")
        .header("content-length", "24")
        .body(())
        .expect("response")
        .into_parts();
    let list = HeaderList::from_response(rparts.status, &rparts.headers);
    assert_eq!(s.on_response_headers(list, false).await, Flow::Continue);
    s.response_headers()
        .apply_to_response(&mut rparts.status, &mut rparts.headers)
        .expect("response head");
    let body = Bytes::from_static(b"hello from the upstream\n");
    let _ = s.on_response_body(body, true).await;
    s.finish();
    rparts.headers.get("x-proxied-by").cloned()
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
    let builtin = local.block_on(&rt, async { builtin_chain(&host, &[]) });
    // Each built-in filter alone, and the same conversions with no filter, to attribute builtin/4.
    let singles: Vec<(&str, FilterChain)> = if builtin.is_some() {
        local.block_on(&rt, async {
            let mut v = vec![("builtin/none", FilterChain::new(Vec::new()))];
            for f in ["auth", "rate_limit", "header_rewrite", "fault"] {
                let name: &str = match f {
                    "auth" => "builtin/auth",
                    "rate_limit" => "builtin/rate_limit",
                    "header_rewrite" => "builtin/header_rewrite",
                    _ => "builtin/fault",
                };
                v.extend(builtin_chain(&host, &[f]).map(|c| (name, c)));
            }
            v
        })
    } else {
        Vec::new()
    };
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
    if let Some(ch) = &builtin {
        local.block_on(&rt, async {
            let h = one_builtin(ch).await;
            assert_eq!(h.as_ref().map(|v| v.as_bytes()), Some(&b"weir"[..]));
        });
        g.bench_function(BenchmarkId::from_parameter("builtin/4"), |b| {
            b.iter_custom(|iters| {
                local.block_on(&rt, async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        one_builtin(ch).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    for (name, ch) in &singles {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                local.block_on(&rt, async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        one_builtin(ch).await;
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
