//! Route matching: first match over a `Vec<Matcher>` of 10 and 1,000 routes, for prefix, regex,
//! header and mixed route tables; the request hits the middle and the last route (worst case).
//! Also one weighted-split pick.
//!
//! `cargo bench -p weir-benches --bench route_match`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use std::collections::BTreeMap;
use weir::route::matcher::{first_match, RequestView};
use weir::route::split::WeightedSplit;
use weir_benches::{request_for, routes, Mix};

fn route_match(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_match");
    for n in [10usize, 1000] {
        for mix in Mix::ALL {
            let table = routes(mix, n);
            for (pos, i) in [("middle", n / 2), ("last", n - 1)] {
                let (path, headers) = request_for(mix, i);
                let method = http::Method::GET;
                let view = RequestView {
                    method: &method,
                    path: &path,
                    query: Some("page=2&sort=asc"),
                    host: Some("bench.test"),
                    headers: &headers,
                };
                assert_eq!(first_match(&table, &view), Some(i));
                let id = BenchmarkId::new(format!("{}/{pos}", mix.name()), n);
                g.bench_with_input(id, &view, |b, v| {
                    b.iter(|| first_match(black_box(&table), black_box(v)))
                });
            }
        }
    }
    g.finish();

    let weights: BTreeMap<String, u32> = [
        ("v1".to_string(), 90),
        ("v2".to_string(), 9),
        ("v3".to_string(), 1),
    ]
    .into();
    let split = WeightedSplit::new(&weights).expect("valid split");
    let mut r: u64 = 0x9e37_79b9_7f4a_7c15;
    c.bench_function("split_pick/3", |b| {
        b.iter(|| {
            r = r
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            black_box(split.pick(r)).len()
        })
    });
}

criterion_group!(benches, route_match);
criterion_main!(benches);
