//! Outlier ejection on consecutive 5xx (Envoy's `consecutive_5xx` detector).
//!
//! Every response (or failure) of an endpoint is [`OutlierDetector::record`]ed. After
//! `consecutive_5xx` consecutive 5xx responses — connect failures and resets (`None`) count as
//! 5xx — the endpoint is ejected for `base_ejection × k`, where `k` is how many times it has
//! been ejected, capped at [`MAX_EJECTION`] (or `base_ejection` if that is longer). As in
//! Envoy, `k` decays: for every `interval` the endpoint spends un-ejected, `k` drops by one.
//! Any non-5xx response resets the consecutive count; responses recorded while the endpoint
//! is ejected (requests that were already in flight) are ignored, and the count restarts at 0
//! when the ejection ends.
//!
//! Ejection cap (documented rule, Envoy's): an ejection is allowed when, counting it, at most
//! `max_ejection_percent` % of the endpoints are ejected — or when no endpoint is ejected at all
//! and `max_ejection_percent > 0` (so one endpoint of a small cluster can always be ejected).
//! `max_ejection_percent: 0` or `consecutive_5xx: 0` disables ejection.
//!
//! State is per endpoint in atomics; an ejection decision takes a try-lock flag (never waits:
//! a concurrent ejection simply defers this one to the endpoint's next failure), so the cap
//! holds exactly even when workers record concurrently.

