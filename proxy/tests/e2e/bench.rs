//! Issue 6, point 1: `weir bench` runs an upstream, the proxy and a load generator in one
//! process and reports the chain's cost. Here for one second each way, from a directory outside
//! the checkout (the built-in filters are found beside the binary), closed-loop and open-loop.

use crate::support::weir::weir_bin;
use crate::support::TempDir;
use serde_json::{json, Value};
use std::time::Duration;

async fn bench(args: &[&str]) -> Value {
    let dir = TempDir::new("bench");
    let run = tokio::process::Command::new(weir_bin())
        .arg("bench")
        .args(args)
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("weir bench ended within 120 s")
        .expect("run weir bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "weir bench {args:?}: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_the_chain_its_filters_and_the_plain_proxy() {
    let v = bench(&["--duration", "1s", "--connections", "2", "--json"]).await;
    assert_eq!(
        v["filters"],
        json!(["auth", "rate_limit", "header_rewrite", "fault"]),
        "{v}"
    );
    for side in ["with_filters", "without_filters"] {
        let s = &v[side];
        assert!(s["requests"].as_u64().is_some_and(|n| n > 0), "{side}: {v}");
        assert_eq!(s["errors"], 0, "{side}: {v}");
        assert_eq!(s["non_2xx"], 0, "{side}: {v}");
        for k in [
            "rps",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "cpu_us_per_request",
            "peak_rss_bytes",
        ] {
            assert!(s[k].as_f64().is_some_and(|x| x > 0.0), "{side}.{k}: {v}");
        }
    }
    let per_filter = v["with_filters"]["filter_us_per_request"]
        .as_array()
        .expect("per-filter shares");
    assert_eq!(per_filter.len(), 4, "{v}");
    assert!(
        v["chain_cpu_ratio"].as_f64().is_some_and(|r| r > 0.0),
        "{v}"
    );

    // Open loop: the rate is kept and reported.
    let v = bench(&["--duration", "1s", "--rate", "100", "--json"]).await;
    assert_eq!(v["rate"], 100, "{v}");
    assert!(
        v["with_filters"]["requests"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{v}"
    );
    assert_eq!(v["with_filters"]["errors"], 0, "{v}");
}
