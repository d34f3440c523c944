//! Issue 3, points 5–6: `proxy_http_call` to a cluster by name through weir's real pool (the
//! upstream counts the calls; weir counts them under the cluster), with its timeout, response
//! delivered to the filter, BAD_ARGUMENT for an unknown cluster or missing pseudo headers;
//! `on_tick` per root context per worker, and a tick resuming a parked request.

use crate::upstream::HostUpstream;
use crate::util::{act, e2e, metrics, simple, start};
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_call_to_a_cluster_through_the_pool() {
    let up = HostUpstream::start().await;
    let weir = start(&simple(&up, &["f"], &e2e("f", "F", "")), 1).await;
    let mut c = weir.h1("edge").await;
    for i in 1..=3 {
        let r = act(&mut c, "/x", "call", &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.upstream_header("x-call-status").as_deref(), Some("200"));
        assert_eq!(r.upstream_header("x-call-body").as_deref(), Some("called"));
        assert_eq!(
            r.upstream_header("x-call-upstream").as_deref(),
            Some("host")
        );
        assert_eq!(up.calls(), i);
    }
    let text = metrics(&weir).await;
    assert!(
        text.lines().any(
            |l| l.starts_with("weir_upstream_requests_total{cluster=\"calls\"")
                && l.contains("code=\"200\"")
                && l.ends_with(" 3")
        ),
        "calls counted under cluster `calls`:\n{text}"
    );

    // The call's own timeout (200 ms against a 2 s answer): delivered as a failed call.
    let r = act(&mut c, "/x", "calltimeout", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-call-status").as_deref(), Some("none"));
    assert_eq!(r.upstream_header("x-call-body").as_deref(), Some(""));

    // Unknown cluster, missing :path, :method or :authority: BAD_ARGUMENT, nothing sent.
    let before = up.requests();
    let r = act(&mut c, "/x", "badcall", &[]).await;
    assert_eq!(
        r.upstream_header("x-call-error").as_deref(),
        Some("Some(BadArgument) Some(BadArgument) Some(BadArgument) Some(BadArgument)")
    );
    assert_eq!(
        up.requests(),
        before + 1,
        "only the proxied request reached the upstream"
    );
}

/// `seq:ticks` pairs of every VM of the filter, as answered by its `ticks` action.
fn ticks(body: &str) -> BTreeMap<u64, u64> {
    body.split(',')
        .filter_map(|p| p.split_once(':'))
        .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_tick_per_root_context_per_worker_and_tick_resumes() {
    let up = HostUpstream::start().await;
    let f = e2e("t", "T", "vm_id: ticker");
    let weir = start(&simple(&up, &["t"], &f), 2).await;
    assert_eq!(weir.workers, 2);
    let mut c = weir.h1("edge").await;
    // Both workers' root contexts tick (each counts its own ticks in shared data).
    let mut last = String::new();
    let mut ok = false;
    for _ in 0..500 {
        last = act(&mut c, "/x", "ticks", &[]).await.text();
        let t = ticks(&last);
        if t.len() == 2 && t.values().all(|n| *n >= 2) {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(ok, "expected 2 VMs (one per worker), each ticking: {last}");
    assert_eq!(ticks(&last).len(), 2, "one root context per worker: {last}");
    // A request parked in request headers is resumed by the next tick.
    let r = act(&mut c, "/x", "pause@reqh", &[]).await;
    assert_eq!(r.upstream_header("x-resumed").as_deref(), Some("tick"));
}
