//! `report.html`: a self-contained page (no scripts, no network; a Content-Security-Policy
//! enforces it) built from `templates/report.html`: the verdict, the result table, a latency
//! CDF per model (one line per browser x backend), faults and recovery ([`faults`], from
//! `templates/faults.html`) when the run had any, throughput over time with fault and recovery
//! markers, a shard timeline when the run had shards, a generation's text and per-token chart
//! by shard ([`generation`]), and the environment with each browser's adapter.

mod faults;
mod generation;
mod table;

use std::fmt::Write as _;

use crate::metrics::compare::RunData;
use crate::metrics::{BrowserEnv, FaultRecord, Phase, RunSummary, Sample};

use super::svg::{Chart, Marker, MarkerKind, Scale, Series, Timeline, TimelineBar};
use super::template::{escape, fill};
use super::view::{text, yes};
use super::{view, ReportError, Reporter};
use faults::faults_section;
use generation::generation_section;
use table::table;

const REPORT_HTML: &str = include_str!("templates/report.html");

/// The HTML report.
#[derive(Debug, Clone, Copy)]
pub struct HtmlReport;

impl Reporter for HtmlReport {
    fn file_name(&self) -> &'static str {
        "report.html"
    }

    fn render(&self, run: RunData<'_>) -> Result<Vec<u8>, ReportError> {
        Ok(render(run).into_bytes())
    }
}

fn render(run: RunData<'_>) -> String {
    let s = run.summary;
    let q = &s.requests;
    let passed = s.passed();
    fill(
        REPORT_HTML,
        &[
            ("run_id", &escape(&s.run_id)),
            ("verdict", if passed { "passed" } else { "failed" }),
            ("verdict_class", if passed { "passed" } else { "failed" }),
            ("command", &escape(&s.command)),
            ("started_at", &escape(&s.started_at)),
            ("finished_at", &escape(&s.finished_at)),
            (
                "complete_note",
                &match (&s.stopped_early, s.complete) {
                    (Some(why), _) => format!(
                        r#" <span class="bad">stopped early: {}</span>"#,
                        escape(why)
                    ),
                    (None, false) => r#" <span class="bad">incomplete</span>"#.to_string(),
                    (None, true) => String::new(),
                },
            ),
            ("issued", &q.issued.to_string()),
            ("succeeded", &q.succeeded.to_string()),
            ("failed", &q.failed.to_string()),
            ("lost", &q.lost.to_string()),
            ("fault_count", &s.faults.len().to_string()),
            ("result_rows", &result_rows(s)),
            ("notes", &notes(s)),
            ("thresholds", &thresholds(s)),
            ("cdf_charts", &cdf_charts(run.samples)),
            ("faults_section", &faults_section(s, run.samples)),
            ("throughput_chart", &throughput_chart(s, run.samples)),
            ("shard_section", &shard_section(s)),
            ("generation_section", &generation_section(s)),
            ("adaptive_section", &adaptive_section(s)),
            ("host_rows", &host_rows(s)),
            ("browser_rows", &browser_rows(&s.environment.browsers)),
        ],
    )
}

fn result_rows(s: &RunSummary) -> String {
    let mut out = String::new();
    for r in &s.results {
        let v = view::row_values(r);
        let bad = r.error.is_some() || !r.correctness.passed;
        let cells: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let class = if i + 1 == v.len() && bad {
                    r#" class="bad""#
                } else if view::RESULT_NUMERIC.contains(&i) {
                    r#" class="num""#
                } else {
                    ""
                };
                format!("<td{class}>{}</td>", escape(text))
            })
            .collect();
        let _ = writeln!(out, "      <tr>{}</tr>", cells.concat());
    }
    out
}

