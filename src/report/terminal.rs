//! The terminal tables (comfy-table): the run summary with footnotes for fallbacks and errors,
//! faults and recovery, `models list`, `browsers` and workers, in the house style
//! ([`new_table`]) that `compare` shares.
//!
//! Inputs: a [`RunSummary`] (or the model list and browser probe). Outputs: the text to print,
//! ending in a newline; the caller prints it. Cell text and notes come from [`super::view`], so
//! the terminal says what `summary.md` and `report.html` say; only the layout and the colours
//! are decided here. Imports `crate::metrics` and `comfy_table` only, never the engine.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Color, Table};

use crate::metrics::{BrowserEnv, ModelInfo, RecoveryStats, Resilience, RunSummary, ToolInfo};

use super::view::{
    failed_recovery_notes, fallback_notes, fault_kind_values, hop_values, problem_notes,
    recovery_level_rows, recovery_level_values, resilience_requests, row_values, shard_values,
    sharding_lines, text, yes, FAULT_KIND_COLUMNS, HOP_COLUMNS, RECOVERY_LEVEL_COLUMNS,
    RESULT_COLUMNS, RESULT_NUMERIC, SHARD_COLUMNS, SHARD_NUMERIC, TIME_TO_RECOVER_NOTE,
};

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

/// Renders the per model x browser x backend table and its notes (a sharded run: its shard
/// and hop tables instead).
pub fn render(summary: &RunSummary) -> String {
    let mut out = match &summary.sharding {
        Some(sh) => render_sharding(sh),
        None => render_results(summary),
    };
    out.push_str(&render_notes(summary));
    out
}

/// The shard table, the hop table and the lines under them.
fn render_sharding(sh: &crate::metrics::ShardingReport) -> String {
    let mut shards = new_table();
    shards.set_header(SHARD_COLUMNS);
    for r in &sh.shards {
        shards.add_row(shard_values(r));
    }
    for i in SHARD_NUMERIC {
        if let Some(c) = shards.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut hops = new_table();
    hops.set_header(HOP_COLUMNS);
    for h in &sh.hops {
        hops.add_row(hop_values(h));
    }
    let mut out = format!(
        "{shards}
{hops}
"
    );
    for l in sharding_lines(sh) {
        out.push_str(&format!(
            "{l}
"
        ));
    }
    out
}

fn render_results(summary: &RunSummary) -> String {
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
    for i in RESULT_NUMERIC {
        if let Some(c) = table.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    format!("{table}\n")
}

/// The request counts and the notes under the table.
fn render_notes(summary: &RunSummary) -> String {
    let q = &summary.requests;
    let mut out = String::new();
    out.push_str(&format!(
        "requests: {} issued, {} succeeded, {} failed, {} lost{}\n",
        q.issued,
        q.succeeded,
        q.failed,
        q.lost,
        if q.lost_with_harness > 0 {
            format!(
                " ({} of them in flight when the earlier part's harness died)",
                q.lost_with_harness
            )
        } else {
            String::new()
        }
    ));
    if let Some(causes) = super::view::failure_causes(q) {
        out.push_str(&format!("failed by cause: {causes}\n"));
    }
    if summary.results.iter().any(|r| r.weights == "seeded") {
        out.push_str(
            "seeded: random weights at the exact architecture (same compute as the real model)\n",
        );
    }
    for n in super::view::info_notes(summary) {
        out.push_str(&format!("{n}\n"));
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

/// `time to recover p50 ms` as `time to recover` over `p50 ms`, so the percentile tables fit
/// a 120-column terminal.
fn two_lines(header: &str) -> String {
    header.replacen(" p", "\np", 1)
}

/// Renders what adaptive routing measured and moved; empty when the run was not adaptive.
pub fn render_adaptive(summary: &RunSummary) -> String {
    let lines = super::view::adaptive_lines(summary);
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from("adaptive routing:\n");
    for l in lines {
        out.push_str(&format!("  {l}\n"));
    }
    out
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
        let driver = match &b.node {
            Some(node) => format!("{} on Grid node {node}", b.driver),
            None => b.driver.clone(),
        };
        table.add_row([
            b.kind.clone(),
            b.version.clone(),
            driver,
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
        // A driver's error can carry a stack trace over many lines: the first line here, the
        // whole of it in run.json.
        let state = match &w.fault {
            Some(f) if f.contains('\n') => {
                let first = f.lines().next().unwrap_or_default().trim_end();
                format!("{}: {first} ... (the rest in run.json)", w.state)
            }
            Some(f) => format!("{}: {f}", w.state),
            None => w.state.clone(),
        };
        // A remote worker's processes are on its node, out of reach of a PSS reading here.
        let (id, peak, mean) = match &w.node {
            Some(node) => (
                format!("{} @ {node}", w.id),
                "remote".into(),
                "remote".into(),
            ),
            None => (
                w.id.clone(),
                format!("{:.0}", w.pss_peak_mb),
                format!("{:.0}", w.pss_mean_mb),
            ),
        };
        table.add_row([
            id,
            format!("{:.1}", w.alive_s),
            format!("{:.0}", w.utilization * 100.0),
            peak,
            mean,
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
    use crate::report::view::tests::{faulty, summary};

    #[test]
    fn a_workers_many_line_fault_shows_its_first_line() {
        let mut s = summary();
        s.workers.push(crate::metrics::WorkerSummary {
            id: "firefox#5".into(),
            state: "closed".into(),
            fault: Some("the tab crashed during 'load': Window not found:\n    Status: 404".into()),
            ..Default::default()
        });
        let out = render_workers(&s);
        assert!(
            out.contains("closed: the tab crashed during 'load': Window not found: ... (the rest"),
            "{out}"
        );
        assert!(!out.contains("Status: 404"), "{out}");
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
}
