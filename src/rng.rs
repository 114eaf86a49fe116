//! The one seeded generator: the same seed gives the same weights, inputs, fault plan and
//! bootstrap on every machine and every build.
//!
//! ChaCha8 from `rand_chacha` (its output for a seed is part of that crate's stability promise,
//! unlike `rand`'s `StdRng`), seeded through `rand_core`'s `seed_from_u64`; independent streams
//! of one seed (one per weight tensor, say) come from ChaCha's stream number, taken from a hash
//! of the stream's name. Normal samples come from `rand_distr`.

use rand::{Rng as _, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// A seeded generator.
#[derive(Debug, Clone)]
pub struct Seeded(ChaCha8Rng);

impl Seeded {
    /// The generator of `seed`.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// The stream `name` of `seed`: independent of every other name's, and the same whatever
    /// else was drawn before (a tensor's weights do not depend on the tensors written first).
    pub fn for_stream(seed: u64, name: &str) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(fnv1a(name));
        Self(rng)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// Uniform index below `n`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.0.random_range(0..n)
        }
    }

    /// Uniform in `lo..hi`; `lo` when the range is empty.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            self.0.random_range(lo..hi)
        }
    }

    /// `n` samples of N(0, `std`^2).
    pub fn normals(&mut self, n: usize, std: f32) -> Vec<f32> {
        match Normal::new(0.0f32, std) {
            Ok(normal) => normal.sample_iter(&mut self.0).take(n).collect(),
            // A negative or non-finite deviation: every sample is the mean.
            Err(_) => vec![0.0; n],
        }
    }
}

/// FNV-1a of `name`: the stream number.
fn fnv1a(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_stream_and_another_seed_another() {
        let (mut a, mut b) = (Seeded::new(7), Seeded::new(7));
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut c = Seeded::new(8);
        assert_ne!(xs[0], c.next_u64());
    }

    #[test]
    fn the_stream_is_pinned_across_builds() {
        // ChaCha8 from seed_from_u64(42): if a dependency upgrade changed it, every seeded
        // weight and fault plan would silently change with it.
        let mut r = Seeded::new(42);
        let first = r.next_u64();
        let mut again = Seeded::new(42);
        assert_eq!(first, again.next_u64());
        assert_eq!(first, PINNED_42, "ChaCha8 seed 42 changed: {first:#x}");
    }

    // Recorded from this implementation; see the test above.
    const PINNED_42: u64 = 0xae90_bfb5_395d_5ba1;

    #[test]
    fn named_streams_are_independent_of_order_and_of_each_other() {
        let w1 = Seeded::for_stream(42, "layer.0.weight").normals(4, 0.02);
        let mut other = Seeded::for_stream(42, "layer.1.weight");
        let _ = other.normals(100, 0.02);
        assert_eq!(
            w1,
            Seeded::for_stream(42, "layer.0.weight").normals(4, 0.02)
        );
        assert_ne!(
            w1,
            Seeded::for_stream(42, "layer.1.weight").normals(4, 0.02)
        );
    }

    #[test]
    fn draws_stay_in_their_ranges_and_normals_have_their_spread() {
        let mut r = Seeded::new(1);
        for _ in 0..1000 {
            assert!((0.0..1.0).contains(&r.unit()));
            assert!(r.below(3) < 3);
            assert!((10..20).contains(&r.range(10, 20)));
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.range(5, 5), 5);
        let v = Seeded::new(3).normals(20_000, 0.02);
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / v.len() as f64;
        assert!(mean.abs() < 0.001, "{mean}");
        assert!((var.sqrt() - 0.02).abs() < 0.001, "{}", var.sqrt());
    }
}
