//! The format-neutral view of a finished run that the terminal tables ([`super::terminal`]),
//! `summary.md` ([`super::markdown`]) and `report.html` ([`super::html`]) share: column
//! headers, the text of each cell, the notes under the tables (fallbacks, failed checks, failed
//! recoveries) and the number formats (percent, seconds, p50/p95).
//!
//! Inputs: a [`RunSummary`] and the [`Resilience`] derived from it. Outputs: plain `String`s
//! and arrays of cell text, not yet escaped or styled; each format escapes and colours them.
//! Imports only `crate::metrics` (and `serde_json` for the page's values): no `comfy_table`,
//! no HTML or Markdown. Kept apart from the terminal renderer so that `summary.md` and
//! `report.html` do not import a comfy-table module to get their cell text; the alternative,
//! each format formatting its own cells, lets the three disagree.

use crate::metrics::{ResultRow, RunSummary};

mod adaptive;
mod resilience;
mod sharding;
pub use adaptive::adaptive_lines;
pub use resilience::*;
pub use sharding::*;

/// The column headers of the result table (terminal, Markdown and HTML).
pub const RESULT_COLUMNS: [&str; 14] = [
    "model",
    "browser",
    "backend",
    "weights",
    "load ms",
    "first run ms",
    "warm p50 ms",
    "warm p95 ms",
    "warm p99 ms",
    "runs/s",
    "cores",
    "native ms",
    "x native",
    "correct",
];

/// Columns of [`RESULT_COLUMNS`] holding numbers (right-aligned).
pub const RESULT_NUMERIC: std::ops::Range<usize> = 4..13;

/// The cells of one result row, as text, in [`RESULT_COLUMNS`] order.
pub fn row_values(r: &ResultRow) -> [String; 14] {
    let measured = r.runs > 0;
    let num = |v: f64| {
        if measured {
            format!("{v:.1}")
        } else {
            "-".to_string()
        }
    };
    [
        r.model.clone(),
        r.browser.clone(),
        match (&r.webnn, r.backend.is_empty()) {
            (_, true) => "-".into(),
            // The nodes WebNN took of the graph's: partial coverage shows in the table.
            (Some(w), false) => {
                let took = w.graph.as_ref().map_or_else(
                    || "?".to_string(),
                    |g| match (g.supported, g.nodes) {
                        (Some(s), Some(n)) => format!("{s}/{n}"),
                        _ => "?".to_string(),
                    },
                );
                format!("{} ({}) {took}", r.backend, w.device_type)
            }
            (None, false) => r.backend.clone(),
        },
        r.weights.clone(),
        if r.load_ms > 0.0 {
            format!("{:.0}", r.load_ms)
        } else {
            "-".into()
        },
        if r.first_run_ms > 0.0 {
            format!("{:.1}", r.first_run_ms)
        } else {
            "-".into()
        },
        num(r.latency_ms.p50),
        num(r.latency_ms.p95),
        num(r.latency_ms.p99),
        if measured {
            format!("{:.2}", r.throughput_per_s)
        } else {
            "-".into()
        },
        r.cores_used
            .filter(|_| measured)
            .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
        r.native.as_ref().map_or_else(
            || "-".into(),
            |n| format!("{:.1} / {:.1}", n.p50_ms_1_thread, n.p50_ms_all_threads),
        ),
        r.native.as_ref().map_or_else(
            || "-".into(),
            |n| {
                n.x_native.map_or_else(
                    || "-".into(),
                    |x| format!("{x:.1}x @{}", n.x_native_threads),
                )
            },
        ),
        verdict(r),
    ]
}