use crate::config::OutlierConfig;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest ejection unless `base_ejection` itself is longer (Envoy's `max_ejection_time`).
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
struct EndpointState {
    consecutive: AtomicU32,
    /// Ejected until this many nanoseconds after `origin`, plus one; 0 = never ejected.
    ejected_until: AtomicU64,
    /// Ejection multiplier `k` at the last ejection.
    times: AtomicU32,
}

/// Consecutive-5xx outlier detection over endpoints `0..n` of one cluster.
#[derive(Debug)]
pub struct OutlierDetector {
    consecutive_5xx: u32,
    interval: Duration,
    base_ejection: Duration,
    max_ejection_percent: u32,
    origin: Instant,
    eps: Box<[EndpointState]>,
    ejecting: AtomicBool,
    ejections_total: AtomicU64,
}

impl OutlierDetector {
    pub fn new(cfg: &OutlierConfig, endpoints: usize) -> Self {
        OutlierDetector {
            consecutive_5xx: cfg.consecutive_5xx,
            interval: cfg.interval.get(),
            base_ejection: cfg.base_ejection.get(),
            max_ejection_percent: cfg.max_ejection_percent.min(100),
            origin: Instant::now(),
            eps: (0..endpoints).map(|_| EndpointState::default()).collect(),
            ejecting: AtomicBool::new(false),
            ejections_total: AtomicU64::new(0),
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether an `ejected_until` value (deadline in nanoseconds since `origin`, plus one; 0 =
    /// never ejected) means "ejected" at `now_nanos`.
    fn ejected_at(until: u64, now_nanos: u64) -> bool {
        until != 0 && until - 1 > now_nanos
    }

    /// Records the outcome of one request to `ep`: `Some(status)` for a response, `None` for a
    /// connect failure or reset. Returns true when this call ejected the endpoint.
    pub fn record(&self, ep: usize, status: Option<u16>, now: Instant) -> bool {
        let Some(st) = self.eps.get(ep) else {
            return false;
        };
        let is_error = status.is_none_or(|s| (500..600).contains(&s));
        if !is_error {
            if st.consecutive.load(Ordering::Relaxed) != 0 {
                st.consecutive.store(0, Ordering::Relaxed);
            }
            return false;
        }
        if self.consecutive_5xx == 0 || self.max_ejection_percent == 0 {
            return false;
        }
        let now_n = self.nanos(now);
        if Self::ejected_at(st.ejected_until.load(Ordering::Acquire), now_n) {
            return false;
        }
        let c = st
            .consecutive
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if c < self.consecutive_5xx {
            return false;
        }
        self.try_eject(ep, now_n)
    }

    fn try_eject(&self, ep: usize, now_n: u64) -> bool {
        if self
            .ejecting
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let st = &self.eps[ep];
        let until = st.ejected_until.load(Ordering::Acquire);
        // Not when another worker ejected it meanwhile, nor above the cap.
        let ejected = if Self::ejected_at(until, now_n) || !self.cap_allows(now_n) {
            false
        } else {
            // Decay: one step per full interval spent un-ejected since the last ejection ended.
            let prev = st.times.load(Ordering::Relaxed);
            let k = if until == 0 || prev == 0 {
                1
            } else {
                let idle = Duration::from_nanos(now_n.saturating_sub(until - 1));
                let steps = if self.interval.is_zero() {
                    u64::from(prev)
                } else {
                    (idle.as_nanos() / self.interval.as_nanos()) as u64
                };
                u32::try_from(u64::from(prev).saturating_sub(steps)).unwrap_or(0) + 1
            };
            let cap = MAX_EJECTION.max(self.base_ejection);
            let dur = self.base_ejection.saturating_mul(k).min(cap);
            let dur_n = u64::try_from(dur.as_nanos()).unwrap_or(u64::MAX / 2);
            st.times.store(k, Ordering::Relaxed);
            st.consecutive.store(0, Ordering::Relaxed);
            st.ejected_until.store(
                now_n.saturating_add(dur_n).saturating_add(1),
                Ordering::Release,
            );
            self.ejections_total.fetch_add(1, Ordering::Relaxed);
            true
        };
        self.ejecting.store(false, Ordering::Release);
        ejected
    }

    /// Whether one more endpoint may be ejected now.
    fn cap_allows(&self, now_n: u64) -> bool {
        let n = self.eps.len() as u64;
        let ejected = self
            .eps
            .iter()
            .filter(|s| Self::ejected_at(s.ejected_until.load(Ordering::Acquire), now_n))
            .count() as u64;
        ejected == 0 || (ejected + 1) * 100 <= n * u64::from(self.max_ejection_percent)
    }

    /// True while `ep` is ejected.
    pub fn is_ejected(&self, ep: usize, now: Instant) -> bool {
        self.eps.get(ep).is_some_and(|s| {
            Self::ejected_at(s.ejected_until.load(Ordering::Acquire), self.nanos(now))
        })
    }

    /// Number of endpoints ejected at `now`.
    pub fn ejected_count(&self, now: Instant) -> usize {
        let now_n = self.nanos(now);
        self.eps
            .iter()
            .filter(|s| Self::ejected_at(s.ejected_until.load(Ordering::Acquire), now_n))
            .count()
    }

    /// Ejections since this detector was built.
    pub fn ejections_total(&self) -> u64 {
        self.ejections_total.load(Ordering::Relaxed)
    }
}

// === tests ===

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dur;

    fn cfg(consecutive: u32, base_secs: u64, pct: u32) -> OutlierConfig {
        OutlierConfig {
            consecutive_5xx: consecutive,
            interval: Dur::from_secs(10),
            base_ejection: Dur::from_secs(base_secs),
            max_ejection_percent: pct,
        }
    }

    #[test]
    fn send_sync() {
        fn f<T: Send + Sync>() {}
        f::<OutlierDetector>();
    }

    #[test]
    fn ejects_after_consecutive_5xx_and_recovers() {
        let d = OutlierDetector::new(&cfg(3, 30, 100), 4);
        let t0 = Instant::now();
        assert!(!d.record(1, Some(500), t0));
        assert!(!d.record(1, Some(503), t0));
        assert!(!d.is_ejected(1, t0));
        assert!(
            d.record(1, None, t0),
            "third failure (a connect failure) ejects"
        );
        assert!(d.is_ejected(1, t0));
        assert!(d.is_ejected(1, t0 + Duration::from_secs(29)));
        assert!(!d.is_ejected(1, t0 + Duration::from_secs(31)));
        assert!(!d.is_ejected(0, t0));
        assert_eq!(d.ejections_total(), 1);
        assert_eq!(d.ejected_count(t0), 1);
        // Failures recorded while ejected are ignored.
        assert!(!d.record(1, Some(500), t0 + Duration::from_secs(1)));
        assert_eq!(d.ejections_total(), 1);
    }

    #[test]
    fn success_resets_the_count() {
        let d = OutlierDetector::new(&cfg(3, 30, 100), 2);
        let t = Instant::now();
        d.record(0, Some(500), t);
        d.record(0, Some(500), t);
        d.record(0, Some(200), t);
        d.record(0, Some(500), t);
        assert!(!d.record(0, Some(502), t));
        assert!(!d.is_ejected(0, t));
        // 4xx is not an error.
        d.record(0, Some(404), t);
        d.record(0, Some(500), t);
        d.record(0, Some(500), t);
        assert!(!d.is_ejected(0, t));
        assert!(d.record(0, Some(500), t));
    }

    #[test]
    fn ejection_time_grows_and_decays() {
        let d = OutlierDetector::new(&cfg(1, 10, 100), 2);
        let t0 = Instant::now();
        assert!(d.record(0, None, t0)); // k=1: 10s
        assert!(!d.is_ejected(0, t0 + Duration::from_secs(11)));
        let t1 = t0 + Duration::from_secs(11);
        assert!(d.record(0, None, t1)); // back to back: k=2: 20s
        assert!(d.is_ejected(0, t1 + Duration::from_secs(19)));
        assert!(!d.is_ejected(0, t1 + Duration::from_secs(21)));
        // After 2 intervals (20s) healthy the multiplier decays to 0, so k=1 again.
        let t2 = t1 + Duration::from_secs(20 + 20);
        assert!(d.record(0, None, t2));
        assert!(d.is_ejected(0, t2 + Duration::from_secs(9)));
        assert!(!d.is_ejected(0, t2 + Duration::from_secs(11)));
        assert_eq!(d.ejections_total(), 3);
    }

    #[test]
    fn ejection_time_is_capped() {
        let d = OutlierDetector::new(&cfg(1, 200, 100), 1);
        let mut t = Instant::now();
        assert!(d.record(0, None, t));
        t += Duration::from_secs(201);
        assert!(d.record(0, None, t)); // k=2 → 400s, capped to 300s
        assert!(d.is_ejected(0, t + Duration::from_secs(299)));
        assert!(!d.is_ejected(0, t + Duration::from_secs(301)));
    }

    #[test]
    fn max_ejection_percent() {
        // 10 endpoints at 20%: two may be ejected, not a third.
        let d = OutlierDetector::new(&cfg(1, 30, 20), 10);
        let t = Instant::now();
        assert!(d.record(0, Some(500), t));
        assert!(d.record(1, Some(500), t));
        assert!(!d.record(2, Some(500), t));
        assert!(!d.is_ejected(2, t));
        assert_eq!(d.ejected_count(t), 2);
        // Once the ejections expire, endpoint 2 (still failing) is ejected on its next failure.
        let later = t + Duration::from_secs(31);
        assert!(d.record(2, Some(500), later));
        assert_eq!(d.ejected_count(later), 1);

        // 3 endpoints at 10%: one is always allowed, a second is not.
        let d = OutlierDetector::new(&cfg(1, 30, 10), 3);
        assert!(d.record(0, None, t));
        assert!(!d.record(1, None, t));
        assert_eq!(d.ejections_total(), 1);

        // 0% (or consecutive_5xx 0) disables ejection.
        let d = OutlierDetector::new(&cfg(1, 30, 0), 3);
        assert!(!d.record(0, None, t));
        let d = OutlierDetector::new(&cfg(0, 30, 100), 3);
        assert!(!d.record(0, None, t));
        // Out-of-range endpoints are ignored, not a panic.
        assert!(!d.record(7, None, t));
        assert!(!d.is_ejected(7, t));
    }

    #[test]
    fn concurrent_records_respect_the_cap() {
        let d = std::sync::Arc::new(OutlierDetector::new(&cfg(2, 30, 50), 8));
        let t = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|w| {
                let d = d.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        d.record((i + w) % 8, Some(500), t);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert!(d.ejected_count(t) <= 4, "at most 50% of 8 ejected");
        assert!(d.ejected_count(t) >= 1);
    }
}
