//! Weighted splits: `split: { orders-v1: 90, orders-v2: 10 }`.
//!
//! Built once per snapshot; [`WeightedSplit::pick`] maps a uniformly random `u64` to a cluster
//! name with one multiplication and a binary search over cumulative weights (no division, no
//! allocation). Clusters with weight 0 are kept (they are still referenced by the route) but
//! never picked.

use std::collections::BTreeMap;

/// A compiled weighted split.
#[derive(Debug, Clone)]
pub struct WeightedSplit {
    names: Box<[String]>,
    /// `cumulative[i]` = sum of the weights of entries `0..=i`.
    cumulative: Box<[u64]>,
    total: u64,
}

impl WeightedSplit {
    /// Builds the split; the total weight must be positive.
    pub fn new(weights: &BTreeMap<String, u32>) -> Result<Self, String> {
        let mut names = Vec::with_capacity(weights.len());
        let mut cumulative = Vec::with_capacity(weights.len());
        let mut total: u64 = 0;
        for (name, &w) in weights {
            total += u64::from(w);
            names.push(name.clone());
            cumulative.push(total);
        }
        if total == 0 {
            return Err("split: the total weight must be greater than 0".to_string());
        }
        Ok(WeightedSplit {
            names: names.into_boxed_slice(),
            cumulative: cumulative.into_boxed_slice(),
            total,
        })
    }

    /// The cluster for random number `r` (uniform over `u64`): each cluster is picked with
    /// probability weight / total.
    pub fn pick(&self, r: u64) -> &str {
        // Scale r into [0, total) without division (Lemire's multiply-shift).
        let x = ((u128::from(r) * u128::from(self.total)) >> 64) as u64;
        let i = self.cumulative.partition_point(|&c| c <= x);
        // i < len always holds because x < total == cumulative[len-1]; clamp defensively.
        &self.names[i.min(self.names.len() - 1)]
    }

    /// Every cluster named in the split (weight 0 included), in name order.
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|s| s.as_str())
    }

    /// The sum of all weights.
    pub fn total_weight(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(w: &[(&str, u32)]) -> WeightedSplit {
        let m: BTreeMap<String, u32> = w.iter().map(|(n, w)| (n.to_string(), *w)).collect();
        WeightedSplit::new(&m).unwrap()
    }

    #[test]
    fn rejects_zero_total() {
        assert!(WeightedSplit::new(&BTreeMap::new()).is_err());
        let m: BTreeMap<String, u32> = [("a".to_string(), 0)].into_iter().collect();
        assert!(WeightedSplit::new(&m).is_err());
    }

    #[test]
    fn ten_thousand_picks_within_two_points() {
        let s = split(&[("v1", 90), ("v2", 10)]);
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for _ in 0..10_000 {
            *counts.entry(s.pick(rand::random())).or_default() += 1;
        }
        let v1 = f64::from(counts["v1"]) / 100.0;
        let v2 = f64::from(counts["v2"]) / 100.0;
        assert!((v1 - 90.0).abs() <= 2.0, "v1 got {v1}%");
        assert!((v2 - 10.0).abs() <= 2.0, "v2 got {v2}%");

        let s = split(&[("a", 1), ("b", 2), ("c", 7)]);
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for _ in 0..10_000 {
            *counts.entry(s.pick(rand::random())).or_default() += 1;
        }
        for (name, want) in [("a", 10.0), ("b", 20.0), ("c", 70.0)] {
            let got = f64::from(counts[name]) / 100.0;
            assert!((got - want).abs() <= 2.0, "{name} got {got}%, want {want}%");
        }
    }

    #[test]
    fn exact_boundaries_and_zero_weight() {
        let s = split(&[("a", 1), ("b", 0), ("c", 1)]);
        assert_eq!(s.pick(0), "a");
        assert_eq!(s.pick(u64::MAX / 2 - 1), "a");
        assert_eq!(s.pick(u64::MAX / 2 + 1), "c");
        assert_eq!(s.pick(u64::MAX), "c");
        assert_eq!(s.clusters().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(s.total_weight(), 2);
        // A zero-weight cluster is never picked, over the whole range.
        for k in 0..=1000u64 {
            assert_ne!(s.pick(k.wrapping_mul(u64::MAX / 1000)), "b");
        }
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let s = split(&[("a", u32::MAX), ("b", u32::MAX)]);
        assert_eq!(s.pick(0), "a");
        assert_eq!(s.pick(u64::MAX), "b");
    }
}
