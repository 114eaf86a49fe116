//! Baseline comparison: per-metric deltas between two runs and a noise-aware significance test
//! over their raw samples, so that `compare` fails CI only on a regression that is both large
//! and real.
//!
//! Inputs: two runs as [`RunSummary`] plus their [`Sample`]s. Output: a [`Comparison`] with one
//! [`MetricDelta`] per cell and metric, a [`LostCell`] per cell that succeeded in the baseline
//! and not once now (`compare/lost.rs`), and an [`Unlike`] per cell measured under other
//! conditions (`compare/unlike.rs`). Cells are matched by their whole [`CellKey`] (model,
//! browser, backend, adapter, wasm threads, browser build, load context): a cell measured alone
//! in the baseline and under three other models now is not compared, it is named. Pure:
//! imports only std, serde and `crate::metrics`; no I/O (the report module reads the files and
//! prints the table). The significance tests themselves are in `compare/significance.rs`.
//!
//! Which time is tested is a [`Timing`]: the page's own `session.run` time (`page_ms`, the
//! default: what the browser and backend did, free of the harness's queueing and driver round
//! trip) or the end-to-end latency (`latency_ms`, from the scheduled start to the answer: what
//! a caller waits). The tests, per metric:
//! - p50 of the timing: one-sided Mann-Whitney U over the measured times of each request
//!   (normal approximation with tie and continuity correction). Rank-based, so one outlier (a GC
//!   pause, a descheduled thread) cannot make a run look slower; a t-test on means would be moved
//!   by it, which is why it was rejected.
//! - p95 of the timing: a percentile bootstrap of the p95 ratio (deterministic seed, so the same
//!   two runs always give the same verdict). A rank test answers "is the whole distribution
//!   shifted", not "did the tail move".
//! - throughput: one-sided Mann-Whitney U over `service_ms` (the harness's per-request time): in
//!   a closed loop, throughput is the inverse of service time, and the summary's single
//!   throughput number has no spread to test.
//!
//! A regression is a change for the worse larger than the threshold AND p < alpha, where p is
//! the one-sided test of "current is worse". An improvement is the mirror: a change for the
//! better larger than the threshold AND p < alpha of the mirror test, "current is better" (the
//! same test with the two runs swapped). Not `1 - p` of the test for worse, which was rejected:
//! the continuity correction and the bootstrap's ties make the two tails overlap, so the
//! complement is smaller than the mirror's p (five runs all below five: 0.0033 against 0.0061)
//! and calls improvements that the same runs swapped would not call regressions. Every
//! [`MetricDelta`] carries the p of one direction, that of its observed change, and names it
//! ([`MetricDelta::direction`]).

use serde::{Deserialize, Serialize};

use super::{Percentiles, Phase, RunSummary, Sample};

mod lost;
mod significance;
mod unlike;

pub use super::CellKey;
pub use lost::LostCell;
pub use significance::{bootstrap_p95_greater, holm, mann_whitney_greater};
pub use unlike::Unlike;

/// Regression criteria.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CompareOptions {
    /// Smallest change for the worse that counts, as a fraction (0.05 = 5%).
    pub threshold: f64,
    /// Significance level: a change counts only when p < alpha.
    pub alpha: f64,
    /// Fewer measured samples than this on either side: no verdict.
    pub min_samples: usize,
    /// Which time the p50 and p95 tests compare.
    pub timing: Timing,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            threshold: 0.05,
            alpha: 0.01,
            min_samples: 5,
            timing: Timing::PageRun,
        }
    }
}

/// Which time of a request the p50 and p95 tests compare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Timing {
    /// The page's own `session.run` time (`page_ms`): what the browser and backend did. The
    /// default, because it is what a browser, backend or model change moves, and the harness's
    /// queueing and driver round trip (a few ms that vary with the machine's load) are not in it.
    #[default]
    PageRun,
    /// End-to-end latency (`latency_ms`): from the request's scheduled start to its answer, as
    /// the harness saw it: what a caller waits, queueing and the driver round trip included.
    EndToEnd,
}