fn notes(s: &RunSummary) -> String {
    let lines: Vec<String> = view::info_notes(s)
        .into_iter()
        .chain(view::fallback_notes(s))
        .map(|n| escape(&n))
        .chain(
            view::problem_notes(s)
                .into_iter()
                .map(|n| format!(r#"<span class="bad">{}</span>"#, escape(&n))),
        )
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from(r#"<ul class="notes">"#);
    for l in lines {
        let _ = write!(out, "<li>{l}</li>");
    }
    out.push_str("</ul>");
    out
}

fn thresholds(s: &RunSummary) -> String {
    if s.thresholds.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h3>Thresholds</h3><table><thead><tr><th>threshold</th><th>limit</th><th>value</th><th>result</th></tr></thead><tbody>",
    );
    for t in &s.thresholds {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td{}>{}</td></tr>"#,
            escape(&t.name),
            t.limit,
            t.value,
            if t.passed { "" } else { r#" class="bad""# },
            if t.passed { "pass" } else { "FAIL" }
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// Per model: (browser/backend label, its measured `page_ms`).
type ByModel = Vec<(String, Vec<(String, Vec<f64>)>)>;

/// Measured warm `page_ms` per model, then per browser/backend, in first-seen order.
fn measured_by_model(samples: &[Sample]) -> ByModel {
    let mut out: ByModel = Vec::new();
    for s in samples
        .iter()
        .filter(|s| s.phase == Phase::Measure && s.ok && s.page_ms > 0.0)
    {
        let label = format!("{}/{}", s.browser, s.backend);
        let model = match out.iter_mut().find(|(m, _)| *m == s.model) {
            Some(m) => m,
            None => {
                out.push((s.model.clone(), Vec::new()));
                out.last_mut().expect("just pushed")
            }
        };
        match model.1.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(s.page_ms),
            None => model.1.push((label, vec![s.page_ms])),
        }
    }
    out
}

fn cdf_charts(samples: &[Sample]) -> String {
    let models = measured_by_model(samples);
    if models.is_empty() {
        return r#"<p class="empty">No measured runs.</p>"#.into();
    }
    let mut out = String::new();
    for (model, cells) in models {
        let x = Scale::fit(cells.iter().flat_map(|(_, v)| v.iter().copied()), false);
        let series = cells
            .into_iter()
            .map(|(label, mut v)| {
                v.sort_by(f64::total_cmp);
                let n = v.len() as f64;
                // A step function: up by 1/n at each sample.
                let mut points = Vec::with_capacity(v.len() * 2);
                for (i, &ms) in v.iter().enumerate() {
                    points.push((ms, i as f64 / n));
                    points.push((ms, (i + 1) as f64 / n));
                }
                Series {
                    label: format!("{label} (n={})", v.len()),
                    points,
                    wide: false,
                }
            })
            .collect();
        let chart = Chart {
            title: format!("{model}: warm latency CDF"),
            x_label: format!(
                "session.run ms{}",
                if matches!(x, Scale::Log { .. }) {
                    " (log scale)"
                } else {
                    ""
                }
            ),
            y_label: "share of runs".into(),
            x,
            y: Scale::Linear { min: 0.0, max: 1.0 },
            series,
            markers: Vec::new(),
        };
        let _ = write!(out, r#"<h3>{}</h3>{}"#, escape(&model), chart.render());
    }
    out
}

fn throughput_chart(s: &RunSummary, samples: &[Sample]) -> String {
    // A generation's samples are steps, not requests: its per-token chart draws them.
    let stepped = |x: &Sample| s.generations.iter().any(|g| x.model.starts_with(&g.model));
    let done: Vec<(&str, f64)> = samples
        .iter()
        .filter(|x| x.ok && !stepped(x))
        .map(|x| (x.browser.as_str(), (x.started_ms + x.service_ms) / 1000.0))
        .collect();
    if done.is_empty() {
        return if s.generations.is_empty() {
            r#"<p class="empty">No completed requests.</p>"#
        } else {
            r#"<p class="empty">Generations only: their steps are in the per-token charts below.</p>"#
        }
        .into();
    }
    let end = done.iter().map(|(_, t)| *t).fold(0.0, f64::max);
    let markers = markers(s);
    // The x axis reaches every marker, so a fault or recovery after the last request shows.
    let marker_end = markers.iter().map(|m| m.x).fold(0.0, f64::max);
    let buckets = end.max(marker_end).floor() as usize + 1;
    let mut browsers: Vec<&str> = Vec::new();
    for (b, _) in &done {
        if !browsers.contains(b) {
            browsers.push(b);
        }
    }
    let step = |counts: &[f64]| {
        let mut pts = Vec::with_capacity(counts.len() * 2);
        for (i, &c) in counts.iter().enumerate() {
            pts.push((i as f64, c));
            pts.push((i as f64 + 1.0, c));
        }
        pts
    };
    let count = |only: Option<&str>| {
        let mut c = vec![0.0; buckets];
        for (b, t) in &done {
            if only.is_none_or(|o| o == *b) {
                c[(t.floor() as usize).min(buckets - 1)] += 1.0;
            }
        }
        c
    };
    let total = count(None);
    let mut series = vec![Series {
        label: "all requests".into(),
        points: step(&total),
        wide: browsers.len() > 1,
    }];
    if browsers.len() > 1 {
        for b in &browsers {
            series.push(Series {
                label: (*b).to_string(),
                points: step(&count(Some(b))),
                wide: false,
            });
        }
    }
    let chart = Chart {
        title: "throughput over time".into(),
        x_label: "seconds since the run started".into(),
        y_label: "requests / s".into(),
        x: Scale::Linear {
            min: 0.0,
            max: buckets as f64,
        },
        y: Scale::fit(total.iter().copied(), true),
        series,
        markers,
    };
    chart.render()
}

/// Fault markers at the time each fault was carried out (skipped faults did nothing, so they
/// get none), and recovery markers where service came back (or the ladder gave up).
///
/// A recovery event's `at_ms` is when its failure was detected, so it ends at `at_ms +
/// recovery_ms`, and failures nobody injected (`external`) get their marker too. An older
/// `run.json` has no `at_ms` (0): then the n-th recovery of a kind is paired with the n-th
/// injected fault of that kind and ends at fault + detection + recovery.
fn markers(s: &RunSummary) -> Vec<Marker> {
    let injected: Vec<&FaultRecord> = s.faults.iter().filter(|f| f.injected).collect();
    let mut out: Vec<Marker> = injected
        .iter()
        .map(|f| Marker {
            x: f.at_ms as f64 / 1000.0,
            label: format!("{} {}", f.kind, f.target),
            kind: MarkerKind::Fault,
        })
        .collect();
    let mut used = vec![false; injected.len()];
    for r in &s.recovery_events {
        let end_ms = if r.at_ms > 0 {
            r.at_ms + r.recovery_ms
        } else {
            let Some(i) =
                (0..injected.len()).find(|&i| !used[i] && injected[i].kind == r.fault_kind)
            else {
                continue;
            };
            used[i] = true;
            injected[i].at_ms + r.detection_ms + r.recovery_ms
        };
        let outcome = if r.succeeded { "recovered" } else { "failed" };
        out.push(Marker {
            x: end_ms as f64 / 1000.0,
            label: if r.worker.is_empty() {
                format!("{} {outcome}", r.level)
            } else {
                format!("{} {} {outcome}", r.worker, r.level)
            },
            kind: MarkerKind::Recovery,
        });
    }
    out
}

/// The adaptive routing section, or nothing when the run was not adaptive.
fn adaptive_section(s: &RunSummary) -> String {
    let lines = view::adaptive_lines(s);
    if lines.is_empty() {
        return String::new();
    }
    let items: String = lines
        .iter()
        .map(|l| format!("<li>{}</li>", escape(l)))
        .collect();
    format!("<h2>Adaptive routing</h2>\n<ul class=\"notes\">{items}</ul>\n")
}

/// The sharding section, or nothing when the run had no shards: the shard and hop tables, the
/// lines under them, the plan's reasons and the timeline (one lane per worker, one bar per
/// shard execution, failed ones red).
fn shard_section(s: &RunSummary) -> String {
    let Some(sh) = &s.sharding else {
        return String::new();
    };
    let shards = table(
        &view::SHARD_COLUMNS,
        &|i| view::SHARD_NUMERIC.contains(&i),
        sh.shards
            .iter()
            .map(|r| view::shard_values(r).to_vec())
            .collect(),
    );
    let hops = table(
        &view::HOP_COLUMNS,
        &|i| matches!(i, 1..=4),
        sh.hops
            .iter()
            .map(|h| view::hop_values(h).to_vec())
            .collect(),
    );
    let lines: String = view::sharding_lines(sh)
        .iter()
        .map(|l| format!("<li>{}</li>", escape(l)))
        .collect();
    let reasons: String = sh
        .reasons
        .iter()
        .map(|l| format!("<li>{}</li>", escape(l)))
        .collect();
    let bars: Vec<TimelineBar> = sh
        .timeline
        .iter()
        .map(|b| TimelineBar {
            lane: b.worker.clone(),
            start_ms: b.start_ms,
            end_ms: b.end_ms,
            label: format!(
                "request {} shard {} on {}: {:.1} ms",
                b.request,
                b.shard,
                b.worker,
                b.end_ms - b.start_ms
            ),
            ok: b.ok,
        })
        .collect();
    let svg = if bars.is_empty() {
        String::new()
    } else {
        Timeline {
            title: "shard timeline".into(),
            bars,
        }
        .render()
    };
    format!(
        r#"<section id="shards"><h2>Shards</h2>{shards}{hops}<ul>{lines}</ul><h3>Plan</h3><ul>{reasons}</ul><h3>Shard timeline</h3><p>Each bar is one shard call on a worker (sent to answered, harness clock); red bars failed.</p>{svg}</section>"#
    )
}

fn host_rows(s: &RunSummary) -> String {
    let e = &s.environment;
    format!(
        "      <tr><th>webgpu-pool</th><td>{}</td></tr>\n      <tr><th>host</th><td>{}, {} CPUs</td></tr>",
        escape(&e.harness_version),
        escape(&e.os),
        e.cpus
    )
}

fn browser_rows(browsers: &[BrowserEnv]) -> String {
    let mut out = String::new();
    for b in browsers {
        let g = &b.webgpu;
        let gpu = if g["available"].as_bool() == Some(true) {
            let a = &g["adapter"];
            let name: Vec<String> = [text(&a["vendor"]), text(&a["architecture"])]
                .into_iter()
                .filter(|t| !t.is_empty() && t != "-")
                .collect();
            let mut parts = vec![if name.is_empty() {
                "adapter".to_string()
            } else {
                name.join(" ")
            }];
            if a["fallback"].as_bool() == Some(true) {
                parts.push("software fallback".into());
            }
            for k in ["device", "description"] {
                let t = text(&a[k]);
                if !t.is_empty() && t != "-" {
                    parts.push(t);
                }
            }
            if let Some(f) = g["features"].as_array() {
                parts.push(format!("{} features", f.len()));
                if f.iter().any(|x| x == "shader-f16") {
                    parts.push("shader-f16".into());
                }
            }
            parts.join(", ")
        } else {
            format!("unavailable: {}", text(&g["reason"]))
        };
        let webnn = if b.webnn["available"].as_bool() == Some(true) {
            "available".to_string()
        } else {
            format!("unavailable: {}", text(&b.webnn["reason"]))
        };
        let wasm = format!(
            "simd {}, threads {}, {} thread(s)",
            yes(&b.wasm["simd"]),
            yes(&b.wasm["threads"]),
            b.wasm["num_threads"].as_u64().unwrap_or(1)
        );
        let _ = writeln!(
            out,
            r#"      <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{:.0}</td></tr>"#,
            escape(&b.kind),
            escape(&b.version),
            escape(&match &b.node {
                Some(node) => format!("{} on Grid node {node}", b.driver),
                None => b.driver.clone(),
            }),
            escape(&b.ort_version),
            escape(&gpu),
            escape(&webnn),
            escape(&wasm),
            if b.cross_origin_isolated { "yes" } else { "no" },
            b.launch_ms
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RecoveryEvent;
    use crate::report::view::tests::summary;

    #[test]
    fn markers_pair_recoveries_with_their_faults() {
        // An older run.json: recovery events without `at_ms` pair with faults by kind and order.
        let mut s = summary();
        s.faults.push(FaultRecord {
            kind: "kill_browser".into(),
            at_ms: 2000,
            target: "chromium#1".into(),
            injected: true,
            ..Default::default()
        });
        s.recovery_events.push(RecoveryEvent {
            fault_kind: "kill_browser".into(),
            level: "migrate".into(),
            detection_ms: 60,
            recovery_ms: 940,
            succeeded: true,
            ..Default::default()
        });
        let m = markers(&s);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].x, m[1].x), (2.0, 3.0));
        let html = render(RunData {
            summary: &s,
            samples: &[],
        });
        assert!(!html.contains("{{"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("id=\"shards\""));
    }

    #[test]
    fn markers_use_detection_time_and_skip_skipped_faults() {
        let mut s = summary();
        s.faults = vec![
            FaultRecord {
                kind: "hang".into(),
                at_ms: 1000,
                target: "firefox#1".into(),
                injected: true,
                detail: "busy loop for 5 s".into(),
            },
            FaultRecord {
                kind: "kill_browser".into(),
                at_ms: 4000,
                target: String::new(),
                injected: false,
                detail: "no live worker to target".into(),
            },
        ];
        s.recovery_events = vec![
            // Detected late, out of fault order: placed by its own time, not the hang's.
            RecoveryEvent {
                fault_kind: "external".into(),
                level: "rebuild".into(),
                detection_ms: 5,
                recovery_ms: 1500,
                succeeded: true,
                at_ms: 8000,
                worker: "chromium#2".into(),
                ..Default::default()
            },
            RecoveryEvent {
                fault_kind: "hang".into(),
                level: "reset".into(),
                detection_ms: 3000,
                recovery_ms: 500,
                succeeded: false,
                at_ms: 4000,
                worker: "firefox#1".into(),
                ..Default::default()
            },
        ];
        let m = markers(&s);
        let got: Vec<(f64, &str)> = m.iter().map(|m| (m.x, m.label.as_str())).collect();
        assert_eq!(
            got,
            [
                (1.0, "hang firefox#1"),
                (9.5, "chromium#2 rebuild recovered"),
                (4.5, "firefox#1 reset failed"),
            ]
        );
    }
}
