//! Baseline comparison: per-metric deltas between two runs and a noise-aware significance test
//! over their raw samples, so that `compare` fails CI only on a regression that is both large
//! and real.
//!
//! Inputs: two runs as [`RunSummary`] plus their [`Sample`]s. Output: a [`Comparison`] with one
//! [`MetricDelta`] per model x browser x backend x metric. Pure: imports only std, serde and
//! `crate::metrics`; no I/O (the report module reads the files and prints the table).
//!
//! The tests, per metric:
//! - warm latency p50: one-sided Mann-Whitney U over the measured `page_ms` of each request
//!   (normal approximation with tie and continuity correction). Rank-based, so one outlier (a GC
//!   pause, a descheduled thread) cannot make a run look slower; a t-test on means would be moved
//!   by it, which is why it was rejected.
//! - warm latency p95: a percentile bootstrap of the p95 ratio (deterministic seed, so the same
//!   two runs always give the same verdict). A rank test answers "is the whole distribution
//!   shifted", not "did the tail move".
//! - throughput: one-sided Mann-Whitney U over `service_ms` (the harness's per-request time): in
//!   a closed loop, throughput is the inverse of service time, and the summary's single
//!   throughput number has no spread to test.
//!
//! A regression is a change for the worse larger than the threshold AND p < alpha.

use serde::{Deserialize, Serialize};

use super::{Percentiles, Phase, RunSummary, Sample};

/// Regression criteria.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CompareOptions {
    /// Smallest change for the worse that counts, as a fraction (0.05 = 5%).
    pub threshold: f64,
    /// Significance level: a change counts only when p < alpha.
    pub alpha: f64,
    /// Fewer measured samples than this on either side: no verdict.
    pub min_samples: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            threshold: 0.05,
            alpha: 0.01,
            min_samples: 5,
        }
    }
}

/// A model x browser x backend cell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CellKey {
    /// Catalog model name.
    pub model: String,
    /// Browser kind.
    pub browser: String,
    /// Backend used.
    pub backend: String,
}

impl std::fmt::Display for CellKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.model, self.browser, self.backend)
    }
}

/// What is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Median warm `session.run` time in the page, ms (lower is better).
    LatencyP50,
    /// 95th percentile of the same, ms (lower is better).
    LatencyP95,
    /// Warm requests per second (higher is better).
    Throughput,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 3] = [Self::LatencyP50, Self::LatencyP95, Self::Throughput];

    /// Display name, e.g. `latency p50`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LatencyP50 => "latency p50",
            Self::LatencyP95 => "latency p95",
            Self::Throughput => "throughput",
        }
    }

    /// Unit of the values.
    pub fn unit(self) -> &'static str {
        match self {
            Self::LatencyP50 | Self::LatencyP95 => "ms",
            Self::Throughput => "/s",
        }
    }

    fn higher_is_better(self) -> bool {
        matches!(self, Self::Throughput)
    }
}

/// The verdict on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Worse by more than the threshold, and significant.
    Regression,
    /// Better by more than the threshold, and significant.
    Improvement,
    /// Within the threshold, or not significant.
    Unchanged,
    /// Too few samples on one side to say.
    Insufficient,
}

/// One metric of one cell, baseline against current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDelta {
    /// The cell.
    pub cell: CellKey,
    /// The metric.
    pub metric: Metric,
    /// Baseline value (unit: [`Metric::unit`]).
    pub baseline: f64,
    /// Current value.
    pub current: f64,
    /// Relative change `current / baseline - 1` (+0.23 = 23% higher).
    pub change: f64,
    /// One-sided p-value of "current is worse than baseline".
    pub p_value: f64,
    /// The test that gave `p_value`.
    pub test: String,
    /// Measured samples in the baseline.
    pub n_baseline: usize,
    /// Measured samples in the current run.
    pub n_current: usize,
    /// The verdict.
    pub verdict: Verdict,
}

impl MetricDelta {
    /// `bert-tiny/chromium/wasm latency p50 +23.4% (p=1.2e-9)`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} {:+.1}% (p={})",
            self.cell,
            self.metric.as_str(),
            self.change * 100.0,
            format_p(self.p_value)
        )
    }
}

/// Formats a p-value compactly: `0.43`, `0.0031`, `1.2e-9`.
pub fn format_p(p: f64) -> String {
    if p >= 0.01 {
        format!("{p:.2}")
    } else if p >= 0.001 {
        format!("{p:.4}")
    } else {
        format!("{p:.1e}")
    }
}

/// The whole comparison.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The criteria used.
    pub threshold: f64,
    /// Significance level used.
    pub alpha: f64,
    /// One entry per cell and metric present in both runs.
    pub deltas: Vec<MetricDelta>,
    /// Cells measured in the baseline but not in the current run.
    pub only_in_baseline: Vec<CellKey>,
    /// Cells measured in the current run but not in the baseline.
    pub only_in_current: Vec<CellKey>,
}