impl Timing {
    /// `page run time` or `end-to-end latency`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PageRun => "page run time",
            Self::EndToEnd => "end-to-end latency",
        }
    }

    /// The sample field it reads.
    pub fn field(self) -> &'static str {
        match self {
            Self::PageRun => "page_ms",
            Self::EndToEnd => "latency_ms",
        }
    }

    /// Its measured values in `samples`: the page's `session.run` times, or the end-to-end
    /// latencies that were recorded (a history sample from before schema version 2 has none).
    pub fn times(self, samples: &[&Sample]) -> Vec<f64> {
        match self {
            Self::PageRun => samples.iter().map(|s| s.page_ms).collect(),
            Self::EndToEnd => samples
                .iter()
                .map(|s| s.latency_ms)
                .filter(|v| v.is_finite())
                .collect(),
        }
    }

    /// Its p50 and p95 metrics.
    pub fn metrics(self) -> [Metric; 2] {
        match self {
            Self::PageRun => [Metric::PageRunP50, Metric::PageRunP95],
            Self::EndToEnd => [Metric::EndToEndP50, Metric::EndToEndP95],
        }
    }

    /// Its p50 metric.
    pub fn p50(self) -> Metric {
        self.metrics()[0]
    }
}

/// What is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Median warm page run time (the page's `session.run`), ms (lower is better).
    PageRunP50,
    /// 95th percentile of the same, ms (lower is better).
    PageRunP95,
    /// Median warm end-to-end latency (scheduled start to answer), ms (lower is better).
    EndToEndP50,
    /// 95th percentile of the same, ms (lower is better).
    EndToEndP95,
    /// Warm requests per second (higher is better).
    Throughput,
}

impl Metric {
    /// Display name, e.g. `page run time p50`, `end-to-end latency p95`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PageRunP50 => "page run time p50",
            Self::PageRunP95 => "page run time p95",
            Self::EndToEndP50 => "end-to-end latency p50",
            Self::EndToEndP95 => "end-to-end latency p95",
            Self::Throughput => "throughput",
        }
    }

    /// Unit of the values.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Throughput => "/s",
            _ => "ms",
        }
    }

    fn higher_is_better(self) -> bool {
        matches!(self, Self::Throughput)
    }
}

/// Which way a change goes: the one-sided alternative a p-value tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Current is worse than baseline (slower; for throughput, fewer requests per second).
    Worse,
    /// Current is better than baseline.
    Better,
}

