//! `fault` in the real host: abort percentages, delays that pause the stream and resume on
//! the root's tick, override headers on/off, metrics, bad configs.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use weir_sdk_harness::Step;

#[test]
fn abort_always() {
    let h = load("fault", json!({"abort": {"status": 503, "percent": 100}}));
    let out = h.request().send();
    let lr = out.local_response().expect("aborted");
    assert_eq!(lr.status, 503);
    assert_eq!(lr.header("x-fault-injected"), Some("abort"));
    assert!(lr.text().contains("fault filter abort"), "{}", lr.text());
    assert_eq!(h.metric("fault_aborts_injected"), Some(1));
}

#[test]
fn abort_percent_holds_within_two_points() {
    let h = load("fault", json!({"abort": {"status": 500, "percent": 10}}));
    let n = 10_000;
    let mut aborted = 0;
    for _ in 0..n {
        let out = h.request().send();
        match out.status() {
            Some(500) => aborted += 1,
            None => assert!(out.forwarded()),
            Some(other) => panic!("status {other}"),
        }
    }
    let pct = aborted as f64 * 100.0 / n as f64;
    assert!((8.0..=12.0).contains(&pct), "aborted {pct}%");
    assert_eq!(h.metric("fault_aborts_injected"), Some(aborted));
}

#[test]
fn no_fault_by_default() {
    let h = load("fault", json!({}));
    for _ in 0..100 {
        assert!(h.request().send().forwarded());
    }
}

#[test]
fn delay_pauses_and_resumes_on_tick() {
    let h = load(
        "fault",
        json!({"delay": {"fixed": "200ms", "percent": 100}}),
    );
    let start = Instant::now();
    let outs: Vec<_> = (0..20).map(|_| h.request().send()).collect();
    assert!(outs.iter().all(|o| o.paused()), "every request is parked");
    // Ticks resume them once due; the worker never blocked (all 20 parked at once).
    let mut ticks = 0;
    while outs.iter().any(|o| o.paused()) && ticks < 1000 {
        h.tick();
        ticks += 1;
    }
    assert!(
        outs.iter().all(|o| o.forwarded()),
        "all resumed after {ticks} ticks"
    );
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(h.metric("fault_delays_injected"), Some(20));
    // Nothing parked: the filter stops ticking.
    let t = h.ticks();
    h.advance(Duration::from_millis(50));
    assert!(
        h.ticks() <= t + 1,
        "ticking stopped ({} → {})",
        t,
        h.ticks()
    );
}

#[test]
fn delay_then_abort() {
    let h = load(
        "fault",
        json!({"delay": {"fixed": "100ms"}, "abort": {"status": 504, "percent": 100}}),
    );
    let out = h.request().send();
    assert!(out.paused());
    out.wait();
    assert_eq!(out.status(), Some(504));
}

#[test]
fn override_headers() {
    let h = load("fault", json!({}));
    let out = h.request().header("x-fault-abort", "418").send();
    assert_eq!(out.status(), Some(418));
    let out = h.request().header("x-fault-abort", "42").send();
    assert!(out.forwarded(), "invalid status ignored");
    let out = h.request().header("x-fault-delay-ms", "100").send();
    assert!(out.paused());
    out.wait();
    assert!(out.forwarded());
}

#[test]
fn override_headers_switched_off() {
    let h = load("fault", json!({"header_override": false}));
    let out = h
        .request()
        .header("x-fault-abort", "418")
        .header("x-fault-delay-ms", "1000")
        .send();
    assert!(!out.paused());
    assert!(out.forwarded());
}

#[test]
fn bad_configs_name_the_field() {
    for (cfg, field) in [
        (json!({"abort": {"status": 42}}), "abort.status"),
        (
            json!({"delay": {"fixed": "200ms", "percent": 101}}),
            "delay.percent",
        ),
        (json!({"delay": {"fixed": "soon"}}), "delay.fixed"),
        (json!({"chaos": true}), "chaos"),
    ] {
        let e = config_error("fault", cfg.clone());
        assert_eq!(e.step(), Step::Configure, "{cfg}: {e}");
        assert!(e.to_string().contains(field), "{cfg}: {e}");
    }
}
