//! The consistent-hash ring behind `lb: ring_hash` (Envoy's ketama-style ring).
//!
//! Every endpoint gets [`VNODES_PER_ENDPOINT`] points on a 64-bit ring, placed by hashing its
//! stable identity (normally its address, `"127.0.0.1:9001"`) with the virtual-node number, as
//! Envoy hashes `"{address}_{i}"`. Because the placement depends on the identity and not on
//! the endpoint's index, removing one of N endpoints moves only the keys that landed on its
//! points, about 1/N of them.
//!
//! A key hashes to a point; the owner of the first ring point at or after it (wrapping) gets
//! the request. When that owner is unavailable (ejected/unhealthy) the walk continues to the
//! next distinct owner, which keeps keys of healthy endpoints where they were.
//!
//! The hash is FNV-1a 64 followed by the murmur3 `fmix64` finaliser: stable across processes,
//! platforms and Rust versions (unlike `std`'s `DefaultHasher`), and well mixed.

/// Ring points per endpoint.
pub const VNODES_PER_ENDPOINT: usize = 160;

/// Stable 64-bit hash of `bytes` (FNV-1a + fmix64).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    fmix64(fnv1a(FNV_OFFSET, bytes))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// An immutable hash ring over endpoints `0..n`.
#[derive(Debug, Clone)]
pub struct Ring {
    /// (point, endpoint index), sorted by point.
    points: Box<[(u64, u32)]>,
    endpoints: usize,
}

impl Ring {
    /// A ring with [`VNODES_PER_ENDPOINT`] points for each endpoint identity in `ids`
    /// (index i of the ring's answers is `ids[i]`).
    pub fn new(ids: &[String]) -> Ring {
        Ring::with_vnodes(ids, VNODES_PER_ENDPOINT)
    }

    /// Like [`Ring::new`] with `vnodes` points per endpoint (at least 1).
    pub fn with_vnodes(ids: &[String], vnodes: usize) -> Ring {
        let vnodes = vnodes.max(1);
        let mut points = Vec::with_capacity(ids.len() * vnodes);
        let mut buf = String::new();
        for (i, id) in ids.iter().enumerate() {
            for v in 0..vnodes {
                buf.clear();
                buf.push_str(id);
                buf.push('_');
                buf.push_str(&v.to_string());
                points.push((hash_bytes(buf.as_bytes()), i as u32));
            }
        }
        // Ties (vanishingly rare) are broken by endpoint identity so the ring does not depend on
        // the order of `ids`.
        points.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| ids[a.1 as usize].cmp(&ids[b.1 as usize]))
        });
        Ring {
            points: points.into_boxed_slice(),
            endpoints: ids.len(),
        }
    }

    /// Number of endpoints on the ring.
    pub fn endpoints(&self) -> usize {
        self.endpoints
    }

    /// Number of points on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when the ring has no endpoints.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The owner of `hash` ignoring availability.
    pub fn owner(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|p| p.0 < hash);
        let i = if i == self.points.len() { 0 } else { i };
        Some(self.points[i].1 as usize)
    }

    /// The first available owner at or after `hash`, walking the ring; `None` when no endpoint
    /// is available (or the ring is empty).
    pub fn lookup(&self, hash: u64, available: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.points.len();
        if n == 0 {
            return None;
        }
        let start = self.points.partition_point(|p| p.0 < hash);
        let mut last_checked = u32::MAX;
        for k in 0..n {
            let ep = self.points[(start + k) % n].1;
            if ep == last_checked {
                continue;
            }
            if available(ep as usize) {
                return Some(ep as usize);
            }
            last_checked = ep;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("127.0.0.1:{}", 9001 + i)).collect()
    }

    #[test]
    fn hash_is_stable() {
        // Pinned values: changing the hash would reshuffle every deployed ring.
        assert_eq!(hash_bytes(b""), fmix64(FNV_OFFSET));
        assert_eq!(hash_bytes(b"a"), hash_bytes(b"a"));
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"b"));
    }

    #[test]
    fn ring_has_points_per_endpoint() {
        let r = Ring::new(&ids(10));
        assert_eq!(r.len(), 10 * VNODES_PER_ENDPOINT);
        assert_eq!(r.endpoints(), 10);
        assert!(Ring::new(&[]).is_empty());
        assert_eq!(Ring::new(&[]).lookup(1, &|_| true), None);
        assert_eq!(Ring::new(&[]).owner(1), None);
    }

    #[test]
    fn same_key_same_owner_and_order_independent() {
        let a = ids(10);
        let mut b = a.clone();
        b.reverse();
        let ra = Ring::new(&a);
        let rb = Ring::new(&b);
        for k in 0..1000u32 {
            let h = hash_bytes(format!("user-{k}").as_bytes());
            let oa = ra.lookup(h, &|_| true).unwrap();
            assert_eq!(ra.lookup(h, &|_| true), Some(oa));
            let ob = rb.lookup(h, &|_| true).unwrap();
            assert_eq!(
                a[oa], b[ob],
                "the same identity owns the key whatever its index"
            );
        }
    }

    #[test]
    fn unavailable_owner_walks_to_next() {
        let r = Ring::new(&ids(3));
        for k in 0..200u32 {
            let h = hash_bytes(&k.to_be_bytes());
            let o = r.lookup(h, &|_| true).unwrap();
            let alt = r.lookup(h, &|e| e != o).unwrap();
            assert_ne!(alt, o);
        }
        assert_eq!(r.lookup(5, &|_| false), None);
    }

    #[test]
    fn balanced_enough() {
        let r = Ring::new(&ids(10));
        let mut counts = [0u32; 10];
        for k in 0..10_000u32 {
            counts[r.lookup(hash_bytes(&k.to_le_bytes()), &|_| true).unwrap()] += 1;
        }
        for c in counts {
            assert!((500..=1600).contains(&c), "{counts:?}");
        }
    }
}
