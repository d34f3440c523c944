//! Shared data (process-wide, shared by every worker's VM of the same `vm_id`)
//! with compare-and-swap retry loops: counters and a token bucket that stay exact
//! when many workers update the same key at once.
//!
//! Creating a key atomically: the proxy-wasm ABI has no "create if absent", but
//! hosts (Envoy, weir) check a non-zero CAS only against an *existing* key. So a
//! key read as absent is created with the impossible CAS [`CREATE_CAS`]: if another
//! worker created it meanwhile, the write fails with `CasMismatch` and the loop
//! re-reads. (If a host also checks CAS on absent keys, the loop falls back to an
//! unconditional create.)
//!
//! Removing a key writes an empty value (as `remove_shared_data` of the proxy-wasm
//! crate does); hosts should treat that as a delete. Where a host keeps the entry
//! with an empty value, these helpers read it as absent, so behaviour is the same
//! (only the key's memory is not reclaimed).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

/// CAS used to create a key only if it is still absent (never handed out by hosts,
/// whose CAS counters start at 1 and count up).
pub const CREATE_CAS: u32 = u32::MAX;

/// How many CAS conflicts an update tolerates before giving up.
pub const MAX_CAS_RETRIES: usize = 1024;

/// Shared-data failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharedError {
    /// Too many concurrent writers; the update was not applied.
    #[error("shared data key {0:?}: gave up after {MAX_CAS_RETRIES} CAS conflicts")]
    Contention(String),
    /// The host refused the call.
    #[error("shared data key {key:?}: host returned {status:?}")]
    Host { key: String, status: Status },
}

fn get(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), SharedError> {
    hostcalls::get_shared_data(key).map_err(|status| SharedError::Host {
        key: key.to_string(),
        status,
    })
}

/// Applies `update` to the current value of `key` (`None` when absent) and stores
/// the result with CAS, retrying on conflicts. Returns the stored value, whatever
/// `update` returned alongside, and whether this call created the key.
pub fn update<R>(
    key: &str,
    mut update: impl FnMut(Option<&[u8]>) -> (Vec<u8>, R),
) -> Result<(R, bool), SharedError> {
    let mut strict_create = false;
    for _ in 0..MAX_CAS_RETRIES {
        let (current, cas) = get(key)?;
        // An empty value is a removed key on hosts that keep the entry after a remove.
        let current = current.filter(|v| !v.is_empty());
        let (next, out) = update(current.as_deref());
        let created = current.is_none();
        let write_cas = match cas {
            // The entry exists (possibly empty): plain compare-and-swap.
            Some(c) => Some(c),
            None if strict_create => None,
            None => Some(CREATE_CAS),
        };
        match hostcalls::set_shared_data(key, Some(&next), write_cas) {
            Ok(()) => return Ok((out, created)),
            Err(Status::CasMismatch) => {
                if cas.is_none() && matches!(get(key)?, (None, None)) {
                    // The host checks CAS on absent keys too: create unconditionally.
                    strict_create = true;
                }
            }
            Err(status) => {
                return Err(SharedError::Host {
                    key: key.to_string(),
                    status,
                })
            }
        }
    }
    Err(SharedError::Contention(key.to_string()))
}

/// Adds `delta` to the i64 counter at `key` (8-byte little-endian; absent = 0)
/// and returns the new value. Exact under concurrent updates from all workers.
pub fn shared_incr(key: &str, delta: i64) -> Result<i64, SharedError> {
    let (value, _) = update(key, |cur| {
        let old = cur
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(i64::from_le_bytes)
            .unwrap_or(0);
        let new = old.wrapping_add(delta);
        (new.to_le_bytes().to_vec(), new)
    })?;
    Ok(value)
}

/// Reads the i64 counter at `key` (0 when absent).
pub fn shared_get(key: &str) -> Result<i64, SharedError> {
    Ok(get(key)?
        .0
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(i64::from_le_bytes)
        .unwrap_or(0))
}

