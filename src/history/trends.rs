//! Trends: for each configuration (a whole [`CellKey`]: model, browser, backend, adapter,
//! threads, browser build, load context), every recorded run against the run before it, with
//! the same noise-aware tests `compare` uses over raw samples (Mann-Whitney U on the chosen
//! time, [`Timing`], for p50, a bootstrap for p95, Mann-Whitney on service times for
//! throughput), so a 2% wobble inside the noise is not a regression and a 30% slowdown over
//! enough samples is. A run under another load context, adapter, thread count or browser build
//! is another series, never the next point of this one; a run of an unknown load context
//! (recorded before it was) is compared with none. Anomalies are single runs whose
//! median sits far from the configuration's usual median (a robust z-score over the median
//! absolute deviation of the others). Pure.

use serde::Serialize;

use crate::metrics::compare::{self, CompareOptions, MetricDelta, Timing, Verdict};
use crate::metrics::Sample;

use super::{CellKey, CellRun};

/// Criteria for trends and anomalies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendOptions {
    /// `compare`'s threshold, significance level, minimum sample count and timing.
    pub compare: CompareOptions,
    /// Robust z-score above which a run is an anomaly.
    pub anomaly_z: f64,
    /// Runs of a configuration needed (the run itself and at least this many minus one others)
    /// before anomalies are looked for.
    pub anomaly_min_runs: usize,
}

impl Default for TrendOptions {
    fn default() -> Self {
        Self {
            compare: CompareOptions::default(),
            anomaly_z: 5.0,
            anomaly_min_runs: 5,
        }
    }
}

/// One run of a configuration against the one before it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendStep {
    /// The configuration.
    pub key: CellKey,
    /// The earlier run.
    pub from_run: String,
    /// The later run.
    pub to_run: String,
    /// When the later run started.
    pub at: String,
    /// One delta per metric (the timing's p50 and p95, throughput), with its p-value and
    /// verdict.
    pub deltas: Vec<MetricDelta>,
}

impl TrendStep {
    /// Whether any metric regressed.
    pub fn regressed(&self) -> bool {
        self.deltas.iter().any(|d| d.verdict == Verdict::Regression)
    }

    /// Whether any metric improved.
    pub fn improved(&self) -> bool {
        self.deltas
            .iter()
            .any(|d| d.verdict == Verdict::Improvement)
    }
}

/// A run far from its configuration's usual median.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// The configuration.
    pub key: CellKey,
    /// The run.
    pub run_id: String,
    /// Its p50 of the timing, ms.
    pub p50_ms: f64,
    /// Median of the other runs' p50, ms.
    pub usual_ms: f64,
    /// Robust z-score: distance over 1.4826 x MAD of the others.
    pub z: f64,
}

/// Every step and anomaly found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrendReport {
    /// The time the p50 and p95 tests and the anomalies are about.
    pub timing: Timing,
    /// Consecutive runs compared, per configuration, in time order.
    pub steps: Vec<TrendStep>,
    /// Runs far from the usual.
    pub anomalies: Vec<Anomaly>,
}

impl TrendReport {
    /// Steps with a significant regression.
    pub fn regressions(&self) -> impl Iterator<Item = &TrendStep> {
        self.steps.iter().filter(|s| s.regressed())
    }

    /// Steps with a significant improvement.
    pub fn improvements(&self) -> impl Iterator<Item = &TrendStep> {
        self.steps.iter().filter(|s| s.improved())
    }
}

/// The p50 of `timing` a recorded cell has (none for end-to-end before schema version 2).
pub fn p50_of(cell: &CellRun, timing: Timing) -> Option<f64> {
    match timing {
        Timing::PageRun => Some(cell.p50_ms),
        Timing::EndToEnd => cell.e2e_p50_ms,
    }
}

/// Trends over `runs`: each recorded cell with its measured samples, oldest first.
pub fn trends(runs: &[super::Recorded], options: &TrendOptions) -> TrendReport {
    // Only keys of a known load context make series: an unknown one is comparable with
    // nothing, not even with another unknown.
    let mut keys: Vec<&CellKey> = runs
        .iter()
        .map(|(c, _)| &c.key)
        .filter(|k| k.load.is_known())
        .collect();
    keys.sort();
    keys.dedup();
    let timing = options.compare.timing;
    let mut out = TrendReport {
        timing,
        ..TrendReport::default()
    };
    for key in keys {
        let series: Vec<&(CellRun, Vec<Sample>)> =
            runs.iter().filter(|(c, _)| c.key.comparable(key)).collect();
        for pair in series.windows(2) {
            let ((a, a_samples), (b, b_samples)) = (pair[0], pair[1]);
            let base: Vec<&Sample> = a_samples.iter().collect();
            let cur: Vec<&Sample> = b_samples.iter().collect();
            let deltas = compare::compare_cell(
                key,
                &base,
                &cur,
                (a.throughput_per_s, b.throughput_per_s),
                &options.compare,
            );
            out.steps.push(TrendStep {
                key: key.clone(),
                from_run: a.run_id.clone(),
                to_run: b.run_id.clone(),
                at: b.started_at.clone(),
                deltas,
            });
        }
        let medians: Vec<(&CellRun, f64)> = series
            .iter()
            .filter_map(|(c, _)| Some((c, p50_of(c, timing)?)))
            .collect();
        if medians.len() >= options.anomaly_min_runs.max(3) {
            for (i, &(c, p50)) in medians.iter().enumerate() {
                let others: Vec<f64> = medians
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, (_, o))| *o)
                    .collect();
                if let Some(z) = robust_z(p50, &others) {
                    let usual = median(&others);
                    let off = (p50 / usual - 1.0).abs();
                    if z > options.anomaly_z && off > options.compare.threshold {
                        out.anomalies.push(Anomaly {
                            key: key.clone(),
                            run_id: c.run_id.clone(),
                            p50_ms: p50,
                            usual_ms: usual,
                            z,
                        });
                    }
                }
            }
        }
    }
    out
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// `|x - median(others)| / (1.4826 MAD(others))`; a MAD of zero counts as 1% of the median,
/// so identical earlier runs do not make every later wobble infinite.
fn robust_z(x: f64, others: &[f64]) -> Option<f64> {
    if others.len() < 2 {
        return None;
    }
    let m = median(others);
    let dev: Vec<f64> = others.iter().map(|o| (o - m).abs()).collect();
    let mad = (1.4826 * median(&dev)).max(0.01 * m.abs());
    (mad > 0.0).then(|| (x - m).abs() / mad)
}
