//! The resilience part of the view: the faults-by-kind and recovery-by-level tables, the fault
//! and recovery event rows, the request line of a faulted run and the notes on recoveries that
//! gave up, as cell text shared by the terminal, Markdown and HTML reports.

use crate::metrics::{FaultKindStats, Percentiles, RecoveryStats, Resilience, RunSummary};

/// The column headers of the faults-by-kind table (terminal, Markdown and HTML).
pub const FAULT_KIND_COLUMNS: [&str; 9] = [
    "fault kind",
    "injected",
    "skipped",
    "recoveries",
    "recovered",
    "detection p50 ms",
    "detection p95 ms",
    "time to recover p50 ms",
    "time to recover p95 ms",
];

/// The column headers of the recovery-by-ladder-level table (terminal, Markdown and HTML).
pub const RECOVERY_LEVEL_COLUMNS: [&str; 9] = [
    "ladder level",
    "events",
    "recovered",
    "detection p50 ms",
    "detection p95 ms",
    "recovery p50 ms",
    "recovery p95 ms",
    "time to recover p50 ms",
    "time to recover p95 ms",
];

/// What the recovery columns mean, printed under the recovery-by-level table.
pub const TIME_TO_RECOVER_NOTE: &str = "time to recover = detection + the time until every model the worker served answered again (fault to service back); recovery = the episode itself (a standby promotion takes about 0 ms); both cover the events that recovered service, not those of a worker that served nothing";

/// `99.83%`, or `-` when nothing was issued.
pub fn percent(rate: Option<f64>) -> String {
    match rate {
        Some(r) if r >= 1.0 => "100%".into(),
        Some(r) => format!("{:.2}%", r * 100.0),
        None => "-".into(),
    }
}

/// p50 and p95 in whole ms, `-` when the group had no value.
fn p50_p95(p: Option<Percentiles>) -> [String; 2] {
    match p {
        Some(p) => [format!("{:.0}", p.p50), format!("{:.0}", p.p95)],
        None => ["-".into(), "-".into()],
    }
}

/// The cells of one faults-by-kind row, in [`FAULT_KIND_COLUMNS`] order.
pub fn fault_kind_values(k: &FaultKindStats) -> [String; 9] {
    let r = &k.recovery;
    let [d50, d95] = p50_p95(r.detection_ms);
    let [t50, t95] = p50_p95(r.time_to_recover_ms);
    [
        k.kind.clone(),
        k.injected.to_string(),
        k.skipped.to_string(),
        r.events.to_string(),
        r.succeeded.to_string(),
        d50,
        d95,
        t50,
        t95,
    ]
}

/// The cells of one recovery-by-level row, in [`RECOVERY_LEVEL_COLUMNS`] order.
pub fn recovery_level_values(r: &RecoveryStats) -> [String; 9] {
    let [d50, d95] = p50_p95(r.detection_ms);
    let [r50, r95] = p50_p95(r.recovery_ms);
    let [t50, t95] = p50_p95(r.time_to_recover_ms);
    [
        r.key.clone(),
        r.events.to_string(),
        r.succeeded.to_string(),
        d50,
        d95,
        r50,
        r95,
        t50,
        t95,
    ]
}

/// The recovery-by-level rows: one per level reached, then `all` when there were events.
pub fn recovery_level_rows(r: &Resilience) -> Vec<&RecoveryStats> {
    let mut rows: Vec<&RecoveryStats> = r.by_level.iter().collect();
    if r.overall.events > 0 {
        rows.push(&r.overall);
    }
    rows
}

/// `1200 issued, 1198 succeeded, 2 failed, 0 lost, success rate 99.83%, 14 retried (at most
/// 3 attempts)`; the retried part only when the samples were at hand.
pub fn resilience_requests(r: &Resilience) -> String {
    let q = &r.requests;
    let mut out = format!(
        "{} issued, {} succeeded, {} failed, {} lost, success rate {}",
        q.issued,
        q.succeeded,
        q.failed,
        q.lost,
        percent(r.success_rate)
    );
    if let Some(t) = r.retries {
        out.push_str(&format!(", {} retried", t.retried));
        if t.retried > 0 {
            out.push_str(&format!(" (at most {} attempts)", t.max_attempts));
        }
    }
    out
}

/// Seconds from the run start with one decimal, `-` for 0 (an older `run.json` whose recovery
/// events carry no time).
pub fn seconds(at_ms: u64) -> String {
    if at_ms == 0 {
        "-".into()
    } else {
        format!("{:.1}", at_ms as f64 / 1000.0)
    }
}

/// One line per recovery that did not restore service: who, what, how far the ladder got, why.
pub fn failed_recovery_notes(summary: &RunSummary) -> Vec<String> {
    summary
        .recovery_events
        .iter()
        .filter(|e| !e.succeeded)
        .map(|e| {
            let who = if e.worker.is_empty() {
                String::new()
            } else {
                format!("{}: ", e.worker)
            };
            let how = match (e.detected_by.is_empty(), e.at_ms) {
                (true, 0) => String::new(),
                (true, at) => format!(" (at {} s)", seconds(at)),
                (false, 0) => format!(" (detected by {})", e.detected_by),
                (false, at) => format!(" (detected by {} at {} s)", e.detected_by, seconds(at)),
            };
            let steps = if e.steps.is_empty() {
                String::new()
            } else {
                format!(": {}", e.steps.join("; "))
            };
            let ladder = if e.level == "none" {
                "no ladder level ran".to_string()
            } else {
                format!("gave up at {} after {} ms", e.level, e.recovery_ms)
            };
            format!("{who}{}{how} not recovered, {ladder}{steps}", e.fault_kind)
        })
        .collect()
}

/// The columns of the fault list (Markdown and HTML).
pub const FAULT_COLUMNS: [&str; 5] = ["time s", "kind", "target", "injected", "detail"];

/// The cells of every fault, by time, in [`FAULT_COLUMNS`] order.
pub fn fault_rows(s: &RunSummary) -> Vec<[String; 5]> {
    let mut faults: Vec<_> = s.faults.iter().collect();
    faults.sort_by_key(|f| f.at_ms);
    faults
        .into_iter()
        .map(|f| {
            [
                format!("{:.1}", f.at_ms as f64 / 1000.0),
                f.kind.clone(),
                f.target.clone(),
                (if f.injected { "yes" } else { "skipped" }).into(),
                f.detail.clone(),
            ]
        })
        .collect()
}

/// The columns of the recovery event list (Markdown and HTML).
pub const RECOVERY_EVENT_COLUMNS: [&str; 8] = [
    "time s",
    "worker",
    "fault kind",
    "detected by",
    "level",
    "detection ms",
    "recovery ms",
    "result",
];

/// The cells of every recovery event, by detection time, in [`RECOVERY_EVENT_COLUMNS`] order (the stable sort keeps the recorded order of an
/// older run.json, whose events carry no time).
pub fn recovery_event_rows(s: &RunSummary) -> Vec<[String; 8]> {
    let mut events: Vec<_> = s.recovery_events.iter().collect();
    events.sort_by_key(|e| e.at_ms);
    events
        .into_iter()
        .map(|e| {
            [
                seconds(e.at_ms),
                e.worker.clone(),
                e.fault_kind.clone(),
                e.detected_by.clone(),
                e.level.clone(),
                e.detection_ms.to_string(),
                e.recovery_ms.to_string(),
                (if e.succeeded { "ok" } else { "failed" }).into(),
            ]
        })
        .collect()
}
