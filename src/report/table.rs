//! The terminal tables (comfy-table): the run summary with footnotes for fallbacks and errors,
//! faults and recovery, `models list`, `browsers` and workers. The row and note helpers are
//! shared with `summary.md` and `report.html`.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Color, Table};

use crate::metrics::{
    BrowserEnv, FaultKindStats, ModelInfo, Percentiles, RecoveryStats, Resilience, ResultRow,
    RunSummary, ToolInfo,
};

/// The column headers of the result table (terminal and Markdown).
pub const RESULT_COLUMNS: [&str; 11] = [
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
    "correct",
];

/// A new table in the house style. Colour (the red/green verdicts) only when `NO_COLOR` is
/// unset (<https://no-color.org>) and stdout is a terminal (comfy-table checks that itself).
pub fn new_table() -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    if colour_disabled() {
        table.force_no_tty();
    }
    table
}

/// Whether `NO_COLOR` asks for no colour (any non-empty value).
pub fn colour_disabled() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// The cells of one result row, as text, in [`RESULT_COLUMNS`] order.
pub fn row_values(r: &ResultRow) -> [String; 11] {
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
        if r.backend.is_empty() {
            "-".into()
        } else {
            r.backend.clone()
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
        verdict(r),
    ]
}

/// `ok (finite+cross)`, `FAIL (golden)` or `error`.
pub fn verdict(r: &ResultRow) -> String {
    match (&r.error, r.correctness.passed) {
        (Some(_), _) => "error".to_string(),
        (None, true) => format!("ok ({})", r.correctness.check),
        (None, false) => format!("FAIL ({})", r.correctness.check),
    }
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
    notes
}

