//! Samples into a cell's figures: the successful measured runs' page latency and round trip
//! percentiles, throughput over the cell's active span, and the failures by class. Pure, over
//! [`Sample`]s only (imports nothing but `metrics`): the engine picks which samples make a cell.

use std::collections::BTreeMap;

use super::{Percentiles, Sample};

/// What one model x browser x backend cell's measured samples add up to.
#[derive(Debug, Clone, Default)]
pub struct CellStats {
    /// Successful runs.
    pub runs: u64,
    /// Failed requests.
    pub failed: u64,
    /// `session.run` in the page, over successful runs.
    pub latency_ms: Percentiles,
    /// Scheduled start to completion, over successful runs.
    pub round_trip_ms: Percentiles,
    /// Successful runs per second over the span from the first issue to the last completion.
    pub throughput_per_s: f64,
    /// `"2 of 10 requests failed (1 crash, 1 timeout)"` when any failed.
    pub error: Option<String>,
}

/// Adds up `samples` (one cell's measured samples).
pub fn cell(samples: &[&Sample]) -> CellStats {
    let ok: Vec<&Sample> = samples.iter().copied().filter(|s| s.ok).collect();
    let mut stats = CellStats {
        runs: ok.len() as u64,
        failed: (samples.len() - ok.len()) as u64,
        latency_ms: Percentiles::from_ms(&ok.iter().map(|s| s.page_ms).collect::<Vec<_>>())
            .unwrap_or_default(),
        round_trip_ms: Percentiles::from_ms(&ok.iter().map(|s| s.latency_ms).collect::<Vec<_>>())
            .unwrap_or_default(),
        ..CellStats::default()
    };
    let start = samples
        .iter()
        .map(|s| s.started_ms)
        .fold(f64::INFINITY, f64::min);
    let end = samples
        .iter()
        .map(|s| s.scheduled_ms + s.latency_ms)
        .fold(0.0, f64::max);
    if end > start && !ok.is_empty() {
        stats.throughput_per_s = ok.len() as f64 / ((end - start) / 1e3);
    }
    if stats.failed > 0 {
        let mut classes: BTreeMap<&str, u64> = BTreeMap::new();
        for s in samples.iter().filter(|s| !s.ok) {
            *classes.entry(s.error.as_str()).or_default() += 1;
        }
        let what: Vec<String> = classes.iter().map(|(c, n)| format!("{n} {c}")).collect();
        stats.error = Some(format!(
            "{} of {} requests failed ({})",
            stats.failed,
            samples.len(),
            what.join(", ")
        ));
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Phase;

    fn sample(started_ms: f64, latency_ms: f64, page_ms: f64, error: &str) -> Sample {
        Sample {
            seq: 0,
            model: "m".into(),
            browser: "chromium".into(),
            worker: "chromium#1".into(),
            backend: "wasm".into(),
            phase: Phase::Measure,
            scheduled_ms: started_ms,
            started_ms,
            latency_ms,
            service_ms: latency_ms,
            page_ms,
            ok: error.is_empty(),
            error: error.into(),
            attempt: 1,
            cause: None,
        }
    }

    #[test]
    fn a_cell_counts_runs_failures_by_class_and_throughput_over_its_span() {
        let s = [
            sample(0.0, 100.0, 90.0, ""),
            sample(100.0, 100.0, 80.0, ""),
            sample(200.0, 300.0, 0.0, "timeout"),
            sample(500.0, 500.0, 0.0, "page"),
        ];
        let refs: Vec<&Sample> = s.iter().collect();
        let c = cell(&refs);
        assert_eq!((c.runs, c.failed), (2, 2));
        // Two successes over the span 0 .. 1000 ms.
        assert!(
            (c.throughput_per_s - 2.0).abs() < 1e-9,
            "{}",
            c.throughput_per_s
        );
        assert_eq!(c.latency_ms.max, 90.0);
        assert_eq!(
            c.error.as_deref(),
            Some("2 of 4 requests failed (1 page, 1 timeout)")
        );
    }

    #[test]
    fn a_cell_without_successes_has_no_throughput() {
        let s = [sample(0.0, 10.0, 0.0, "crash")];
        let c = cell(&[&s[0]]);
        assert_eq!((c.runs, c.failed, c.throughput_per_s), (0, 1, 0.0));
    }
}
