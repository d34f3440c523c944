//! `rate_limit` in the real host: exact counts, headers, retry-after, keys, two workers sharing
//! buckets, refill, eviction, bad configs.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use weir_sdk_harness::{Exchange, Harness, Step};

/// Sends one request; returns (allowed, x-ratelimit-remaining as the client sees it).
fn hit(
    h: &Harness,
    f: impl FnOnce(weir_sdk_harness::RequestBuilder<'_>) -> weir_sdk_harness::RequestBuilder<'_>,
) -> (bool, Exchange) {
    let out = f(h.request()).send();
    assert!(!out.paused());
    let allowed = out.forwarded();
    if allowed {
        out.respond(200).send();
    }
    (allowed, out)
}

fn remaining(out: &Exchange) -> String {
    match out.local_response() {
        Some(lr) => lr
            .header("x-ratelimit-remaining")
            .unwrap_or("-")
            .to_string(),
        None => out
            .response_header("x-ratelimit-remaining")
            .unwrap_or_default(),
    }
}

#[test]
fn exact_count_headers_and_retry_after() {
    let h = load(
        "rate_limit",
        json!({"rate": 5, "per": "minute", "burst": 5, "key": "global"}),
    );
    for i in 0..5 {
        let (ok, out) = hit(&h, |r| r);
        assert!(ok, "request {i} allowed");
        assert_eq!(
            out.response_header("x-ratelimit-limit").as_deref(),
            Some("5")
        );
        assert_eq!(remaining(&out), (4 - i).to_string());
    }
    for _ in 0..3 {
        let (ok, out) = hit(&h, |r| r);
        assert!(!ok);
        let lr = out.local_response().unwrap();
        assert_eq!(lr.status, 429);
        assert_eq!(lr.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(lr.header("x-ratelimit-remaining"), Some("0"));
        // 5 per minute: one token every 12 s.
        assert_eq!(lr.header("retry-after"), Some("12"));
    }
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    let h = load("rate_limit", json!({"rate": 1, "per": "minute"}));
    assert!(hit(&h, |r| r).0);
    let (_, out) = hit(&h, |r| r);
    assert_eq!(
        out.local_response().unwrap().header("retry-after"),
        Some("60")
    );

    let h = load(
        "rate_limit",
        json!({"rate": 2, "per": "second", "burst": 1}),
    );
    assert!(hit(&h, |r| r).0);
    let (_, out) = hit(&h, |r| r);
    assert_eq!(
        out.local_response().unwrap().header("retry-after"),
        Some("1")
    );
}

#[test]
fn header_key_limits_each_value_and_skips_requests_without_it() {
    let h = load(
        "rate_limit",
        json!({"rate": 2, "per": "hour", "key": "header:x-user"}),
    );
    for user in ["alice", "bob"] {
        assert!(hit(&h, |r| r.header("x-user", user)).0);
        assert!(hit(&h, |r| r.header("x-user", user)).0);
        assert!(!hit(&h, |r| r.header("x-user", user)).0, "{user} third");
    }
    for _ in 0..10 {
        assert!(hit(&h, |r| r).0, "no x-user: not limited");
    }
}

#[test]
fn source_ip_key_ignores_the_port() {
    let h = load(
        "rate_limit",
        json!({"rate": 1, "per": "hour", "key": "source_ip"}),
    );
    assert!(hit(&h, |r| r.source("10.0.0.1:1000")).0);
    assert!(
        !hit(&h, |r| r.source("10.0.0.1:2000")).0,
        "same ip, other port"
    );
    assert!(hit(&h, |r| r.source("10.0.0.2:1000")).0);
    assert!(hit(&h, |r| r.source("[2001:db8::1]:443")).0);
    assert!(!hit(&h, |r| r.source("[2001:db8::1]:444")).0);
}

#[test]
fn exact_across_two_workers() {
    // Per hour: no token refills while the test runs (one every 36 s), so the count is exact
    // however slow the machine.
    let cfg = json!({"rate": 100, "per": "hour", "burst": 100, "key": "global"});
    let h = Harness::builder(wasm("rate_limit"))
        .config(cfg)
        .vm_id("rl")
        .load()
        .unwrap();
    let w2 = h.worker().unwrap();
    let mut allowed = [0u32; 2];
    let mut denied = 0;
    for i in 0..300 {
        let w = i % 2;
        let (ok, _) = hit(if w == 0 { &h } else { &w2 }, |r| r);
        if ok {
            allowed[w] += 1;
        } else {
            denied += 1;
        }
    }
    assert_eq!(allowed[0] + allowed[1], 100, "{allowed:?}");
    assert_eq!(allowed, [50, 50]);
    assert_eq!(denied, 200);
}

#[test]
fn tokens_refill_at_the_rate() {
    let h = load(
        "rate_limit",
        json!({"rate": 4, "per": "second", "burst": 1}),
    );
    assert!(hit(&h, |r| r).0);
    assert!(!hit(&h, |r| r).0);
    // One token every 250 ms.
    h.advance(Duration::from_millis(260));
    assert!(hit(&h, |r| r).0, "refilled");
    assert!(!hit(&h, |r| r).0);
}

#[test]
fn full_buckets_are_evicted() {
    let h = load(
        "rate_limit",
        json!({"rate": 1, "per": "second", "burst": 1, "key": "header:x-k",
               "eviction": {"interval": "5ms", "batch": 1000}}),
    );
    assert!(hit(&h, |r| r.header("x-k", "first")).0);
    assert_eq!(
        h.shared_data_len(),
        1,
        "a bucket for the key (refills in 1 s)"
    );
    for i in 0..200 {
        assert!(hit(&h, |r| r.header("x-k", &i.to_string())).0);
    }
    // Buckets refill in 1 s; each tick (5 ms) sweeps the queued keys.
    let mut rounds = 0;
    while h.shared_data_len() > 0 && rounds < 2000 {
        h.tick();
        rounds += 1;
    }
    assert_eq!(
        h.shared_data_len(),
        0,
        "every bucket evicted after {rounds} ticks"
    );
    // An evicted key starts again with a full bucket.
    assert!(hit(&h, |r| r.header("x-k", "7")).0);
    assert!(!hit(&h, |r| r.header("x-k", "7")).0);
}

#[test]
fn bad_configs_name_the_field() {
    for (cfg, field) in [
        (json!({"rate": -1}), "rate"),
        (json!({"rate": 0}), "rate"),
        (json!({}), "rate"),
        (json!({"rate": 1, "per": "fortnight"}), "per"),
        (json!({"rate": 1, "key": "cookie:x"}), "key"),
        (json!({"rate": 1, "burst": 0}), "burst"),
        (json!({"rate": 1, "bogus": 1}), "bogus"),
    ] {
        let e = config_error("rate_limit", cfg.clone());
        assert_eq!(e.step(), Step::Configure, "{cfg}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(field), "{cfg}: {msg}");
    }
}
