//! Latency statistics over raw samples: exact nearest-rank percentiles.
//!
//! Pure and closed: imports only std and serde. Exact percentiles over the stored samples are
//! used instead of a histogram because a run holds at most a few hundred thousand samples and
//! exact values make small runs (20 iterations) honest.

use serde::{Deserialize, Serialize};

/// Summary statistics of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
    /// Smallest sample.
    pub min: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Percentiles {
    /// Computes the statistics of `samples_ms`; `None` when there are no finite samples.
    pub fn from_ms(samples_ms: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = samples_ms
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        Some(Self {
            p50: nearest_rank(&v, 50.0),
            p95: nearest_rank(&v, 95.0),
            p99: nearest_rank(&v, 99.0),
            max: v[v.len() - 1],
            min: v[0],
            mean,
        })
    }
}

/// Nearest-rank percentile of an ascending, non-empty slice.
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::from_ms(&v).unwrap();
        assert_eq!(
            (p.p50, p.p95, p.p99, p.max, p.min),
            (50.0, 95.0, 99.0, 100.0, 1.0)
        );
        assert!((p.mean - 50.5).abs() < 1e-9);
    }

    #[test]
    fn single_and_empty() {
        assert_eq!(Percentiles::from_ms(&[7.0]).unwrap().p99, 7.0);
        assert!(Percentiles::from_ms(&[]).is_none());
        assert!(Percentiles::from_ms(&[f64::NAN]).is_none());
    }
}
