//! The terminal tables (comfy-table): the run summary with footnotes for fallbacks and errors,
//! `models list`, `browsers` and workers. The row and note helpers are shared with
//! `summary.md` and `report.html`.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Color, Table};

use crate::metrics::{BrowserEnv, ModelInfo, ResultRow, RunSummary, ToolInfo};

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

/// The verdict of a whole run for the reports: every row and threshold passed
/// ([`RunSummary::passed`]) and the run finished its workload.
pub fn run_passed(summary: &RunSummary) -> bool {
    summary.passed() && summary.complete && summary.stopped_early.is_none()
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
