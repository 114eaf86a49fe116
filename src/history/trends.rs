//! Trends: for each configuration, every recorded run against the run before it, with the same
//! noise-aware tests `compare` uses over raw samples (Mann-Whitney U on the page's times for
//! p50, a bootstrap for p95, Mann-Whitney on service times for throughput), so a 2% wobble
//! inside the noise is not a regression and a 30% slowdown over enough samples is. Anomalies
//! are single runs whose median sits far from the configuration's usual median (a robust
//! z-score over the median absolute deviation of the others). Pure.

use serde::Serialize;

use crate::metrics::compare::{self, CompareOptions, MetricDelta, Verdict};
use crate::metrics::Sample;

use super::{CellKey, CellRun};

/// Criteria for trends and anomalies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendOptions {
    /// `compare`'s threshold, significance level and minimum sample count.
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
    /// Browser version in the earlier and the later run (a change is often the cause).
    pub versions: (String, String),
    /// One delta per metric (p50, p95, throughput), with its p-value and verdict.
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
    /// Its p50, ms.
    pub p50_ms: f64,
    /// Median of the other runs' p50, ms.
    pub usual_ms: f64,
    /// Robust z-score: distance over 1.4826 x MAD of the others.
    pub z: f64,
}

/// Every step and anomaly found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrendReport {
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

/// Trends over `runs`: each recorded cell with its measured samples, oldest first.
pub fn trends(runs: &[super::Recorded], options: &TrendOptions) -> TrendReport {
    let mut keys: Vec<&CellKey> = runs.iter().map(|(c, _)| &c.key).collect();
    keys.sort();
    keys.dedup();
    let mut out = TrendReport::default();
    for key in keys {
        let series: Vec<&(CellRun, Vec<Sample>)> =
            runs.iter().filter(|(c, _)| &c.key == key).collect();
        let cmp_key = compare::CellKey {
            model: key.model.clone(),
            browser: key.browser.clone(),
            backend: key.backend.clone(),
        };
        for pair in series.windows(2) {
            let ((a, a_samples), (b, b_samples)) = (pair[0], pair[1]);
            let base: Vec<&Sample> = a_samples.iter().collect();
            let cur: Vec<&Sample> = b_samples.iter().collect();
            let deltas = compare::compare_cell(
                &cmp_key,
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
                versions: (a.browser_version.clone(), b.browser_version.clone()),
                deltas,
            });
        }
        if series.len() >= options.anomaly_min_runs.max(3) {
            for (i, (c, _)) in series.iter().map(|x| (&x.0, &x.1)).enumerate() {
                let others: Vec<f64> = series
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, (o, _))| o.p50_ms)
                    .collect();
                if let Some(z) = robust_z(c.p50_ms, &others) {
                    let usual = median(&others);
                    let off = (c.p50_ms / usual - 1.0).abs();
                    if z > options.anomaly_z && off > options.compare.threshold {
                        out.anomalies.push(Anomaly {
                            key: key.clone(),
                            run_id: c.run_id.clone(),
                            p50_ms: c.p50_ms,
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
