//! `history` and `recommend` output: the run series of each configuration with the change
//! against the run before, the trends (regressions, improvements, anomalies), the trend chart
//! page, and the recommendation tables. The numbers come from the pure `history` module.

use std::fmt::Write as _;

use comfy_table::{Cell, Color};

use crate::history::{p50_of, CellRun, Recommendations, TrendReport, TrendStep};
use crate::metrics::compare::{Timing, Verdict};

use super::svg::{Chart, Marker, MarkerKind, Scale, Series};
use super::template::escape;
use super::terminal::new_table;

/// Which columns `history` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// p50 and p95 ms of the timing.
    pub latency: bool,
    /// Requests per second.
    pub throughput: bool,
    /// Busy fraction of the workers that served the cell.
    pub browser_utilization: bool,
    /// Which time the p50/p95 columns and the change show.
    pub timing: Timing,
}

/// The step that ended in `cell`'s run, if any.
fn step_into<'a>(trends: &'a TrendReport, cell: &CellRun) -> Option<&'a TrendStep> {
    trends
        .steps
        .iter()
        .find(|s| s.key == cell.key && s.to_run == cell.run_id)
}

/// The p50 verdict of a step, as a short text.
fn change_text(step: &TrendStep, timing: Timing) -> (String, Option<Color>) {
    let Some(d) = step.deltas.iter().find(|d| d.metric == timing.p50()) else {
        return (String::new(), None);
    };
    let p = crate::metrics::compare::format_p(d.p_value);
    let head = format!("{:+.1}% (p_{}={p})", d.change * 100.0, d.direction.as_str());
    match d.verdict {
        Verdict::Regression => (format!("{head} REGRESSION"), Some(Color::Red)),
        Verdict::Improvement => (format!("{head} improvement"), Some(Color::Green)),
        Verdict::Unchanged => (format!("{head} within noise"), None),
        Verdict::Insufficient => (format!("{head} too few samples"), None),
    }
}

/// The p50 and p95 of `timing` a recorded cell has, `-` where it has none.
fn percentiles(c: &CellRun, timing: Timing) -> (String, String) {
    let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    match timing {
        Timing::PageRun => (fmt(Some(c.p50_ms)), fmt(Some(c.p95_ms))),
        Timing::EndToEnd => (fmt(c.e2e_p50_ms), fmt(c.e2e_p95_ms)),
    }
}

/// One table row per recorded cell run, grouped by configuration (the whole key: model,
/// browser/backend, adapter x threads, build, load), then the trend lines.
pub fn render(cells: &[CellRun], trends: &TrendReport, cols: Columns) -> String {
    let mut header: Vec<String> = [
        "model",
        "browser/backend",
        "adapter",
        "build",
        "load",
        "run",
        "n",
    ]
    .map(String::from)
    .to_vec();
    let short = match cols.timing {
        Timing::PageRun => "page run",
        Timing::EndToEnd => "end-to-end",
    };
    if cols.latency {
        header.push(format!("{short} p50 ms"));
        header.push(format!("{short} p95 ms"));
    }
    if cols.throughput {
        header.push("req/s".into());
    }
    if cols.browser_utilization {
        header.push("busy %".into());
    }
    header.push(format!("{short} p50 vs the run before"));
    let mut table = new_table();
    table.set_header(header);
    let mut sorted: Vec<&CellRun> = cells.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key).then(a.started_ms.cmp(&b.started_ms)));
    let mut seen: Vec<&crate::history::CellKey> = Vec::new();
    for c in sorted {
        let mut row = vec![
            Cell::new(&c.key.model),
            Cell::new(format!("{}/{}", c.key.browser, c.key.backend)),
            Cell::new(format!("{} x{}", c.key.adapter, c.key.threads)),
            Cell::new(&c.key.build),
            Cell::new(c.key.load.to_string()),
            Cell::new(&c.run_id),
            Cell::new(c.runs),
        ];
        if cols.latency {
            let (p50, p95) = percentiles(c, cols.timing);
            row.push(Cell::new(p50));
            row.push(Cell::new(p95));
        }
        if cols.throughput {
            row.push(Cell::new(format!("{:.2}", c.throughput_per_s)));
        }
        if cols.browser_utilization {
            row.push(Cell::new(
                c.utilization
                    .map_or("-".into(), |u| format!("{:.0}", u * 100.0)),
            ));
        }
        let first = !seen.contains(&&c.key);
        seen.push(&c.key);
        row.push(
            match step_into(trends, c).map(|s| change_text(s, cols.timing)) {
                Some((t, Some(colour))) => Cell::new(t).fg(colour),
                Some((t, None)) => Cell::new(t),
                None if !c.key.load.is_known() => Cell::new("not compared: load unknown"),
                None if first => Cell::new("first run"),
                None => Cell::new("-"),
            },
        );
        table.add_row(row);
    }
    let mut out = format!("{table}\n");
    if cells.iter().any(|c| !c.key.load.is_known()) {
        out.push_str(
            "load unknown: recorded before load contexts were (history schema 1); such a run \
             is compared with no other\n",
        );
    }
    out.push_str(&trend_lines(trends));
    out
}

