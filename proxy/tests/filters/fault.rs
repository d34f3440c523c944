//! fault through weir: 100 concurrent 500 ms delays finish together (the worker is not
//! blocked), abort percent over 10,000 requests within ±2 points, override headers on/off.

use crate::one_filter_yaml;
use crate::support::{Client, Upstream, Weir};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_delays_do_not_serialise() {
    let up = Upstream::start("up").await;
    let cfg = json!({"delay": {"fixed": "500ms", "percent": 100}});
    let weir = Weir::start(&one_filter_yaml(&up.endpoint(), "fault", &cfg)).await;
    let addr = weir.addr("edge");
    // Connect first, so the clock measures the requests only.
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(Client::h1(addr).await);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut c in clients {
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = c.get("/delayed").await;
            (r.status, t.elapsed())
        }));
    }
    for t in tasks {
        let (status, took) = t.await.expect("client");
        assert_eq!(status, 200);
        assert!(took >= Duration::from_millis(500), "delayed: {took:?}");
    }
    let total = start.elapsed();
    // Serialised they would take 50 s; this is a correctness bound, not a perf target.
    assert!(
        total < Duration::from_secs(5),
        "100 delayed requests took {total:?}"
    );
    assert_eq!(up.requests(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_percent_within_two_points_over_ten_thousand() {
    let up = Upstream::start("up").await;
    let cfg = json!({"abort": {"status": 503, "percent": 10}});
    let weir = Weir::start(&one_filter_yaml(&up.endpoint(), "fault", &cfg)).await;
    let addr = weir.addr("edge");
    let conns = 8;
    let per = 10_000 / conns;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::h1(addr).await;
            let (mut ok, mut aborted) = (0u32, 0u32);
            for _ in 0..per {
                let r = c.get("/f").await;
                match r.status {
                    200 => ok += 1,
                    503 => {
                        assert_eq!(r.header("x-fault-injected").as_deref(), Some("abort"));
                        aborted += 1
                    }
                    s => panic!("status {s}"),
                }
            }
            (ok, aborted)
        }));
    }
    let (mut ok, mut aborted) = (0, 0);
    for t in tasks {
        let (o, a) = t.await.expect("client");
        ok += o;
        aborted += a;
    }
    assert_eq!(ok + aborted, 10_000);
    let pct = f64::from(aborted) * 100.0 / 10_000.0;
    assert!((8.0..=12.0).contains(&pct), "aborted {pct}% (want 10 ± 2)");
    assert_eq!(up.requests(), ok as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_headers_on_and_off() {
    let up = Upstream::start("up").await;
    let on = Weir::start(&one_filter_yaml(&up.endpoint(), "fault", &json!({}))).await;
    let mut c = on.h1("edge").await;
    assert_eq!(c.get("/x").await.status, 200);
    let r = c.get_with("/x", &[("x-fault-abort", "418")]).await;
    assert_eq!(r.status, 418);
    let t = Instant::now();
    let r = c.get_with("/x", &[("x-fault-delay-ms", "300")]).await;
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );

    let off = Weir::start(&one_filter_yaml(
        &up.endpoint(),
        "fault",
        &json!({"header_override": false}),
    ))
    .await;
    let mut c = off.h1("edge").await;
    let r = c
        .get_with(
            "/x",
            &[("x-fault-abort", "418"), ("x-fault-delay-ms", "60000")],
        )
        .await;
    assert_eq!(r.status, 200, "overrides ignored when switched off");
}
