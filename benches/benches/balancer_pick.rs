//! One balancer pick per iteration for each policy over 10 endpoints: all available, and with
//! two endpoints unavailable (ejected/unhealthy).
//!
//! `cargo bench -p weir-benches --bench balancer_pick`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use weir::cluster::balancer::{Balancer, PickContext};
use weir::config::LbPolicy;

fn balancer_pick(c: &mut Criterion) {
    let ids: Vec<String> = (0..10).map(|i| format!("127.0.0.1:{}", 9001 + i)).collect();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-user", http::HeaderValue::from_static("user-12345"));
    let ctx = PickContext {
        headers: &headers,
        source_ip: Some([10, 0, 0, 7].into()),
    };
    let policies = [
        ("round_robin", LbPolicy::RoundRobin, None),
        ("least_request", LbPolicy::LeastRequest, None),
        ("random", LbPolicy::Random, None),
        (
            "ring_hash_header",
            LbPolicy::RingHash,
            Some("header:x-user"),
        ),
        ("ring_hash_source_ip", LbPolicy::RingHash, Some("source_ip")),
    ];
    let mut g = c.benchmark_group("balancer_pick");
    for (name, policy, hash_on) in policies {
        let b = Balancer::new_with_ids(policy, &ids, hash_on).expect("valid balancer");
        let all = |_: usize| true;
        g.bench_function(BenchmarkId::new(name, "10/all"), |bench| {
            bench.iter(|| b.pick(black_box(&ctx), &all))
        });
        let some = |i: usize| i != 3 && i != 7;
        g.bench_function(BenchmarkId::new(name, "10/2-unavailable"), |bench| {
            bench.iter(|| b.pick(black_box(&ctx), &some))
        });
    }
    // The full least_request cycle a proxied request pays: pick + start + end.
    let b = Balancer::new_with_ids(LbPolicy::LeastRequest, &ids, None).expect("valid balancer");
    g.bench_function("least_request_cycle/10", |bench| {
        bench.iter(|| {
            let ep = b.pick(black_box(&ctx), &|_| true).unwrap_or(0);
            b.on_request_start(ep);
            b.on_request_end(ep);
        })
    });
    g.finish();
}

criterion_group!(benches, balancer_pick);
criterion_main!(benches);