impl Comparison {
    /// The significant regressions.
    pub fn regressions(&self) -> impl Iterator<Item = &MetricDelta> {
        self.deltas
            .iter()
            .filter(|d| d.verdict == Verdict::Regression)
    }
}

/// One run as `compare` sees it.
#[derive(Debug, Clone, Copy)]
pub struct RunData<'a> {
    /// Its `run.json`.
    pub summary: &'a RunSummary,
    /// Its `samples.csv`.
    pub samples: &'a [Sample],
}

/// Measured (warm, successful) samples of each cell, in the order of `summary.results`.
fn cells(run: RunData<'_>) -> Vec<(CellKey, Vec<&Sample>)> {
    let mut out: Vec<(CellKey, Vec<&Sample>)> = Vec::new();
    for s in run.samples {
        if s.phase != Phase::Measure
            || !s.ok
            || s.page_ms.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            continue;
        }
        let key = CellKey {
            model: s.model.clone(),
            browser: s.browser.clone(),
            backend: s.backend.clone(),
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(s),
            None => out.push((key, vec![s])),
        }
    }
    out
}

fn throughput_of(summary: &RunSummary, key: &CellKey, samples: &[&Sample]) -> f64 {
    let row = summary.results.iter().find(|r| {
        r.model == key.model
            && r.browser == key.browser
            && r.backend == key.backend
            && r.throughput_per_s > 0.0
    });
    match row {
        Some(r) => r.throughput_per_s,
        // No row (a hand-made or partial run): requests over the span they covered.
        None => {
            let start = samples
                .iter()
                .map(|s| s.started_ms)
                .fold(f64::MAX, f64::min);
            let end = samples
                .iter()
                .map(|s| s.started_ms + s.service_ms)
                .fold(0.0, f64::max);
            if end > start {
                samples.len() as f64 * 1000.0 / (end - start)
            } else {
                0.0
            }
        }
    }
}

/// Compares `current` with `baseline`.
pub fn compare(
    baseline: RunData<'_>,
    current: RunData<'_>,
    options: &CompareOptions,
) -> Comparison {
    let base_cells = cells(baseline);
    let cur_cells = cells(current);
    let mut out = Comparison {
        threshold: options.threshold,
        alpha: options.alpha,
        ..Default::default()
    };
    for (key, base) in &base_cells {
        let Some((_, cur)) = cur_cells.iter().find(|(k, _)| k == key) else {
            out.only_in_baseline.push(key.clone());
            continue;
        };
        let page = |v: &[&Sample]| v.iter().map(|s| s.page_ms).collect::<Vec<f64>>();
        let service = |v: &[&Sample]| v.iter().map(|s| s.service_ms).collect::<Vec<f64>>();
        let (bp, cp) = (page(base), page(cur));
        for metric in Metric::ALL {
            let (b, c, p, test) = match metric {
                Metric::LatencyP50 => (
                    median(&bp),
                    median(&cp),
                    mann_whitney_greater(&cp, &bp),
                    "mann-whitney u (page_ms)",
                ),
                Metric::LatencyP95 => (
                    p95(&bp),
                    p95(&cp),
                    bootstrap_p95_greater(&cp, &bp, 2000),
                    "bootstrap p95 ratio (page_ms)",
                ),
                Metric::Throughput => (
                    throughput_of(baseline.summary, key, base),
                    throughput_of(current.summary, key, cur),
                    mann_whitney_greater(&service(cur), &service(base)),
                    "mann-whitney u (service_ms)",
                ),
            };
            let change = if b > 0.0 { c / b - 1.0 } else { 0.0 };
            let worse_by = if metric.higher_is_better() {
                -change
            } else {
                change
            };
            let verdict = if bp.len() < options.min_samples || cp.len() < options.min_samples {
                Verdict::Insufficient
            } else if worse_by > options.threshold && p < options.alpha {
                Verdict::Regression
            } else if -worse_by > options.threshold && 1.0 - p < options.alpha {
                // The one-sided p of "better" is the complement for a continuous test; close
                // enough to label improvements, which never fail a run.
                Verdict::Improvement
            } else {
                Verdict::Unchanged
            };
            out.deltas.push(MetricDelta {
                cell: key.clone(),
                metric,
                baseline: b,
                current: c,
                change,
                p_value: p,
                test: test.to_string(),
                n_baseline: bp.len(),
                n_current: cp.len(),
                verdict,
            });
        }
    }
    for (key, _) in &cur_cells {
        if !base_cells.iter().any(|(k, _)| k == key) {
            out.only_in_current.push(key.clone());
        }
    }
    out
}

fn median(v: &[f64]) -> f64 {
    Percentiles::from_ms(v).map_or(0.0, |p| p.p50)
}

fn p95(v: &[f64]) -> f64 {
    Percentiles::from_ms(v).map_or(0.0, |p| p.p95)
}

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
    let mut rng = SplitMix64(0x5eed_c0de_2026);
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

fn resample(rng: &mut SplitMix64, from: &[f64], into: &mut [f64]) {
    for slot in into.iter_mut() {
        *slot = from[(rng.next() % from.len() as u64) as usize];
    }
}

