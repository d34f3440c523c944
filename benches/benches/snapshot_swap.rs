//! Snapshot swap latency (issue 6, point 3): the full reload protocol of DESIGN.md §2 on a
//! running in-process proxy (`weir::app::Proxy::start`, one worker) — parse the YAML, build the
//! snapshot (routes, clusters, filters compiled/prepared), prepare the filters on the worker,
//! publish — timed per call of `weir::app::swap`. Two configs: without filters, and with the
//! four built-in filters chained (`target/filters/*.wasm`, from `scripts/build-filters.sh`;
//! that case is skipped with a message when the modules are missing). Run:
//! `cargo bench -p weir-benches --bench snapshot_swap`.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use weir::app::{self, Proxy, StartOptions};

fn filters_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("filters")
}

fn yaml(with_filters: bool, filters: &Path) -> String {
    let mut y = String::from(
        "access_log: { path: \"off\" }\nlisteners:\n  - name: bench\n    address: 127.0.0.1:0\n",
    );
    if with_filters {
        y.push_str("    filters: [auth, limit, headers, fault]\n");
    }
    y.push_str(
        "    routes:\n      - match: { path_prefix: / }\n        cluster: up\n\
         clusters:\n  - name: up\n    endpoints: [127.0.0.1:9]\n",
    );
    if with_filters {
        let f = filters.display();
        // One line per element: a `\` line continuation would strip the YAML indentation.
        let lines = [
            "filters:".to_string(),
            "  - name: auth".to_string(),
            format!("    module: {f}/auth.wasm"),
            "    config: { api_keys: { header: x-api-key, keys: { bench-key: bench } } }".to_string(),
            "  - name: limit".to_string(),
            format!("    module: {f}/rate_limit.wasm"),
            "    config: { rate: 1000000000, per: second, key: global }".to_string(),
            "  - name: headers".to_string(),
            format!("    module: {f}/header_rewrite.wasm"),
            "    config: { request: { set: { x-env: bench } }, response: { set: { x-proxied-by: weir } } }".to_string(),
            "  - name: fault".to_string(),
            format!("    module: {f}/fault.wasm"),
            "    config: { abort: { status: 503, percent: 0 } }".to_string(),
        ];
        for l in lines {
            y.push_str(&l);
            y.push('\n');
        }
    }
    y
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("weir-bench-swap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let filters = filters_dir();
    let have_filters = ["auth", "rate_limit", "header_rewrite", "fault"]
        .iter()
        .all(|f| filters.join(format!("{f}.wasm")).is_file());

    let mut cases = vec![("no_filters", false)];
    if have_filters {
        cases.push(("four_filters", true));
    } else {
        eprintln!(
            "snapshot_swap: no built-in filters in {} (scripts/build-filters.sh); four_filters skipped",
            filters.display()
        );
    }
    let mut g = c.benchmark_group("snapshot_swap");
    g.sample_size(20);
    for (name, with_filters) in cases {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml(with_filters, &filters)).expect("write config");
        let cfg = app::load(&path).unwrap_or_else(|e| panic!("{name}: {}", e.join("\n")));
        let proxy = rt
            .block_on(Proxy::start(
                cfg,
                &dir,
                StartOptions {
                    workers: Some(1),
                    ..Default::default()
                },
            ))
            .unwrap_or_else(|e| panic!("{name}: {}", e.join("\n")));
        {
            // `swap` blocks on the runtime's handle: call it from this (non-runtime) thread
            // inside the runtime's context.
            let _ctx = rt.enter();
            let before = proxy.shared.snapshot.load().version;
            let after = app::swap(&proxy.shared, app::load(&path), &dir).expect("swap");
            assert!(after > before, "{name}: version did not advance");
            g.bench_function(name, |b| {
                b.iter(|| app::swap(&proxy.shared, app::load(&path), &dir).expect("swap"))
            });
        }
        rt.block_on(proxy.shutdown());
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