/// Removes `key` if its CAS is still `cas` (`None`: unconditionally).
/// Returns false when someone else wrote it first.
pub fn shared_remove(key: &str, cas: Option<u32>) -> Result<bool, SharedError> {
    match hostcalls::set_shared_data(key, None, cas) {
        Ok(()) => Ok(true),
        Err(Status::CasMismatch) => Ok(false),
        Err(status) => Err(SharedError::Host {
            key: key.to_string(),
            status,
        }),
    }
}

/// Nanoseconds since the Unix epoch by the host clock.
pub fn now_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).ok())
        // In u64 (no 128-bit multiply in the guest): saturates in the year 2554.
        .map(|d| {
            d.as_secs()
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::from(d.subsec_nanos()))
        })
        .unwrap_or(0)
}

// === token bucket ===

/// A token bucket: `burst` tokens at most, refilled at `rate` tokens per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    /// Tokens added per `per`.
    pub rate: u64,
    /// The refill period.
    pub per: Duration,
    /// Bucket capacity (a full bucket admits this many requests at once).
    pub burst: u64,
}

/// Stored bucket state: `credit` in units where one token = `per` nanoseconds
/// and each elapsed nanosecond adds `rate` units (exact integer arithmetic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketState {
    /// Accumulated credit, at most `burst * per_ns`.
    pub credit: u128,
    /// Host time (ns since epoch) `credit` was computed at.
    pub last_ns: u64,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether a token was taken.
    pub allowed: bool,
    /// The bucket capacity (`x-ratelimit-limit`).
    pub limit: u64,
    /// Whole tokens left after this request (`x-ratelimit-remaining`).
    pub remaining: u64,
    /// When refused: how long until a token is available (`retry-after`, rounded up
    /// to whole seconds by [`Decision::retry_after_secs`]).
    pub retry_after: Duration,
}

// === impl Decision ===

impl Decision {
    /// `retry_after` in whole seconds, rounded up, at least 1 when refused.
    pub fn retry_after_secs(&self) -> u64 {
        if self.allowed {
            return 0;
        }
        let s = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        s.max(1)
    }
}

// === impl BucketState ===

impl BucketState {
    /// Encoded size in bytes.
    pub const LEN: usize = 24;

    /// 16-byte little-endian credit followed by 8-byte little-endian `last_ns`.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.extend_from_slice(&self.credit.to_le_bytes());
        v.extend_from_slice(&self.last_ns.to_le_bytes());
        v
    }

    /// Decodes [`BucketState::encode`]'s output; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::LEN {
            return None;
        }
        let credit = u128::from_le_bytes(bytes[..16].try_into().ok()?);
        let last_ns = u64::from_le_bytes(bytes[16..].try_into().ok()?);
        Some(Self { credit, last_ns })
    }
}

// === impl BucketSpec ===

impl BucketSpec {
    fn per_ns(&self) -> u128 {
        self.per.as_nanos().max(1)
    }

    fn capacity(&self) -> u128 {
        u128::from(self.burst) * self.per_ns()
    }

    /// The credit `state` holds at `now_ns` (refilled, capped).
    fn refilled(&self, state: Option<BucketState>, now_ns: u64) -> u128 {
        let cap = self.capacity();
        match state {
            None => cap,
            Some(s) => {
                let elapsed = u128::from(now_ns.saturating_sub(s.last_ns));
                s.credit
                    .saturating_add(elapsed.saturating_mul(u128::from(self.rate)))
                    .min(cap)
            }
        }
    }

    /// Takes one token from `state` at `now_ns`: the decision and the new state.
    /// An absent bucket is full.
    pub fn take(&self, state: Option<BucketState>, now_ns: u64) -> (Decision, BucketState) {
        let per_ns = self.per_ns();
        let last_ns = state.map_or(now_ns, |s| s.last_ns.max(now_ns));
        let credit = self.refilled(state, now_ns);
        let (allowed, credit) = if credit >= per_ns {
            (true, credit - per_ns)
        } else {
            (false, credit)
        };
        let remaining = u64::try_from(credit / per_ns).unwrap_or(u64::MAX);
        let retry_after = if allowed || self.rate == 0 {
            Duration::ZERO
        } else {
            let missing = per_ns - credit;
            let rate = u128::from(self.rate);
            let ns = missing.div_ceil(rate);
            Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
        };
        let decision = Decision {
            allowed,
            limit: self.burst,
            remaining,
            retry_after,
        };
        (decision, BucketState { credit, last_ns })
    }

