//! Load balancers: `round_robin`, `least_request`, `random`, `ring_hash`.
//!
//! A [`Balancer`] is built when a snapshot is built and shared (it is `Send + Sync`) by every
//! worker; picking uses atomics only — no locks, no allocation.
//!
//! Availability: the caller passes `available(i)`, false for ejected or unhealthy endpoints,
//! which are skipped. When *no* endpoint is available, the balancer behaves as Envoy's panic
//! threshold does and balances over all endpoints instead (better to try a possibly-bad host
//! than to fail every request). `pick` returns `None` only for a cluster without endpoints.
//!
//! - `round_robin`: a shared atomic counter; with some endpoints unavailable, the counter
//!   rotates over the available ones (no hot spot on the endpoint after an ejected one).
//! - `least_request`: power of two choices — two distinct random available endpoints, the one
//!   with fewer active requests wins (ties: the first). Active counts are kept with
//!   [`Balancer::on_request_start`] / [`Balancer::on_request_end`].
//! - `random`: uniform among the available endpoints.
//! - `ring_hash`: consistent hashing (see [`super::ring_hash`]) on the key named by `hash_on`:
//!   `header:NAME` (the first value of the header) or `source_ip`. A request without a key is
//!   balanced randomly.

use super::ring_hash::{hash_bytes, Ring};
use crate::config::LbPolicy;
use http::header::HeaderName;
use http::HeaderMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// What a balancer may look at for one pick.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    pub headers: &'a HeaderMap,
    pub source_ip: Option<IpAddr>,
}

/// Where a `ring_hash` key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    Header(HeaderName),
    SourceIp,
}

impl HashOn {
    /// Parses `header:NAME` or `source_ip`, exactly (the config validator's check too).
    pub fn parse(s: &str) -> Result<HashOn, String> {
        if s == "source_ip" {
            return Ok(HashOn::SourceIp);
        }
        if let Some(name) = s.strip_prefix("header:") {
            return HeaderName::from_bytes(name.as_bytes())
                .map(HashOn::Header)
                .map_err(|_| format!("hash_on: invalid header name {name:?}"));
        }
        Err(format!(
            "hash_on: expected `header:NAME` or `source_ip`, got {s:?}"
        ))
    }

    /// The hash of this request's key, if it has one.
    fn key_hash(&self, ctx: &PickContext<'_>) -> Option<u64> {
        match self {
            HashOn::Header(name) => ctx.headers.get(name).map(|v| hash_bytes(v.as_bytes())),
            HashOn::SourceIp => ctx.source_ip.map(|ip| match ip {
                IpAddr::V4(v4) => hash_bytes(&v4.octets()),
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => hash_bytes(&v4.octets()),
                    None => hash_bytes(&v6.octets()),
                },
            }),
        }
    }
}

// === impl Balancer ===

/// A load balancer over endpoints `0..n` of one cluster.
#[derive(Debug)]
pub struct Balancer {
    policy: LbPolicy,
    n: usize,
    rr: AtomicUsize,
    /// Active requests per endpoint (least_request; kept for every policy, it is cheap).
    active: Box<[AtomicU64]>,
    ring: Option<Ring>,
    hash_on: Option<HashOn>,
}

impl Balancer {
    /// A balancer over `endpoints` endpoints, identified by their index (for `ring_hash` prefer
    /// [`Balancer::new_with_ids`] so that placement survives endpoint list changes).
    pub fn new(policy: LbPolicy, endpoints: usize, hash_on: Option<&str>) -> Result<Self, String> {
        let ids: Vec<String> = (0..endpoints).map(|i| i.to_string()).collect();
        Balancer::new_with_ids(policy, &ids, hash_on)
    }