/// `trends: ...` and one line per regression, improvement and anomaly.
pub fn trend_lines(trends: &TrendReport) -> String {
    let regressions: Vec<&TrendStep> = trends.regressions().collect();
    let improvements: Vec<&TrendStep> = trends.improvements().collect();
    let mut out = format!(
        "trends ({}): {} regression(s), {} improvement(s), {} anomal{} over {} comparison(s) of consecutive runs measured alike\n",
        trends.timing.as_str(),
        regressions.len(),
        improvements.len(),
        trends.anomalies.len(),
        if trends.anomalies.len() == 1 { "y" } else { "ies" },
        trends.steps.len()
    );
    for (word, steps, verdict) in [
        ("regression", &regressions, Verdict::Regression),
        ("improvement", &improvements, Verdict::Improvement),
    ] {
        for s in steps {
            for d in s.deltas.iter().filter(|d| d.verdict == verdict) {
                let _ = writeln!(
                    out,
                    "  {word}: {} in {} (against {}; {})",
                    d.describe(),
                    s.to_run,
                    s.from_run,
                    s.key.conditions()
                );
            }
        }
    }
    for a in &trends.anomalies {
        let _ = writeln!(
            out,
            "  anomaly: {} ({}) {} p50 {:.1} ms in {}, usually {:.1} ms (robust z {:.1})",
            a.key,
            a.key.conditions(),
            trends.timing.as_str(),
            a.p50_ms,
            a.run_id,
            a.usual_ms,
            a.z
        );
    }
    out
}

/// A self-contained HTML page: per model, the timing's p50 over time per configuration,
/// regressions and improvements marked.
pub fn html(title: &str, cells: &[CellRun], trends: &TrendReport) -> String {
    let timing = trends.timing;
    let mut models: Vec<&str> = cells.iter().map(|c| c.key.model.as_str()).collect();
    models.sort_unstable();
    models.dedup();
    let t0 = cells.iter().map(|c| c.started_ms).min().unwrap_or(0);
    let hours = |ms: i64| (ms - t0) as f64 / 3.6e6;
    let mut body = String::new();
    for model in models {
        let mine: Vec<&CellRun> = cells
            .iter()
            .filter(|c| c.key.model == model && p50_of(c, timing).is_some())
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut keys: Vec<_> = mine.iter().map(|c| &c.key).collect();
        keys.sort();
        keys.dedup();
        let series: Vec<Series> = keys
            .iter()
            .map(|k| Series {
                label: format!("{}/{} ({})", k.browser, k.backend, k.conditions()),
                points: mine
                    .iter()
                    .filter(|c| &c.key == *k)
                    .filter_map(|c| Some((hours(c.started_ms), p50_of(c, timing)?)))
                    .collect(),
                wide: false,
            })
            .collect();
        let markers: Vec<Marker> = trends
            .steps
            .iter()
            .filter(|s| s.key.model == model && (s.regressed() || s.improved()))
            .filter_map(|s| {
                let at = mine
                    .iter()
                    .find(|c| c.run_id == s.to_run && c.key == s.key)?;
                let d = s.deltas.iter().find(|d| d.metric == timing.p50())?;
                Some(Marker {
                    x: hours(at.started_ms),
                    label: format!("{} {:+.0}%", s.key.browser, d.change * 100.0),
                    kind: if s.regressed() {
                        MarkerKind::Fault
                    } else {
                        MarkerKind::Recovery
                    },
                })
            })
            .collect();
        let xs = mine.iter().map(|c| hours(c.started_ms));
        let (lo, hi) = xs.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
        let chart = Chart {
            title: format!("{model}: warm {} p50 per run", timing.as_str()),
            x_label: "hours since the first run shown".into(),
            y_label: "p50 ms".into(),
            x: Scale::Linear {
                min: lo.min(0.0),
                max: if hi > lo { hi } else { lo + 1.0 },
            },
            y: Scale::fit(mine.iter().filter_map(|c| p50_of(c, timing)), true),
            series,
            markers,
        };
        let _ = write!(body, "<h2>{}</h2>\n{}\n", escape(model), chart.render());
    }
    let lines = trend_lines(trends);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>{STYLE}</style></head>\n<body><h1>{t}</h1>\n<pre>{}</pre>\n{body}</body></html>\n",
        escape(&lines),
        t = escape(title)
    )
}