impl Direction {
    /// `worse` or `better`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Worse => "worse",
            Self::Better => "better",
        }
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
    /// One-sided p-value of "current is [`direction`](Self::direction) than baseline".
    pub p_value: f64,
    /// The direction `p_value` tests: the direction of the observed change (`worse` when there
    /// is no change). So a regression carries the p of "current is worse", an improvement the p
    /// of "current is better", and an unchanged metric the p of the way it moved (rather than
    /// the smaller p of the two tests, which could be of the direction opposite to `change`).
    pub direction: Direction,
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
    /// `bert-tiny/chromium/wasm page run time p50 +23.4% (p_worse=1.2e-9)`: the p names the
    /// direction it tests.
    pub fn describe(&self) -> String {
        format!(
            "{} {} {:+.1}% (p_{}={})",
            self.cell,
            self.metric.as_str(),
            self.change * 100.0,
            self.direction.as_str(),
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
    /// The time the p50 and p95 tests compared.
    pub timing: Timing,
    /// One entry per cell and metric measured alike in both runs.
    pub deltas: Vec<MetricDelta>,
    /// Cells measured in both runs but under other conditions (adapter, threads, build or
    /// load context): not compared, and each fails the gate. Comparing them was the bug this
    /// fixes (a cell alone against the same cell beside three other models read as +160%).
    pub unlike: Vec<Unlike>,
    /// Cells with successful measured runs in the baseline and none in the current run (all
    /// failed, or the cell is gone). Each fails the gate; listing them as notes was rejected: a
    /// model that stopped working passed, having nothing left to test.
    pub lost_cells: Vec<LostCell>,
    /// Cells measured in the current run but not in the baseline.
    pub only_in_current: Vec<CellKey>,
}

impl Comparison {
    /// Whether the gate passes: no significant regression, no lost cell and no cell measured
    /// unlike. The one place the verdict is made; `compare` turns `false` into exit 1, or into
    /// exit 2 when a cell was measured unlike ([`Self::alike`]).
    pub fn passed(&self) -> bool {
        self.regressions().next().is_none() && self.lost_cells.is_empty() && self.alike()
    }

    /// Whether every cell of the baseline found in the current run was measured alike there.
    pub fn alike(&self) -> bool {
        self.unlike.is_empty()
    }

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

/// Measured (warm, successful) samples of each cell, in the order of first sample, each with
/// its whole key (from the run's row and environment, and the run's load context).
fn cells(run: RunData<'_>) -> Vec<(CellKey, Vec<&Sample>)> {
    let mut out: Vec<(CellKey, Vec<&Sample>)> = Vec::new();
    for s in run.samples {
        if s.phase != Phase::Measure
            || !s.ok
            || s.page_ms.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            continue;
        }
        match out.iter_mut().find(|(k, _)| {
            (k.model.as_str(), k.browser.as_str(), k.backend.as_str())
                == (s.model.as_str(), s.browser.as_str(), s.backend.as_str())
        }) {
            Some((_, v)) => v.push(s),
            None => out.push((
                CellKey::of_cell(run.summary, &s.model, &s.browser, &s.backend),
                vec![s],
            )),
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

/// A one-sided test over two samples of times: the p-value of "`x` tends to be larger".
type TestGreater = fn(&[f64], &[f64]) -> f64;

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
        timing: options.timing,
        ..Default::default()
    };
    for (key, base) in &base_cells {
        let Some((now, cur)) = cur_cells.iter().find(|(k, _)| k.same_cell(key)) else {
            out.lost_cells
                .push(lost::lost_cell(key, base.len(), current));
            continue;
        };
        if !key.comparable(now) {
            out.unlike.push(Unlike {
                baseline: key.clone(),
                current: now.clone(),
            });
            continue;
        }
        let throughput = (
            throughput_of(baseline.summary, key, base),
            throughput_of(current.summary, key, cur),
        );
        out.deltas
            .extend(compare_cell(key, base, cur, throughput, options));
    }
    for (key, _) in &cur_cells {
        if !base_cells.iter().any(|(k, _)| k.same_cell(key)) {
            out.only_in_current.push(key.clone());
        }
    }
    out
}

/// One cell's metrics, baseline samples against current ones: the tests and verdicts of
/// [`compare`], for callers that hold the samples of one cell measured alike on both sides
/// (the history's trends). `throughput` is (baseline, current) requests per second.
pub fn compare_cell(
    key: &CellKey,
    base: &[&Sample],
    cur: &[&Sample],
    throughput: (f64, f64),
    options: &CompareOptions,
) -> Vec<MetricDelta> {
    let mut deltas = Vec::new();
    let timing = options.timing;
    let service = |v: &[&Sample]| v.iter().map(|s| s.service_ms).collect::<Vec<f64>>();
    let (bp, cp) = (timing.times(base), timing.times(cur));
    let (bs, cs) = (service(base), service(cur));
    let [p50_metric, p95_metric] = timing.metrics();
    for metric in [p50_metric, p95_metric, Metric::Throughput] {
        // Every test runs over times, where larger is worse (throughput over service_ms:
        // in a closed loop it is their inverse). `test_greater(x, y)` is the p of "x is
        // larger than y", so the mirror test is the same call with the runs swapped.
        let (b, c, test_greater, test): (f64, f64, TestGreater, _) = if metric == p50_metric {
            (
                median(&bp),
                median(&cp),
                mann_whitney_greater,
                format!("mann-whitney u ({})", timing.field()),
            )
        } else if metric == p95_metric {
            (
                p95(&bp),
                p95(&cp),
                |x, y| bootstrap_p95_greater(x, y, 2000),
                format!("bootstrap p95 ratio ({})", timing.field()),
            )
        } else {
            (
                throughput.0,
                throughput.1,
                mann_whitney_greater,
                "mann-whitney u (service_ms)".to_string(),
            )
        };
        let (base_times, cur_times) = if metric == Metric::Throughput {
            (&bs, &cs)
        } else {
            (&bp, &cp)
        };
        let change = if b > 0.0 { c / b - 1.0 } else { 0.0 };
        let worse_by = if metric.higher_is_better() {
            -change
        } else {
            change
        };
        let (direction, p) = if worse_by < 0.0 {
            (Direction::Better, test_greater(base_times, cur_times))
        } else {
            (Direction::Worse, test_greater(cur_times, base_times))
        };
        let verdict = if bp.len() < options.min_samples || cp.len() < options.min_samples {
            Verdict::Insufficient
        } else if worse_by.abs() > options.threshold && p < options.alpha {
            match direction {
                Direction::Worse => Verdict::Regression,
                Direction::Better => Verdict::Improvement,
            }
        } else {
            Verdict::Unchanged
        };
        deltas.push(MetricDelta {
            cell: key.clone(),
            metric,
            baseline: b,
            current: c,
            change,
            p_value: p,
            direction,
            test,
            n_baseline: bp.len(),
            n_current: cp.len(),
            verdict,
        });
    }
    deltas
}

fn median(v: &[f64]) -> f64 {
    Percentiles::from_ms(v).map_or(0.0, |p| p.p50)
}

fn p95(v: &[f64]) -> f64 {
    Percentiles::from_ms(v).map_or(0.0, |p| p.p95)
}

#[cfg(test)]
mod tests;