/// Nearest-rank p95, by selection (linear time; bootstraps call it thousands of times).
fn p95_in_place(v: &mut [f64]) -> f64 {
    let rank = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    *v.select_nth_unstable_by(rank - 1, f64::total_cmp).1
}

/// SplitMix64: tiny, fast, good enough to drive a bootstrap (rand was rejected: a dependency
/// for twenty lines, and `metrics` imports nothing but std and serde).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64, page_ms: f64) -> Sample {
        Sample {
            seq,
            model: "m".into(),
            browser: "chromium".into(),
            worker: "chromium#1".into(),
            backend: "wasm".into(),
            phase: Phase::Measure,
            scheduled_ms: seq as f64 * 100.0,
            started_ms: seq as f64 * 100.0,
            latency_ms: page_ms + 1.0,
            service_ms: page_ms + 1.0,
            page_ms,
            ok: true,
            error: String::new(),
            attempt: 1,
        }
    }

    fn summary() -> RunSummary {
        serde_json::from_value(serde_json::json!({
            "schema_version": 1, "run_id": "r", "command": "c", "started_at": "", "finished_at": "",
            "complete": true, "environment": {"harness_version": "", "os": "", "cpus": 2, "browsers": []},
            "requests": {"issued": 0, "succeeded": 0, "failed": 0, "lost": 0},
            "results": [], "faults": [], "recovery_events": [], "thresholds": []
        }))
        .unwrap()
    }

    /// Deterministic jittered values around `centre` (a Fake* stand-in for measured times in a
    /// unit test of pure statistics).
    fn jittered(centre: f64, n: u64, seed: u64) -> Vec<Sample> {
        let mut rng = SplitMix64(seed);
        (0..n)
            .map(|i| {
                let u = (rng.next() % 1000) as f64 / 1000.0;
                sample(i, centre * (0.9 + 0.2 * u))
            })
            .collect()
    }

    #[test]
    fn identical_runs_are_unchanged() {
        let s = summary();
        let a = jittered(12.0, 30, 1);
        let run = RunData {
            summary: &s,
            samples: &a,
        };
        let c = compare(run, run, &CompareOptions::default());
        assert_eq!(c.deltas.len(), 3);
        assert!(
            c.deltas.iter().all(|d| d.verdict == Verdict::Unchanged),
            "{c:#?}"
        );
        assert!(c.deltas.iter().all(|d| d.change == 0.0 && d.p_value > 0.3));
    }

    #[test]
    fn a_shifted_run_is_a_regression_naming_the_metric() {
        let s = summary();
        let (a, b) = (jittered(12.0, 30, 1), jittered(15.0, 30, 2));
        let c = compare(
            RunData {
                summary: &s,
                samples: &a,
            },
            RunData {
                summary: &s,
                samples: &b,
            },
            &CompareOptions::default(),
        );
        let reg: Vec<String> = c.regressions().map(MetricDelta::describe).collect();
        assert!(
            reg.iter()
                .any(|r| r.starts_with("m/chromium/wasm latency p50 +")),
            "{reg:?}"
        );
        assert!(c.regressions().all(|d| d.p_value < 1e-3));
        // ...and the other way round it is an improvement, never a regression.
        let c = compare(
            RunData {
                summary: &s,
                samples: &b,
            },
            RunData {
                summary: &s,
                samples: &a,
            },
            &CompareOptions::default(),
        );
        assert_eq!(c.regressions().count(), 0);
        assert!(c.deltas.iter().any(|d| d.verdict == Verdict::Improvement));
    }

    #[test]
    fn a_small_shift_under_the_threshold_passes() {
        let s = summary();
        let a: Vec<Sample> = (0..40).map(|i| sample(i, 10.0 + i as f64 * 0.01)).collect();
        let b: Vec<Sample> = (0..40).map(|i| sample(i, 10.3 + i as f64 * 0.01)).collect();
        let c = compare(
            RunData {
                summary: &s,
                samples: &a,
            },
            RunData {
                summary: &s,
                samples: &b,
            },
            &CompareOptions::default(),
        );
        // Significant (every sample moved) but only 3%: not a regression.
        let p50 = &c.deltas[0];
        assert!(p50.p_value < 0.01 && p50.change < 0.05, "{p50:?}");
        assert_eq!(c.regressions().count(), 0);
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

    #[test]
    fn too_few_samples_give_no_verdict() {
        let s = summary();
        let (a, b) = (jittered(10.0, 3, 1), jittered(30.0, 3, 2));
        let c = compare(
            RunData {
                summary: &s,
                samples: &a,
            },
            RunData {
                summary: &s,
                samples: &b,
            },
            &CompareOptions::default(),
        );
        assert!(c.deltas.iter().all(|d| d.verdict == Verdict::Insufficient));
    }

    #[test]
    fn p_values_format_compactly() {
        assert_eq!(format_p(0.4321), "0.43");
        assert_eq!(format_p(0.0031), "0.0031");
        assert_eq!(format_p(1.23e-9), "1.2e-9");
    }
}