/// Notes under the result table that are not failures: what the native columns are, and any
/// page whose own run count differs from the answers the harness received.
pub fn info_notes(s: &RunSummary) -> Vec<String> {
    let mut notes: Vec<String> = native_note(s).into_iter().collect();
    if s.results.iter().any(|r| r.cores_used.is_some()) {
        notes.push(
            "cores: CPU time of the cell's browser processes (each process's CPU-time clock) over the wall time of \
             its measured runs; a WebNN or 1-thread wasm cell that uses about 1 is compared with \
             native at 1 thread"
                .to_string(),
        );
    }
    // What was proven before and while serving; per cell in run.json `correctness`.
    let cells = s.results.iter().filter(|r| !r.backend.is_empty());
    let (placements, rejected, answers) = cells.fold((0, 0, 0), |(p, x, a), r| {
        let c = &r.correctness;
        (
            p + c.placements_verified,
            x + c.placements_rejected,
            a + c.answers_digest_checked,
        )
    });
    if placements + rejected > 0 {
        notes.push(format!(
            "verified: {placements} placement(s) matched native onnxruntime before serving{}; \
             {answers} warm answers digest-checked against them (per cell: run.json correctness)",
            if rejected > 0 {
                format!(", {rejected} REJECTED")
            } else {
                String::new()
            }
        ));
    }
    for m in &s.environment.not_installed {
        notes.push(format!(
            "{} is not installed, so not in this run: {}",
            m.kind, m.install
        ));
    }
    for r in &s.results {
        if let Some(g) = r.webnn.as_ref().and_then(|w| w.graph.as_ref()) {
            let left: Vec<String> = g
                .unsupported_ops
                .iter()
                .map(|o| format!("{} x{}", o.op, o.count))
                .collect();
            let n = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
            notes.push(format!(
                "{} on {}: WebNN took {} of {} nodes in {} partition(s) ({} graph(s) built){}",
                r.model,
                r.browser,
                n(g.supported),
                n(g.nodes),
                n(g.partitions),
                n(g.graphs_built),
                if left.is_empty() {
                    String::new()
                } else {
                    format!("; left to wasm: {}", left.join(", "))
                }
            ));
        }
    }
    notes
}

fn native_note(s: &RunSummary) -> Option<String> {
    let n = s.results.iter().find_map(|r| r.native.as_ref())?;
    Some(format!(
        "native ms: the same ONNX file and input in {} outside the browser, warm p50 at 1 / {} \
         threads; x native: the cell's warm p50 over native's at the thread count nearest the \
         cores it used (@N)",
        n.runtime, n.all_threads
    ))
}

/// `ok (finite+cross)` or `FAIL (golden)`, with `; N failed` when some of the cell's requests
/// failed (the notes say why), or `error` when the cell has no answer to judge.
pub fn verdict(r: &ResultRow) -> String {
    if r.error.is_some() && r.runs == 0 {
        return "error".to_string();
    }
    let word = if r.correctness.passed { "ok" } else { "FAIL" };
    let failed = match r.failed {
        0 => String::new(),
        n => format!("; {n} failed"),
    };
    format!("{word} ({}){failed}", r.correctness.check)
}

/// Backend fallbacks, said once per browser and reason (the same fallback usually hits every
/// model of a browser): `bert, vit on chromium: fell back to wasm: ...`.
pub fn fallback_notes(summary: &RunSummary) -> Vec<String> {
    let mut fallbacks: Vec<(String, String, Vec<&str>)> = Vec::new();
    for r in &summary.results {
        if let Some(f) = &r.backend_fallback_reason {
            let key = (
                r.browser.clone(),
                format!("fell back to {}: {f}", r.backend),
            );
            match fallbacks
                .iter_mut()
                .find(|(b, why, _)| (b, why) == (&key.0, &key.1))
            {
                Some((_, _, models)) => models.push(&r.model),
                None => fallbacks.push((key.0, key.1, vec![&r.model])),
            }
        }
    }
    fallbacks
        .into_iter()
        .map(|(browser, why, models)| format!("{} on {browser}: {why}", models.join(", ")))
        .collect()
}

