//! `history` and `recommend` output: the run series of each configuration with the change
//! against the run before, the trends (regressions, improvements, anomalies), the trend chart
//! page, and the recommendation tables. The numbers come from the pure `history` module.

use std::fmt::Write as _;

use comfy_table::{Cell, Color};

use crate::history::{CellRun, Recommendations, TrendReport, TrendStep};
use crate::metrics::compare::{Metric, Verdict};

use super::svg::{Chart, Marker, MarkerKind, Scale, Series};
use super::template::escape;
use super::terminal::new_table;

/// Which columns `history` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// p50 and p95 ms.
    pub latency: bool,
    /// Requests per second.
    pub throughput: bool,
    /// Busy fraction of the workers that served the cell.
    pub browser_utilization: bool,
}

/// The step that ended in `cell`'s run, if any.
fn step_into<'a>(trends: &'a TrendReport, cell: &CellRun) -> Option<&'a TrendStep> {
    trends
        .steps
        .iter()
        .find(|s| s.key == cell.key && s.to_run == cell.run_id)
}

/// The p50 verdict of a step, as a short text.
fn change_text(step: &TrendStep) -> (String, Option<Color>) {
    let Some(d) = step.deltas.iter().find(|d| d.metric == Metric::LatencyP50) else {
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

/// One table row per recorded cell run, grouped by configuration, then the trend lines.
pub fn render(cells: &[CellRun], trends: &TrendReport, cols: Columns) -> String {
    let mut header = vec!["model", "browser/backend", "adapter", "run", "version", "n"];
    if cols.latency {
        header.extend(["p50 ms", "p95 ms"]);
    }
    if cols.throughput {
        header.push("req/s");
    }
    if cols.browser_utilization {
        header.push("busy %");
    }
    header.push("p50 vs the run before");
    let mut table = new_table();
    table.set_header(header);
    let mut sorted: Vec<&CellRun> = cells.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key).then(a.started_ms.cmp(&b.started_ms)));
    for c in sorted {
        let mut row = vec![
            Cell::new(&c.key.model),
            Cell::new(format!("{}/{}", c.key.browser, c.key.backend)),
            Cell::new(format!("{} x{}", c.key.adapter, c.key.threads)),
            Cell::new(&c.run_id),
            Cell::new(&c.browser_version),
            Cell::new(c.runs),
        ];
        if cols.latency {
            row.push(Cell::new(format!("{:.1}", c.p50_ms)));
            row.push(Cell::new(format!("{:.1}", c.p95_ms)));
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
        row.push(match step_into(trends, c).map(change_text) {
            Some((t, Some(colour))) => Cell::new(t).fg(colour),
            Some((t, None)) => Cell::new(t),
            None => Cell::new("first run"),
        });
        table.add_row(row);
    }
    let mut out = format!("{table}\n");
    out.push_str(&trend_lines(trends));
    out
}

/// `trends: ...` and one line per regression, improvement and anomaly.
pub fn trend_lines(trends: &TrendReport) -> String {
    let regressions: Vec<&TrendStep> = trends.regressions().collect();
    let improvements: Vec<&TrendStep> = trends.improvements().collect();
    let mut out = format!(
        "trends: {} regression(s), {} improvement(s), {} anomal{} over {} comparison(s) of consecutive runs\n",
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
                let version = if s.versions.0 == s.versions.1 {
                    String::new()
                } else {
                    format!(", browser {} -> {}", s.versions.0, s.versions.1)
                };
                let _ = writeln!(
                    out,
                    "  {word}: {} in {} (against {}{version})",
                    d.describe(),
                    s.to_run,
                    s.from_run
                );
            }
        }
    }
    for a in &trends.anomalies {
        let _ = writeln!(
            out,
            "  anomaly: {} p50 {:.1} ms in {}, usually {:.1} ms (robust z {:.1})",
            a.key, a.p50_ms, a.run_id, a.usual_ms, a.z
        );
    }
    out
}

/// A self-contained HTML page: per model, p50 over time per browser/backend, regressions and
/// improvements marked.
pub fn html(title: &str, cells: &[CellRun], trends: &TrendReport) -> String {
    let mut models: Vec<&str> = cells.iter().map(|c| c.key.model.as_str()).collect();
    models.sort_unstable();
    models.dedup();
    let t0 = cells.iter().map(|c| c.started_ms).min().unwrap_or(0);
    let hours = |ms: i64| (ms - t0) as f64 / 3.6e6;
    let mut body = String::new();
    for model in models {
        let mine: Vec<&CellRun> = cells.iter().filter(|c| c.key.model == model).collect();
        let mut keys: Vec<_> = mine.iter().map(|c| &c.key).collect();
        keys.sort();
        keys.dedup();
        let series: Vec<Series> = keys
            .iter()
            .map(|k| Series {
                label: format!("{}/{} ({})", k.browser, k.backend, k.adapter),
                points: mine
                    .iter()
                    .filter(|c| &c.key == *k)
                    .map(|c| (hours(c.started_ms), c.p50_ms))
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
                let d = s.deltas.iter().find(|d| d.metric == Metric::LatencyP50)?;
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
            title: format!("{model}: warm latency p50 per run"),
            x_label: "hours since the first run shown".into(),
            y_label: "p50 ms".into(),
            x: Scale::Linear {
                min: lo.min(0.0),
                max: if hi > lo { hi } else { lo + 1.0 },
            },
            y: Scale::fit(mine.iter().map(|c| c.p50_ms), true),
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

/// The per-model and per-type recommendations.
pub fn render_recommendations(r: &Recommendations, min_samples: usize) -> String {
    let mut table = new_table();
    table.set_header([
        "model",
        "type",
        "best browser/backend",
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
                Cell::new(format!("none: no pair has {min_samples} samples")),
            ]);
            continue;
        };
        table.add_row(vec![
            Cell::new(&m.model),
            Cell::new(&m.task),
            Cell::new(format!("{}/{}", b.browser, b.backend)).fg(Color::Green),
            Cell::new(format!("{:.1}", b.p50_ms)),
            Cell::new(format!("{:.1}", b.p95_ms)),
            Cell::new(format!("{} ({})", b.samples, b.runs)),
            Cell::new(m.runner_up.as_ref().map_or("-".into(), |u| {
                format!("{}/{} {:.1} ms", u.browser, u.backend, u.p50_ms)
            })),
            Cell::new(m.speedup.map_or("-".into(), |x| format!("{x:.2}x"))),
            Cell::new(format!(
                "{} ({})",
                m.confidence.as_str(),
                crate::metrics::compare::format_p(m.p_value)
            )),
        ]);
    }
    let mut out = format!("{table}\n");
    for m in &r.models {
        let others: Vec<String> = m
            .candidates
            .iter()
            .skip(1)
            .map(|c| {
                format!(
                    "{}/{} {:.1} ms (n={})",
                    c.browser, c.backend, c.p50_ms, c.samples
                )
            })
            .chain(m.too_few.iter().map(|c| {
                format!(
                    "{}/{} {:.1} ms (n={}, too few)",
                    c.browser, c.backend, c.p50_ms, c.samples
                )
            }))
            .collect();
        if !others.is_empty() {
            let _ = writeln!(out, "  {}: also measured {}", m.model, others.join(", "));
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
            "type {}: {}/{} ({:.2}x the best of each model; {})",
            t.task,
            t.browser,
            t.backend,
            t.relative,
            per.join(", ")
        );
    }
    for t in &r.types_without_answer {
        let _ = writeln!(
            out,
            "type {t}: no browser/backend was measured with {min_samples} samples for every {t} model"
        );
    }
    out
}