/// Renders the per model x browser x backend table and its notes.
pub fn render(summary: &RunSummary) -> String {
    let mut table = new_table();
    table.set_header(RESULT_COLUMNS);
    for r in &summary.results {
        let values = row_values(r);
        let colour = if r.error.is_some() || !r.correctness.passed {
            Color::Red
        } else {
            Color::Green
        };
        let mut cells: Vec<Cell> = values.into_iter().map(Cell::new).collect();
        if let Some(last) = cells.pop() {
            cells.push(last.fg(colour));
        }
        table.add_row(cells);
    }
    for i in 4..10 {
        if let Some(c) = table.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let q = &summary.requests;
    let mut out = format!("{table}\n");
    out.push_str(&format!(
        "requests: {} issued, {} succeeded, {} failed, {} lost\n",
        q.issued, q.succeeded, q.failed, q.lost
    ));
    if summary.results.iter().any(|r| r.weights == "seeded") {
        out.push_str(
            "seeded: random weights at the exact architecture (same compute as the real model)\n",
        );
    }
    for n in fallback_notes(summary)
        .into_iter()
        .chain(problem_notes(summary))
    {
        out.push_str(&format!("note: {n}\n"));
    }
    for t in summary.thresholds.iter().filter(|t| !t.passed) {
        out.push_str(&format!(
            "threshold failed: {} = {} (limit {})\n",
            t.name, t.value, t.limit
        ));
    }
    if let Some(why) = &summary.stopped_early {
        out.push_str(&format!("stopped early: {why}\n"));
    }
    out
}

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
pub const TIME_TO_RECOVER_NOTE: &str = "time to recover = detection + recovery (fault to serving again); recovery and time to recover cover the events that recovered";

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

/// `time to recover p50 ms` as `time to recover` over `p50 ms`, so the percentile tables fit
/// a 120-column terminal.
fn two_lines(header: &str) -> String {
    header.replacen(" p", "\np", 1)
}

/// Renders the faults and recovery of a run: the request accounting with the success rate,
/// faults by kind, recovery events by ladder level, and one line per failed recovery. Empty
/// when the run had no faults and no recovery events. Takes only the summary, so the retried
/// count (which needs `samples.csv`) is left to `summary.md` and `report.html`.
pub fn render_resilience(summary: &RunSummary) -> String {
    let r = Resilience::from_run(summary, None);
    if r.is_empty() {
        return String::new();
    }
    let right = |table: &mut Table| {
        for i in 1..9 {
            if let Some(c) = table.column_mut(i) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
    };
    let recovered = |s: &RecoveryStats| {
        let cell = Cell::new(s.succeeded);
        match s.events {
            0 => cell,
            _ if s.failed() > 0 => cell.fg(Color::Red),
            _ => cell.fg(Color::Green),
        }
    };
    let mut out = format!("faults and recovery: {}\n", resilience_requests(&r));

    let mut kinds = new_table();
    kinds.set_header(FAULT_KIND_COLUMNS.map(two_lines));
    for k in &r.fault_kinds {
        let mut cells: Vec<Cell> = fault_kind_values(k).into_iter().map(Cell::new).collect();
        cells[4] = recovered(&k.recovery);
        kinds.add_row(cells);
    }
    right(&mut kinds);
    out.push_str(&format!("{kinds}\n"));

    let rows = recovery_level_rows(&r);
    if rows.is_empty() {
        out.push_str("no recovery events\n");
    } else {
        let mut levels = new_table();
        levels.set_header(RECOVERY_LEVEL_COLUMNS.map(two_lines));
        for s in rows {
            let mut cells: Vec<Cell> = recovery_level_values(s)
                .into_iter()
                .map(Cell::new)
                .collect();
            cells[2] = recovered(s);
            levels.add_row(cells);
        }
        right(&mut levels);
        out.push_str(&format!("{levels}\n"));
        out.push_str(&format!("{TIME_TO_RECOVER_NOTE}\n"));
    }
    for n in failed_recovery_notes(summary) {
        out.push_str(&format!("recovery failed: {n}\n"));
    }
    out
}

/// Renders `models list`.
pub fn render_models(models: &[ModelInfo]) -> String {
    let mut table = new_table();
    table.set_header(["model", "aliases", "task", "about"]);
    for m in models
        .iter()
        .filter(|m| !m.test_variant)
        .chain(models.iter().filter(|m| m.test_variant))
    {
        let name = if m.test_variant {
            format!("{} (test)", m.name)
        } else {
            m.name.clone()
        };
        table.add_row([
            name,
            m.aliases.join(", "),
            m.task.clone(),
            m.summary.clone(),
        ]);
    }
    format!("{table}\n")
}

/// Renders `browsers`: one row per browser with its WebGPU adapter, WebNN and WASM facts.
pub fn render_browsers(browsers: &[BrowserEnv], drivers: &[ToolInfo]) -> String {
    let mut table = new_table();
    table.set_header([
        "browser",
        "version",
        "driver",
        "WebGPU adapter",
        "WebNN",
        "WASM",
    ]);
    for b in browsers {
        let gpu = &b.webgpu;
        let adapter = if gpu["available"].as_bool() == Some(true) {
            let a = &gpu["adapter"];
            let fallback = if a["fallback"].as_bool() == Some(true) {
                ", software fallback"
            } else {
                ""
            };
            let f16 = match gpu["features"].as_array() {
                Some(f) if f.iter().any(|x| x == "shader-f16") => ", shader-f16",
                _ => "",
            };
            format!(
                "{} {}{fallback}{f16}",
                text(&a["vendor"]),
                text(&a["architecture"])
            )
        } else {
            format!("unavailable: {}", text(&gpu["reason"]))
        };
        let webnn = if b.webnn["available"].as_bool() == Some(true) {
            "available".to_string()
        } else {
            format!("unavailable: {}", text(&b.webnn["reason"]))
        };
        let wasm = format!(
            "simd {}, threads {}, {} thread(s), isolated {}",
            yes(&b.wasm["simd"]),
            yes(&b.wasm["threads"]),
            b.wasm["num_threads"].as_u64().unwrap_or(1),
            if b.cross_origin_isolated { "yes" } else { "no" }
        );
        table.add_row([
            b.kind.clone(),
            b.version.clone(),
            b.driver.clone(),
            adapter,
            webnn,
            wasm,
        ]);
    }
    let mut out = format!("{table}\n");
    for d in drivers {
        out.push_str(&format!("driver: {} {} ({})\n", d.name, d.version, d.path));
    }
    out
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn yes(v: &serde_json::Value) -> &'static str {
    if v.as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
}

/// Renders one row per worker: lifetime, utilization, memory, and the memory each model added.
pub fn render_workers(summary: &RunSummary) -> String {
    if summary.workers.is_empty() {
        return String::new();
    }
    let mut table = new_table();
    table.set_header([
        "worker",
        "alive s",
        "busy %",
        "PSS peak MiB",
        "PSS mean MiB",
        "models (MiB added at load)",
        "state",
    ]);
    for w in &summary.workers {
        let models: Vec<String> = w
            .models
            .iter()
            .map(|m| format!("{} +{:.0}", m.model, m.memory_added_mb))
            .collect();
        let state = match &w.fault {
            Some(f) => format!("{}: {f}", w.state),
            None => w.state.clone(),
        };
        table.add_row([
            w.id.clone(),
            format!("{:.1}", w.alive_s),
            format!("{:.0}", w.utilization * 100.0),
            format!("{:.0}", w.pss_peak_mb),
            format!("{:.0}", w.pss_mean_mb),
            models.join(", "),
            state,
        ]);
    }
    for i in 1..5 {
        if let Some(c) = table.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    format!("{table}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{FaultRecord, RecoveryEvent, Requests};

    fn summary() -> RunSummary {
        serde_json::from_str(
            r#"{"schema_version":1,"run_id":"r","command":"c","started_at":"","finished_at":"",
            "complete":true,"environment":{"harness_version":"","os":"","cpus":1,"browsers":[]},
            "requests":{"issued":0,"succeeded":0,"failed":0,"lost":0},"results":[],"faults":[],
            "recovery_events":[],"thresholds":[]}"#,
        )
        .unwrap()
    }

    fn faulty() -> RunSummary {
        let mut s = summary();
        s.requests = Requests {
            issued: 600,
            succeeded: 599,
            failed: 1,
            lost: 0,
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
            },
        ];
        s
    }

    #[test]
    fn no_faults_no_section() {
        let mut s = summary();
        s.requests.issued = 3;
        s.requests.succeeded = 3;
        assert_eq!(render_resilience(&s), "");
    }

    #[test]
    fn the_resilience_section() {
        let out = render_resilience(&faulty());
        assert!(
            out.starts_with(
                "faults and recovery: 600 issued, 599 succeeded, 1 failed, 0 lost, success rate 99.83%\n"
            ),
            "{out}"
        );
        for want in [
            "fault kind",
            "kill_browser",
            "external",
            "time to recover",
            "p95 ms",
            "migrate",
            "rebuild",
            "1140",
            TIME_TO_RECOVER_NOTE,
            "recovery failed: firefox#1: external (detected by timeout at 42.0 s) not recovered, \
             gave up at rebuild after 30000 ms: migrate: no other live worker; rebuild: the \
             recovery timeout (30s) passed\n",
        ] {
            assert!(out.contains(want), "{want} not in\n{out}");
        }
        // Faults by kind: the skipped hang counts as skipped, and external comes last.
        let hang = out.lines().find(|l| l.contains("hang")).unwrap();
        let cells: Vec<&str> = hang.split(['│', '┆']).map(str::trim).collect();
        assert_eq!(&cells[1..5], ["hang", "0", "1", "0"], "{hang}");
        assert!(out.find("kill_browser") < out.find("external"));
        // The level table ends with the overall row.
        let all = out.lines().find(|l| l.contains(" all ")).unwrap();
        let cells: Vec<&str> = all.split(['│', '┆']).map(str::trim).collect();
        assert_eq!(cells[2], "2", "{all}");
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