/// Rows that errored or failed their output check, one line each.
pub fn problem_notes(summary: &RunSummary) -> Vec<String> {
    let mut notes = Vec::new();
    for r in &summary.results {
        let who = format!("{} on {}", r.model, r.browser);
        if let Some(e) = &r.error {
            notes.push(format!("{who}: {e}"));
        }
        if !r.correctness.passed && r.error.is_none() {
            notes.push(format!(
                "{who}: output check failed: {}",
                r.correctness.detail
            ));
        }
    }
    for w in &summary.workers {
        if let Some(m) = w.runs.mismatch() {
            notes.push(format!(
                "{}: its pages' runs differ from what the harness sent: {m}",
                w.id
            ));
        }
    }
    if let Some(sh) = &summary.sharding {
        let c = &sh.correctness;
        if c.checked == 0 {
            notes.push(format!("{} sharded: no answer to check", sh.model));
        } else if !c.passed {
            notes.push(format!(
                "{} sharded: {} of {} answers outside tolerance (max abs diff {:.2e}, atol {:.0e}){}",
                sh.model,
                c.mismatched,
                c.checked,
                c.max_abs_diff,
                c.atol,
                c.argmax_mismatched
                    .filter(|&n| n > 0)
                    .map(|n| format!(", {n} with another argmax"))
                    .unwrap_or_default()
            ));
        }
        let b = &sh.baseline;
        if b.mismatched > 0 {
            notes.push(format!(
                "{} unsharded baseline on {}: {} of {} answers outside tolerance (max abs diff {:.2e})",
                sh.model,
                b.worker.as_deref().unwrap_or("-"),
                b.mismatched,
                b.checked,
                b.max_abs_diff.unwrap_or(f64::NAN)
            ));
        }
        let wrong = sh.rounds_mismatched();
        if wrong > 0 {
            let checked: u64 = sh.rounds.iter().map(|r| u64::from(r.sharded.checked)).sum();
            notes.push(format!(
                "{} sharded, in the rounds against the unsharded baseline: {wrong} of {checked} answers outside tolerance",
                sh.model
            ));
        }
        for e in sh.events.iter().filter(|e| !e.succeeded) {
            notes.push(format!(
                "{} sharded: recovery of shard {} from {} gave up: {}",
                sh.model, e.shard, e.from, e.cause
            ));
        }
    }
    notes
}

/// A value the page reported, as cell text: strings as they are, `-` for null, anything else
/// as JSON.
pub fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `yes` when the page reported `true`, else `no`.
pub fn yes(v: &serde_json::Value) -> &'static str {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
}