    /// Whether `state` is full at `now_ns`, i.e. indistinguishable from an absent
    /// bucket (so it may be deleted without changing any future decision).
    pub fn is_full(&self, state: BucketState, now_ns: u64) -> bool {
        self.refilled(Some(state), now_ns) >= self.capacity()
    }

    /// How long an untouched bucket takes to become full from empty.
    pub fn full_refill_time(&self) -> Duration {
        if self.rate == 0 {
            return Duration::MAX;
        }
        let ns = self.capacity().div_ceil(u128::from(self.rate));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// The outcome of [`shared_token_bucket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketOutcome {
    /// The decision for this request.
    pub decision: Decision,
    /// Whether this call created the bucket key (so it may need indexing for eviction).
    pub created: bool,
}

/// Takes one token from the bucket stored at `key` in shared data, exactly across
/// all workers (CAS loop).
pub fn shared_token_bucket(
    key: &str,
    spec: &BucketSpec,
    now_ns: u64,
) -> Result<BucketOutcome, SharedError> {
    let (decision, created) = update(key, |cur| {
        let state = cur.and_then(BucketState::decode);
        let (decision, next) = spec.take(state, now_ns);
        (next.encode(), decision)
    })?;
    Ok(BucketOutcome { decision, created })
}

/// What [`evict_if_full`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// The key was absent.
    Gone,
    /// The bucket was full and has been removed.
    Evicted,
    /// The bucket is still in use (not full, or written concurrently).
    Live,
}

/// Removes the bucket at `key` if it is full at `now_ns` (removal then changes no
/// decision: an absent bucket is full).
pub fn evict_if_full(key: &str, spec: &BucketSpec, now_ns: u64) -> Result<Eviction, SharedError> {
    let (value, cas) = get(key)?;
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(Eviction::Gone);
    };
    match BucketState::decode(&value) {
        Some(state) if !spec.is_full(state, now_ns) => Ok(Eviction::Live),
        _ => Ok(if shared_remove(key, cas)? {
            Eviction::Evicted
        } else {
            Eviction::Live
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rate: u64, per_s: u64, burst: u64) -> BucketSpec {
        BucketSpec {
            rate,
            per: Duration::from_secs(per_s),
            burst,
        }
    }

    #[test]
    fn burst_then_refuse_then_refill() {
        let s = spec(100, 60, 100);
        let mut state = None;
        let t0 = 1_000_000_000_000u64;
        for i in 0..100 {
            let (d, n) = s.take(state, t0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 99 - i);
            state = Some(n);
        }
        let (d, n) = s.take(state, t0);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, Duration::from_millis(600));
        assert_eq!(d.retry_after_secs(), 1);
        state = Some(n);
        // 599 ms later: still nothing; 600 ms: exactly one token.
        assert!(!s.take(state, t0 + 599_000_000).0.allowed);
        let (d, n) = s.take(state, t0 + 600_000_000);
        assert!(d.allowed);
        assert!(!s.take(Some(n), t0 + 600_000_000).0.allowed);
    }

    #[test]
    fn fullness_and_encoding() {
        let s = spec(10, 1, 5);
        let (_, st) = s.take(None, 0);
        assert!(!s.is_full(st, 0));
        assert!(!s.is_full(st, 99_999_999));
        assert!(s.is_full(st, 100_000_000));
        assert_eq!(s.full_refill_time(), Duration::from_millis(500));
        assert_eq!(BucketState::decode(&st.encode()), Some(st));
        assert_eq!(BucketState::decode(b"short"), None);
    }

    #[test]
    fn clock_going_back_does_not_refill() {
        let s = spec(1, 1, 1);
        let (_, st) = s.take(None, 10_000_000_000);
        assert!(!s.take(Some(st), 5_000_000_000).0.allowed);
    }
}
