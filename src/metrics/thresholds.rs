//! Threshold verdicts: pure checks of a finished [`RunSummary`] against limits a scenario sets.
//! A broken threshold makes the run exit 1.

use std::collections::BTreeMap;

use super::{RunSummary, ThresholdResult};

/// Limits to check. Model keys are catalog names (aliases resolved by the caller).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Most requests allowed to be lost (always 0 in practice).
    pub lost_requests: Option<u64>,
    /// Highest failed / issued allowed, 0..=1.
    pub error_rate: Option<f64>,
    /// Most requests allowed to fail while a live copy of their model existed.
    pub recovery_failures: Option<u64>,
    /// Highest warm p95 latency allowed per model, ms (every browser x backend row of it).
    pub p95_ms: BTreeMap<String, f64>,
    /// Highest warm p99 latency allowed per model, ms.
    pub p99_ms: BTreeMap<String, f64>,
}

/// Evaluates `limits` against `summary`. A model with a p95 limit but no measured row fails
/// (a limit that cannot be checked must not pass silently).
pub fn evaluate(summary: &RunSummary, limits: &Limits) -> Vec<ThresholdResult> {
    let mut out = Vec::new();
    let q = &summary.requests;
    if let Some(limit) = limits.lost_requests {
        out.push(result(
            "lost_requests".into(),
            limit as f64,
            q.lost as f64,
            q.lost <= limit,
        ));
    }
    if let Some(limit) = limits.error_rate {
        let rate = if q.issued == 0 {
            0.0
        } else {
            q.failed as f64 / q.issued as f64
        };
        out.push(result("error_rate".into(), limit, rate, rate <= limit));
    }
    if let Some(limit) = limits.recovery_failures {
        let n = q.causes.recovery;
        out.push(result(
            "recovery_failures".into(),
            limit as f64,
            n as f64,
            n <= limit,
        ));
    }
    for (key, per_model, pick) in [
        (
            "p95_ms",
            &limits.p95_ms,
            (|p: &super::Percentiles| p.p95) as fn(&super::Percentiles) -> f64,
        ),
        ("p99_ms", &limits.p99_ms, |p: &super::Percentiles| p.p99),
    ] {
        for (model, &limit) in per_model {
            let rows: Vec<_> = summary
                .results
                .iter()
                .filter(|r| &r.model == model && r.runs > 0)
                .collect();
            if rows.is_empty() {
                out.push(result(format!("{key}.{model}"), limit, f64::NAN, false));
            }
            for r in rows {
                let v = pick(&r.latency_ms);
                out.push(result(
                    format!("{key}.{model}.{}.{}", r.browser, r.backend),
                    limit,
                    v,
                    v <= limit,
                ));
            }
        }
    }
    out
}

fn result(name: String, limit: f64, value: f64, passed: bool) -> ThresholdResult {
    ThresholdResult {
        name,
        limit,
        value,
        passed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Percentiles, Requests, ResultRow};

    fn summary() -> RunSummary {
        let row = ResultRow {
            model: "bert-tiny".into(),
            browser: "chromium".into(),
            backend: "wasm".into(),
            runs: 10,
            latency_ms: Percentiles {
                p95: 12.0,
                ..Default::default()
            },
            ..Default::default()
        };
        let json = serde_json::json!({
            "schema_version": 1, "run_id": "r", "command": "c", "started_at": "", "finished_at": "",
            "complete": true, "environment": {"harness_version": "", "os": "", "cpus": 1, "browsers": []},
            "requests": {"issued": 100, "succeeded": 98, "failed": 2, "lost": 0},
            "results": [], "faults": [], "recovery_events": [], "thresholds": []
        });
        let mut s: RunSummary = serde_json::from_value(json).unwrap();
        s.results.push(row);
        s.requests = Requests {
            issued: 100,
            succeeded: 98,
            failed: 2,
            lost: 0,
            causes: crate::metrics::FailureCauses {
                capacity: 1,
                recovery: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        s
    }

    #[test]
    fn limits_pass_and_break() {
        let limits = Limits {
            lost_requests: Some(0),
            error_rate: Some(0.01),
            recovery_failures: Some(0),
            p95_ms: BTreeMap::from([("bert-tiny".into(), 20.0), ("vit-micro".into(), 5.0)]),
            p99_ms: BTreeMap::new(),
        };
        let v = evaluate(&summary(), &limits);
        let by: BTreeMap<_, _> = v.iter().map(|t| (t.name.as_str(), t.passed)).collect();
        assert!(by["lost_requests"]);
        assert!(!by["error_rate"], "2% > 1%");
        assert!(!by["recovery_failures"], "one failed while a copy was live");
        assert!(by["p95_ms.bert-tiny.chromium.wasm"]);
        assert!(!by["p95_ms.vit-micro"], "unmeasured model must not pass");
    }
}
