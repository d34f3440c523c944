//! A small PRNG (SplitMix64) for choosing which requests get a fault. Seeded per
//! VM from the host clock and root context id; no OS randomness is needed, so the
//! module builds for wasm32-unknown-unknown.

/// SplitMix64 (Steele, Lea, Flood 2014): fast, statistically sound for sampling.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `ppm` / 1,000,000.
    pub fn chance_ppm(&mut self, ppm: u32) -> bool {
        if ppm == 0 {
            return false;
        }
        if ppm >= 1_000_000 {
            return true;
        }
        // Multiply-shift maps 64 random bits uniformly onto 0..1_000_000.
        let r = ((u128::from(self.next_u64()) * 1_000_000) >> 64) as u32;
        r < ppm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_hold() {
        for seed in [1u64, 42, 0xDEAD_BEEF] {
            let mut r = SplitMix64::new(seed);
            let hits = (0..10_000).filter(|_| r.chance_ppm(100_000)).count();
            assert!((800..=1200).contains(&hits), "seed {seed}: {hits}");
        }
        let mut r = SplitMix64::new(7);
        assert!((0..100).all(|_| r.chance_ppm(1_000_000)));
        assert!((0..100).all(|_| !r.chance_ppm(0)));
    }
}
