//! A small deterministic random generator for seeded weights and synthetic inputs.
//!
//! SplitMix64 for the bits and Box-Muller for normals. We do not use the `rand` crates: the
//! exact stream must never change under a dependency upgrade, since it feeds the cache key's
//! meaning (same seed, same weights) and cross-run output comparisons.
//! Inputs: a seed. Outputs: `u64`, uniform `f64`, normal `f32`. Imports nothing.

/// SplitMix64 (Steele, Lea, Flood 2014) with a cached second Box-Muller normal.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
    spare: Option<f64>,
}

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 {
            state: seed,
            spare: None,
        }
    }

    /// A generator for one named stream: `seed` mixed with an FNV-1a hash of `name`, so each
    /// tensor's values depend only on (seed, name), not on the order tensors are built in. That
    /// keeps a sub-range of layers (a shard) identical to the same layers of the full model.
    pub fn for_stream(seed: u64, name: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut mixer = SplitMix64::new(seed ^ h);
        SplitMix64::new(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `[lo, hi)`; `hi` must exceed `lo` (else returns `lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }

    /// A standard normal sample (Box-Muller; the second value of each pair is kept for the next call).
    pub fn next_normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // 1 - u keeps the logarithm's argument in (0, 1].
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }

    /// `n` samples of N(0, std^2) as f32.
    pub fn normals(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n).map(|_| self.next_normal() as f32 * std).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = SplitMix64::new(42);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = SplitMix64::new(42);
        let b: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(a, b);
        // Reference value of SplitMix64 seeded with 0 (first output).
        assert_eq!(SplitMix64::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn streams_depend_on_name_and_seed() {
        let a = SplitMix64::for_stream(1, "a").next_u64();
        let b = SplitMix64::for_stream(1, "b").next_u64();
        let c = SplitMix64::for_stream(2, "a").next_u64();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, SplitMix64::for_stream(1, "a").next_u64());
    }

    #[test]
    fn normals_have_the_requested_spread() {
        let v = SplitMix64::new(7).normals(100_000, 0.02);
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / v.len() as f64;
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!((var.sqrt() - 0.02).abs() < 5e-4, "std {}", var.sqrt());
    }
}