/// `2 capacity (no live copy while they waited), 1 recovery (...)`: the failed requests by
/// cause, when any failed with a recorded cause.
pub fn failure_causes(q: &crate::metrics::Requests) -> Option<String> {
    use crate::metrics::FailureCause;
    let parts: Vec<String> = FailureCause::ALL
        .iter()
        .filter(|c| q.causes.get(**c) > 0)
        .map(|&c| {
            let why = match c {
                FailureCause::Capacity => "no live copy while they waited",
                FailureCause::Recovery => "a live copy existed while they waited",
                FailureCause::Answer => "a copy answered wrong or threw",
                FailureCause::Overload => "the queue was full",
                FailureCause::Stopped => "the run was stopped",
            };
            format!("{} {} ({why})", q.causes.get(c), c.as_str())
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::{FaultRecord, RecoveryEvent, Requests, Resilience};

    /// A complete run with nothing in it.
    pub(crate) fn summary() -> RunSummary {
        serde_json::from_str(
            r#"{"schema_version":1,"run_id":"r","command":"c","started_at":"","finished_at":"",
            "complete":true,"environment":{"harness_version":"","os":"","cpus":1,"browsers":[]},
            "requests":{"issued":0,"succeeded":0,"failed":0,"lost":0},"results":[],"faults":[],
            "recovery_events":[],"thresholds":[]}"#,
        )
        .unwrap()
    }

    /// A run with an injected and a skipped fault, one recovery that worked and one that
    /// gave up.
    pub(crate) fn faulty() -> RunSummary {
        let mut s = summary();
        s.requests = Requests {
            issued: 600,
            succeeded: 599,
            failed: 1,
            lost: 0,
            ..Default::default()
        };
        s.faults = vec![
            FaultRecord {
                kind: "kill_browser".into(),
                at_ms: 15_000,
                target: "chromium#1".into(),
                injected: true,
                detail: "SIGKILL to browser pid 4242".into(),
            },
            FaultRecord {
                kind: "hang".into(),
                at_ms: 30_000,
                target: String::new(),
                injected: false,
                detail: "no live worker".into(),
            },
        ];
        s.recovery_events = vec![
            RecoveryEvent {
                fault_kind: "kill_browser".into(),
                level: "migrate".into(),
                detection_ms: 40,
                recovery_ms: 1100,
                succeeded: true,
                at_ms: 15_040,
                worker: "chromium#1".into(),
                detected_by: "process_exit".into(),
                steps: vec!["reset: the browser process is gone".into()],
                ..Default::default()
            },
            RecoveryEvent {
                fault_kind: "external".into(),
                level: "rebuild".into(),
                detection_ms: 2000,
                recovery_ms: 30_000,
                succeeded: false,
                at_ms: 42_000,
                worker: "firefox#1".into(),
                detected_by: "timeout".into(),
                steps: vec![
                    "migrate: no other live worker".into(),
                    "rebuild: the recovery timeout (30s) passed".into(),
                ],
                ..Default::default()
            },
        ];
        s
    }

    #[test]
    fn shared_rows_and_notes() {
        let s = faulty();
        let r = Resilience::from_run(&s, None);
        assert_eq!(
            resilience_requests(&r),
            "600 issued, 599 succeeded, 1 failed, 0 lost, success rate 99.83%"
        );
        let with_samples = Resilience {
            retries: Some(crate::metrics::Retries {
                retried: 4,
                max_attempts: 3,
            }),
            ..r.clone()
        };
        assert!(resilience_requests(&with_samples).ends_with(", 4 retried (at most 3 attempts)"));
        assert_eq!(percent(None), "-");
        assert_eq!(percent(Some(0.5)), "50.00%");
        let levels: Vec<[String; 9]> = recovery_level_rows(&r)
            .into_iter()
            .map(recovery_level_values)
            .collect();
        assert_eq!(
            levels[0],
            ["migrate", "1", "1", "40", "40", "1100", "1100", "1140", "1140"]
        );
        assert_eq!(
            levels[1],
            ["rebuild", "1", "0", "2000", "2000", "-", "-", "-", "-"]
        );
        assert_eq!(levels[2][..3], ["all", "2", "1"]);
        let faults = fault_rows(&s);
        assert_eq!(faults[1], ["30.0", "hang", "", "skipped", "no live worker"]);
        let events = recovery_event_rows(&s);
        assert_eq!(
            events[0],
            [
                "15.0",
                "chromium#1",
                "kill_browser",
                "process_exit",
                "migrate",
                "40",
                "1100",
                "ok"
            ]
        );
        assert_eq!(events[1][7], "failed");
    }

    #[test]
    fn a_cell_with_a_few_failed_requests_still_shows_its_correctness() {
        let mut r = ResultRow {
            runs: 3120,
            failed: 1,
            error: Some("1 of 3121 requests failed (1 tab_crash)".into()),
            ..Default::default()
        };
        r.correctness.passed = true;
        r.correctness.check = "finite+oracle".into();
        assert_eq!(verdict(&r), "ok (finite+oracle); 1 failed");
        r.correctness.passed = false;
        assert_eq!(verdict(&r), "FAIL (finite+oracle); 1 failed");
        // Nothing answered: nothing to judge.
        r.runs = 0;
        assert_eq!(verdict(&r), "error");
    }

    #[test]
    fn a_recovery_with_no_ladder_says_so() {
        let mut s = summary();
        s.recovery_events.push(RecoveryEvent {
            fault_kind: "hang".into(),
            level: "none".into(),
            detection_ms: 5000,
            ..Default::default()
        });
        assert_eq!(
            failed_recovery_notes(&s),
            ["hang not recovered, no ladder level ran"]
        );
    }
}