const STYLE: &str = "body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; padding: 0 16px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
svg.chart { display: block; margin: 8px 0 16px; max-width: 100%; height: auto; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #333; }
svg.chart .axis-label { font-size: 12px; fill: #555; }
svg.chart rect.plot { fill: #fcfcfc; stroke: #bbb; }
svg.chart .grid line { stroke: #e6e6e6; stroke-width: 1; }";

/// The per-model and per-type recommendations, one row per model and load context.
pub fn render_recommendations(r: &Recommendations, min_samples: usize) -> String {
    let mut table = new_table();
    table.set_header([
        "model",
        "type",
        "load",
        "best configuration",
        "p50 ms",
        "p95 ms",
        "samples (runs)",
        "runner-up",
        "speed-up",
        "confidence (p)",
    ]);
    for m in &r.models {
        let Some(b) = &m.best else {
            table.add_row(vec![
                Cell::new(&m.model),
                Cell::new(&m.task),
                Cell::new(m.load.to_string()),
                Cell::new(format!("none: no configuration has {min_samples} samples")),
            ]);
            continue;
        };
        table.add_row(vec![
            Cell::new(&m.model),
            Cell::new(&m.task),
            Cell::new(m.load.to_string()),
            Cell::new(b.config.to_string()).fg(Color::Green),
            Cell::new(format!("{:.1}", b.p50_ms)),
            Cell::new(format!("{:.1}", b.p95_ms)),
            Cell::new(format!("{} ({})", b.samples, b.runs)),
            Cell::new(
                m.runner_up
                    .as_ref()
                    .map_or("-".into(), |u| format!("{} {:.1} ms", u.config, u.p50_ms)),
            ),
            Cell::new(m.speedup.map_or("-".into(), |x| format!("{x:.2}x"))),
            Cell::new(format!(
                "{} ({})",
                m.confidence.as_str(),
                crate::metrics::compare::format_p(m.p_value)
            )),
        ]);
    }
    let mut out = format!("{table}\n");
    out.push_str(
        "per model and load context: each configuration (browser/backend, adapter x wasm \
         threads, build) pools its latest runs' samples and is ranked by page run time p50; \
         configurations measured under another load context are not compared with it\n",
    );
    for m in &r.models {
        let others: Vec<String> = m
            .candidates
            .iter()
            .skip(1)
            .map(|c| format!("{} {:.1} ms (n={})", c.config, c.p50_ms, c.samples))
            .chain(
                m.too_few
                    .iter()
                    .map(|c| format!("{} {:.1} ms (n={}, too few)", c.config, c.p50_ms, c.samples)),
            )
            .collect();
        if !others.is_empty() {
            let _ = writeln!(
                out,
                "  {} ({}): also measured {}",
                m.model,
                m.load,
                others.join(", ")
            );
        }
    }
    for t in &r.model_types {
        let per: Vec<String> = t
            .models
            .iter()
            .map(|(m, ms)| format!("{m} {ms:.1} ms"))
            .collect();
        let _ = writeln!(
            out,
            "type {} ({}): {} ({:.2}x the best of each model; {})",
            t.task,
            t.load,
            t.config,
            t.relative,
            per.join(", ")
        );
    }
    for t in &r.types_without_answer {
        let _ = writeln!(
            out,
            "type {} ({}): no configuration was measured with {min_samples} samples for every {} model",
            t.task, t.load, t.task
        );
    }
    if r.unknown_load > 0 {
        let _ = writeln!(
            out,
            "left out: {} recorded cell run(s) of unknown load context (recorded before load \
             contexts were)",
            r.unknown_load
        );
    }
    out
}