    /// A balancer over endpoints with stable identities `ids` (their addresses): the ring of
    /// `ring_hash` places an endpoint by its identity, not its index.
    /// `hash_on` keys `ring_hash` (without it, or without the key in a request, the pick is
    /// random, as Envoy's); the other policies ignore it.
    pub fn new_with_ids(
        policy: LbPolicy,
        ids: &[String],
        hash_on: Option<&str>,
    ) -> Result<Self, String> {
        let n = ids.len();
        if u32::try_from(n).is_err() {
            return Err("too many endpoints".to_string());
        }
        let (ring, hash_on) = match policy {
            LbPolicy::RingHash => (
                Some(Ring::new(ids)),
                hash_on.map(HashOn::parse).transpose()?,
            ),
            _ => (None, None),
        };
        Ok(Balancer {
            policy,
            n,
            rr: AtomicUsize::new(0),
            active: (0..n).map(|_| AtomicU64::new(0)).collect(),
            ring,
            hash_on,
        })
    }

    /// The policy this balancer runs.
    pub fn policy(&self) -> LbPolicy {
        self.policy
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when the cluster has no endpoints.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Picks an endpoint index, skipping those for which `available` is false (all of them are
    /// candidates again when none is available). `None` only when there are no endpoints.
    pub fn pick(&self, ctx: &PickContext<'_>, available: &dyn Fn(usize) -> bool) -> Option<usize> {
        if self.n == 0 {
            return None;
        }
        if self.n == 1 {
            return Some(0);
        }
        self.pick_among(ctx, available)
            .or_else(|| self.pick_among(ctx, &|_| true))
    }

    fn pick_among(
        &self,
        ctx: &PickContext<'_>,
        available: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        match self.policy {
            LbPolicy::RoundRobin => {
                let c = self.rr.fetch_add(1, Ordering::Relaxed);
                choose(self.n, c, available)
            }
            LbPolicy::Random => choose(self.n, rand_usize(), available),
            LbPolicy::LeastRequest => self.pick_least_request(available),
            LbPolicy::RingHash => {
                let key = self.hash_on.as_ref().and_then(|h| h.key_hash(ctx));
                match (key, &self.ring) {
                    (Some(hash), Some(ring)) => ring.lookup(hash, available),
                    _ => choose(self.n, rand_usize(), available),
                }
            }
        }
    }

    fn pick_least_request(&self, available: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.n;
        let a = choose(n, rand_usize(), available)?;
        // A second, distinct candidate: a random offset from `a`, then probe forward.
        let off = 1 + rand_usize() % (n - 1);
        let mut b = None;
        for k in 0..n - 1 {
            let cand = (a + off + k) % n;
            if cand != a && available(cand) {
                b = Some(cand);
                break;
            }
        }
        let Some(b) = b else { return Some(a) };
        let (la, lb) = (self.active(a), self.active(b));
        Some(if lb < la { b } else { a })
    }

    /// A request to endpoint `ep` started (least_request bookkeeping).
    pub fn on_request_start(&self, ep: usize) {
        if let Some(a) = self.active.get(ep) {
            a.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request to endpoint `ep` ended (never underflows on unbalanced calls).
    pub fn on_request_end(&self, ep: usize) {
        if let Some(a) = self.active.get(ep) {
            let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }

    /// Active requests on endpoint `ep`.
    pub fn active(&self, ep: usize) -> u64 {
        self.active.get(ep).map_or(0, |a| a.load(Ordering::Relaxed))
    }
}

/// `r`-th choice among endpoints `0..n`: `r % n` when available, else the `(r % k)`-th of the
/// `k` available endpoints (uniform), `None` when none is available.
fn choose(n: usize, r: usize, available: &dyn Fn(usize) -> bool) -> Option<usize> {
    let first = r % n;
    if available(first) {
        return Some(first);
    }
    let k = (0..n).filter(|&i| available(i)).count();
    if k == 0 {
        return None;
    }
    (0..n).filter(|&i| available(i)).nth(r % k)
}

fn rand_usize() -> usize {
    rand::random::<u64>() as usize
}

// === tests ===

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ctx(headers: &HeaderMap) -> PickContext<'_> {
        PickContext {
            headers,
            source_ip: None,
        }
    }

    fn counts(b: &Balancer, picks: usize, available: &dyn Fn(usize) -> bool) -> Vec<usize> {
        let h = HeaderMap::new();
        let mut c = vec![0; b.len()];
        for _ in 0..picks {
            c[b.pick(&ctx(&h), available).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn balancer_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Balancer>();
    }

    #[test]
    fn empty_and_single() {
        let h = HeaderMap::new();
        for p in [
            LbPolicy::RoundRobin,
            LbPolicy::LeastRequest,
            LbPolicy::Random,
        ] {
            let b = Balancer::new(p, 0, None).unwrap();
            assert_eq!(b.pick(&ctx(&h), &|_| true), None);
            let b = Balancer::new(p, 1, None).unwrap();
            assert_eq!(b.pick(&ctx(&h), &|_| false), Some(0));
        }
        let b = Balancer::new(LbPolicy::RingHash, 0, Some("source_ip")).unwrap();
        assert_eq!(b.pick(&ctx(&h), &|_| true), None);
    }

    #[test]
    fn round_robin_is_exact() {
        let b = Balancer::new(LbPolicy::RoundRobin, 10, None).unwrap();
        assert_eq!(counts(&b, 1000, &|_| true), vec![100; 10]);
        let h = HeaderMap::new();
        let seq: Vec<_> = (0..4)
            .map(|_| b.pick(&ctx(&h), &|_| true).unwrap())
            .collect();
        assert_eq!(seq, [0, 1, 2, 3]);
    }

    #[test]
    fn round_robin_skips_unavailable_evenly() {
        let b = Balancer::new(LbPolicy::RoundRobin, 4, None).unwrap();
        let c = counts(&b, 3000, &|i| i != 1);
        assert_eq!(c[1], 0);
        for i in [0, 2, 3] {
            assert!((900..=1100).contains(&c[i]), "{c:?}");
        }
    }

    #[test]
    fn all_unavailable_falls_back_to_all() {
        for p in [
            LbPolicy::RoundRobin,
            LbPolicy::LeastRequest,
            LbPolicy::Random,
        ] {
            let b = Balancer::new(p, 5, None).unwrap();
            let c = counts(&b, 5000, &|_| false);
            assert!(c.iter().all(|&x| x > 500), "{p:?}: {c:?}");
        }
        let b = Balancer::new(LbPolicy::RingHash, 5, Some("header:x-user")).unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("alice"));
        let owner = b.pick(&ctx(&h), &|_| true).unwrap();
        assert_eq!(b.pick(&ctx(&h), &|_| false), Some(owner));
    }

    #[test]
    fn random_is_roughly_uniform_and_skips() {
        let b = Balancer::new(LbPolicy::Random, 10, None).unwrap();
        let c = counts(&b, 10_000, &|_| true);
        for x in &c {
            assert!((700..=1300).contains(x), "{c:?}");
        }
        let c = counts(&b, 10_000, &|i| i % 2 == 0);
        for (i, x) in c.iter().enumerate() {
            if i % 2 == 1 {
                assert_eq!(*x, 0);
            } else {
                assert!((1600..=2400).contains(x), "{c:?}");
            }
        }
    }

    #[test]
    fn least_request_prefers_less_loaded() {
        let b = Balancer::new(LbPolicy::LeastRequest, 2, None).unwrap();
        for _ in 0..5 {
            b.on_request_start(0);
        }
        // With two endpoints both are always the candidates, so the idle one always wins.
        assert_eq!(counts(&b, 1000, &|_| true), vec![0, 1000]);
        for _ in 0..10 {
            b.on_request_end(0);
        }
        assert_eq!(b.active(0), 0, "never underflows");

        // 10 endpoints, endpoint 3 heavily loaded: it only wins when both candidates are it,
        // which P2C with distinct candidates never does.
        let b = Balancer::new(LbPolicy::LeastRequest, 10, None).unwrap();
        for _ in 0..100 {
            b.on_request_start(3);
        }
        let c = counts(&b, 10_000, &|_| true);
        assert_eq!(c[3], 0, "{c:?}");
        for (i, x) in c.iter().enumerate() {
            if i != 3 {
                assert!((700..=1600).contains(x), "{c:?}");
            }
        }
    }

    #[test]
    fn least_request_tracks_live_load() {
        // Simulate requests that stay open: the balancer must spread them evenly.
        let b = Balancer::new(LbPolicy::LeastRequest, 4, None).unwrap();
        let h = HeaderMap::new();
        for _ in 0..400 {
            let ep = b.pick(&ctx(&h), &|_| true).unwrap();
            b.on_request_start(ep);
        }
        let loads: Vec<u64> = (0..4).map(|i| b.active(i)).collect();
        let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
        assert!(max - min <= 10, "{loads:?}");
    }

    #[test]
    fn ring_hash_config_errors() {
        // Without a key, ring_hash picks at random (Envoy's reading).
        let b = Balancer::new(LbPolicy::RingHash, 3, None).unwrap();
        assert!(b
            .pick(&ctx(&HeaderMap::new()), &|_| true)
            .is_some_and(|i| i < 3));
        assert!(Balancer::new(LbPolicy::RingHash, 3, Some("cookie:x")).is_err());
        assert!(Balancer::new(LbPolicy::RingHash, 3, Some("header:bad name")).is_err());
        assert!(Balancer::new(LbPolicy::RingHash, 3, Some("header:X-User")).is_ok());
        assert!(Balancer::new(LbPolicy::RoundRobin, 3, Some("junk")).is_ok());
    }

    fn addrs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("127.0.0.1:{}", 9001 + i)).collect()
    }

    #[test]
    fn ring_hash_same_key_same_endpoint() {
        let b =
            Balancer::new_with_ids(LbPolicy::RingHash, &addrs(10), Some("header:x-user")).unwrap();
        let mut seen = std::collections::HashSet::new();
        for k in 0..500 {
            let mut h = HeaderMap::new();
            h.insert(
                "x-user",
                HeaderValue::from_str(&format!("user-{k}")).unwrap(),
            );
            let first = b.pick(&ctx(&h), &|_| true).unwrap();
            seen.insert(first);
            for _ in 0..5 {
                assert_eq!(b.pick(&ctx(&h), &|_| true), Some(first));
            }
        }
        assert_eq!(seen.len(), 10, "keys spread over every endpoint");
    }

    #[test]
    fn ring_hash_source_ip() {
        let b = Balancer::new_with_ids(LbPolicy::RingHash, &addrs(5), Some("source_ip")).unwrap();
        let h = HeaderMap::new();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let c = PickContext {
            headers: &h,
            source_ip: Some(ip),
        };
        let first = b.pick(&c, &|_| true).unwrap();
        for _ in 0..20 {
            assert_eq!(b.pick(&c, &|_| true), Some(first));
        }
        // The IPv4-mapped IPv6 form of the same client hashes the same.
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let c6 = PickContext {
            headers: &h,
            source_ip: Some(mapped),
        };
        assert_eq!(b.pick(&c6, &|_| true), Some(first));
        // Owner unavailable: a different endpoint, consistently.
        let alt = b.pick(&c, &|e| e != first).unwrap();
        assert_ne!(alt, first);
        assert_eq!(b.pick(&c, &|e| e != first), Some(alt));
    }

    #[test]
    fn ring_hash_without_key_is_random() {
        let b = Balancer::new(LbPolicy::RingHash, 4, Some("header:x-user")).unwrap();
        let c = counts(&b, 4000, &|_| true);
        assert!(c.iter().all(|&x| x > 700), "{c:?}");
    }

    #[test]
    fn ring_hash_removing_one_of_ten_moves_about_a_tenth() {
        let all = addrs(10);
        let fewer: Vec<String> = all.iter().filter(|a| *a != &all[4]).cloned().collect();
        let b10 = Balancer::new_with_ids(LbPolicy::RingHash, &all, Some("header:x-user")).unwrap();
        let b9 = Balancer::new_with_ids(LbPolicy::RingHash, &fewer, Some("header:x-user")).unwrap();
        let mut moved = 0;
        for k in 0..10_000 {
            let mut h = HeaderMap::new();
            h.insert(
                "x-user",
                HeaderValue::from_str(&format!("user-{k}")).unwrap(),
            );
            let before = &all[b10.pick(&ctx(&h), &|_| true).unwrap()];
            let after = &fewer[b9.pick(&ctx(&h), &|_| true).unwrap()];
            if before != after {
                moved += 1;
                assert_eq!(before, &all[4], "only keys of the removed endpoint move");
            }
        }
        let pct = f64::from(moved) / 100.0;
        assert!((5.0..=15.0).contains(&pct), "moved {pct}% of keys");
    }
}
