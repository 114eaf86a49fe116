//! The two one-sided significance tests behind [`super::compare`]: Mann-Whitney U (is the
//! whole distribution shifted up) and a percentile bootstrap of the p95 (did the tail move),
//! with the normal tail and the seeded generator they need.
//!
//! Inputs: two slices of measured values, `x` (current) and `y` (baseline). Output: the p-value
//! of "`x` tends to be larger than `y`"; the caller turns it into a verdict. The mirror test,
//! "`x` tends to be smaller", is the same function with `x` and `y` swapped (not `1 - p`: the
//! continuity correction and the bootstrap's ties make the two tails overlap). Pure and
//! deterministic (fixed seed), so the same two runs always get the same verdict. Imports only
//! the crate's one seeded generator (`crate::rng`): no serde, no `report` or `cli` (it is
//! statistics, kept apart from the run data model in the parent so it can be read and tested
//! alone).

use crate::rng::Seeded;

/// One-sided Mann-Whitney U test: p-value of "values in `x` tend to be larger than in `y`",
/// by the normal approximation with tie correction and continuity correction. 1.0 when there is
/// nothing to rank or every value is tied.
pub fn mann_whitney_greater(x: &[f64], y: &[f64]) -> f64 {
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    if x.is_empty() || y.is_empty() {
        return 1.0;
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len() as f64;
    let (mut rank_sum_x, mut tie_term) = (0.0, 0.0);
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        // Ranks are 1-based; a tie group shares the average of its ranks.
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_x += avg_rank * all[i..=j].iter().filter(|(_, in_x)| *in_x).count() as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let u = rank_sum_x - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if var <= 0.0 {
        return 1.0;
    }
    let z = (u - mean - 0.5) / var.sqrt();
    upper_tail(z)
}

/// Holm's step-down correction for `p.len()` tests at family-wise level `alpha`: per test, in
/// the order given, the level its p had to be at or under (`alpha / (K - rank)`, rank 0 for
/// the smallest p) and whether its null is rejected. A test is rejected only when it and every
/// smaller p passed their levels, so K tries at a move cannot find a chance winner at `alpha`.
pub fn holm(p: &[f64], alpha: f64) -> Vec<(f64, bool)> {
    let k = p.len();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![(alpha, false); k];
    let mut still = true;
    for (rank, &i) in order.iter().enumerate() {
        let level = alpha / (k - rank) as f64;
        still = still && p[i] <= level;
        out[i] = (level, still);
    }
    out
}

/// P(Z > z) for a standard normal.
fn upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes `erfcc`, fractional error < 1.2e-7
/// everywhere, so small p-values keep their order of magnitude).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Bootstrap p-value of "the p95 of `x` is larger than the p95 of `y`": the share of
/// `rounds` paired resamples in which it is not, with the usual +1 correction so it is never 0.
/// Deterministic (fixed seed): a verdict must not change between two invocations.
pub fn bootstrap_p95_greater(x: &[f64], y: &[f64], rounds: u32) -> f64 {
    if x.is_empty() || y.is_empty() {
        return 1.0;
    }
    let mut rng = Seeded::new(0x5eed_c0de_2026);
    let (mut bx, mut by) = (vec![0.0; x.len()], vec![0.0; y.len()]);
    let mut not_greater = 0u32;
    for _ in 0..rounds {
        resample(&mut rng, x, &mut bx);
        resample(&mut rng, y, &mut by);
        if p95_in_place(&mut bx) <= p95_in_place(&mut by) {
            not_greater += 1;
        }
    }
    (f64::from(not_greater) + 1.0) / (f64::from(rounds) + 1.0)
}

fn resample(rng: &mut Seeded, from: &[f64], into: &mut [f64]) {
    for slot in into.iter_mut() {
        *slot = from[rng.below(from.len())];
    }
}

/// Nearest-rank p95, by selection (linear time; bootstraps call it thousands of times).
fn p95_in_place(v: &mut [f64]) -> f64 {
    let rank = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    *v.select_nth_unstable_by(rank - 1, f64::total_cmp).1
}

/// The bootstrap's generator, for the deterministic fixtures of the comparison tests in the
/// parent module (the generator itself stays private to the bootstrap).
#[cfg(test)]
pub(super) fn test_rng(seed: u64) -> impl FnMut() -> u64 {
    let mut rng = Seeded::new(seed);
    move || rng.next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_steps_down_and_stops_at_the_first_p_over_its_level() {
        // Sorted: 0.001 <= 0.05/4, 0.011 <= 0.05/3 (0.0167), 0.03 > 0.05/2: stop there, so
        // 0.04 is not rejected either although it is under 0.05.
        let r = holm(&[0.04, 0.001, 0.03, 0.011], 0.05);
        assert_eq!(
            r.iter().map(|x| x.1).collect::<Vec<_>>(),
            [false, true, false, true]
        );
        assert!((r[1].0 - 0.0125).abs() < 1e-12 && (r[0].0 - 0.05).abs() < 1e-12);
        // A p that passes alpha alone fails once three others were tried beside it.
        assert!(holm(&[0.008], 0.01)[0].1);
        assert!(!holm(&[0.008, 0.5, 0.6], 0.01)[0].1);
        assert!(holm(&[], 0.01).is_empty());
    }

    #[test]
    fn mann_whitney_matches_a_hand_computed_value() {
        // x all above y: U = n1*n2 = 25, mean 12.5, var 25*11/12; z = (25-12.5-0.5)/sqrt(22.9167)
        let p = mann_whitney_greater(&[6.0, 7.0, 8.0, 9.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0]);
        let z: f64 = 12.0 / (25.0f64 * 11.0 / 12.0).sqrt();
        assert!((p - upper_tail(z)).abs() < 1e-12);
        assert!((p - 0.00609).abs() < 1e-4, "{p}");
        assert_eq!(mann_whitney_greater(&[1.0, 1.0], &[1.0, 1.0]), 1.0);
        assert_eq!(mann_whitney_greater(&[], &[1.0]), 1.0);
    }

    #[test]
    fn erfc_is_accurate() {
        assert!((erfc(0.0) - 1.0).abs() < 1e-7);
        assert!((erfc(1.0) - 0.157_299_207).abs() < 1e-7);
        assert!((erfc(-1.0) - 1.842_700_793).abs() < 1e-7);
        // 6 sigma: 1.97e-9 one-sided; the relative error must stay small out there.
        assert!((upper_tail(6.0) / 9.865_876_45e-10 - 1.0).abs() < 1e-3);
    }

    #[test]
    fn bootstrap_is_deterministic_and_directional() {
        let y: Vec<f64> = (0..30).map(|i| 10.0 + i as f64 * 0.1).collect();
        let x: Vec<f64> = y.iter().map(|v| v * 1.5).collect();
        assert!(bootstrap_p95_greater(&x, &y, 2000) < 0.01);
        assert!(bootstrap_p95_greater(&y, &x, 2000) > 0.99);
        assert_eq!(
            bootstrap_p95_greater(&x, &y, 500),
            bootstrap_p95_greater(&x, &y, 500)
        );
    }
}
