//! Issue 2, point 3: round_robin, least_request (power of two choices), random and ring_hash
//! (`hash_on: header:NAME` and `source_ip`): a key always reaches the same endpoint, and
//! removing one of four endpoints moves only about a quarter of the keys.

use crate::support::upstream::{notify_changed, wait_until};
use crate::support::{Client, Upstream, Weir};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

async fn upstreams(names: &[&str]) -> Vec<Upstream> {
    let mut v = Vec::new();
    for n in names {
        v.push(Upstream::start(n).await);
    }
    v
}

fn yaml(ups: &[&Upstream], lb: &str) -> String {
    let eps: Vec<String> = ups.iter().map(|u| u.endpoint()).collect();
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: {{ path_prefix: / }}
        cluster: pool
clusters:
  - name: pool
    endpoints: [{}]
{lb}
"#,
        eps.join(", ")
    )
}

async fn count(c: &mut Client, n: usize, path: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for _ in 0..n {
        let r = c.get(path).await;
        assert_eq!(r.status, 200, "{r:?}");
        *m.entry(r.upstream()).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_even() {
    let ups = upstreams(&["a", "b", "c"]).await;
    let weir = Weir::start(&yaml(
        &ups.iter().collect::<Vec<_>>(),
        "    lb: round_robin",
    ))
    .await;
    let mut c = weir.h1("edge").await;
    let m = count(&mut c, 300, "/rr").await;
    for u in &ups {
        let n = *m.get(&u.name).unwrap_or(&0);
        assert!((99..=101).contains(&n), "round robin on one worker: {m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_reaches_every_endpoint() {
    let ups = upstreams(&["a", "b", "c"]).await;
    let weir = Weir::start(&yaml(&ups.iter().collect::<Vec<_>>(), "    lb: random")).await;
    let mut c = weir.h1("edge").await;
    let m = count(&mut c, 600, "/random").await;
    for u in &ups {
        // expected 200 each; 120 is more than 6 standard deviations away
        let n = *m.get(&u.name).unwrap_or(&0);
        assert!(n > 120, "random: {m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_avoids_the_busy_endpoint() {
    // `slow` holds every request until released; `b` and `c` answer at once. Requests go out
    // one at a time, each only after the previous one is held or answered. Least-request
    // keeps choosing the idle endpoints, so `slow` gets only a few (round robin or random
    // would give it a third).
    let slow = Upstream::start("slow").await;
    let b = Upstream::start("b").await;
    let c = Upstream::start("c").await;
    let weir = Weir::start(&yaml(&[&slow, &b, &c], "    lb: least_request")).await;
    let client = Client::h2c(weir.addr("edge")).await;
    b.release();
    c.release();
    const N: usize = 60;
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..N {
        let mut cl = client.h2_clone();
        let d = done.clone();
        tasks.push(tokio::spawn(async move {
            let r = cl.get("/hold").await;
            d.fetch_add(1, Ordering::SeqCst);
            notify_changed();
            r
        }));
        // Next request only once this one is held on `slow` or fully answered by b / c.
        wait_until("request held or answered", || {
            slow.held() + done.load(Ordering::SeqCst) > i
        })
        .await;
    }
    let on_slow = slow.held();
    slow.release();
    for t in tasks {
        assert_eq!(t.await.expect("task").status, 200);
    }
    assert!(
        on_slow <= 14,
        "least_request sent {on_slow} of {N} requests to the endpoint with many in flight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_header_is_sticky_and_moves_a_quarter_on_removal() {
    let ups = upstreams(&["r0", "r1", "r2", "r3"]).await;
    let all: Vec<&Upstream> = ups.iter().collect();
    let lb = "    lb: ring_hash\n    hash_on: header:x-user";
    let weir = Weir::start(&yaml(&all, lb)).await;
    const KEYS: usize = 400;
    let mut first: HashMap<usize, String> = HashMap::new();
    let mut c1 = weir.h1("edge").await;
    let mut c2 = weir.h1("edge").await;
    for k in 0..KEYS {
        let key = format!("user-{k}");
        let a = c1.get_with("/h", &[("x-user", &key)]).await.upstream();
        let b = c2.get_with("/h", &[("x-user", &key)]).await.upstream();
        assert_eq!(a, b, "key {key} reached two endpoints");
        first.insert(k, a);
    }
    let mut per: HashMap<&str, usize> = HashMap::new();
    for v in first.values() {
        *per.entry(v.as_str()).or_default() += 1;
    }
    assert_eq!(per.len(), 4, "keys spread over all endpoints: {per:?}");
    drop(c1);
    drop(c2);
    drop(weir);

    // Same endpoints minus r3 (a second config): only r3's keys move.
    let weir2 = Weir::start(&yaml(&all[..3], lb)).await;
    let mut c = weir2.h1("edge").await;
    let (mut moved, mut moved_from_survivor) = (0, 0);
    for k in 0..KEYS {
        let key = format!("user-{k}");
        let now = c.get_with("/h", &[("x-user", &key)]).await.upstream();
        if now != first[&k] {
            moved += 1;
            if first[&k] != "r3" {
                moved_from_survivor += 1;
            }
        }
    }
    let frac = moved as f64 / KEYS as f64;
    assert!(
        (0.10..=0.40).contains(&frac),
        "removing 1 of 4 endpoints moved {:.1}% of keys",
        frac * 100.0
    );
    assert!(
        moved_from_survivor <= KEYS / 50,
        "{moved_from_survivor} keys moved although their endpoint stayed (ring must be consistent)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_source_ip_is_sticky() {
    let ups = upstreams(&["s0", "s1", "s2", "s3"]).await;
    let weir = Weir::start(&yaml(
        &ups.iter().collect::<Vec<_>>(),
        "    lb: ring_hash\n    hash_on: source_ip",
    ))
    .await;
    let addr = weir.addr("edge");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 1..=24u8 {
        // 127.0.0.0/8 is all loopback: each client gets its own source address.
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + i));
        let mut endpoints = Vec::new();
        for _ in 0..2 {
            let mut c = Client::h1_from(addr, Some(ip)).await;
            for _ in 0..3 {
                endpoints.push(c.get("/ip").await.upstream());
            }
        }
        assert!(
            endpoints.windows(2).all(|w| w[0] == w[1]),
            "source {ip} reached several endpoints: {endpoints:?}"
        );
        *seen.entry(endpoints[0].clone()).or_default() += 1;
    }
    assert!(
        seen.len() >= 2,
        "24 source addresses all hashed to one endpoint: {seen:?}"
    );
}
