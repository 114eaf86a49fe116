//! The "Faults and recovery" section of `report.html`, filled from `templates/faults.html`:
//! the request accounting with the success rate and retries, faults by kind, recovery by
//! ladder level, failed recoveries, and every fault and recovery event in time order.
//!
//! Inputs: a [`RunSummary`] and its [`Sample`]s (for the retried count). Output: an HTML
//! fragment that the page's `render` puts into `templates/report.html`, or nothing when the run
//! had no faults and no recovery events. The cell text comes from [`view`], so the section says
//! what the terminal and `summary.md` say; only the markup is decided here. Imports
//! `crate::metrics` and the report helpers only; the charts that mark the faults over time stay
//! in [`super`] (`report.html` itself).

use std::fmt::Write as _;

use crate::metrics::{Resilience, RunSummary, Sample};

use crate::report::template::{escape, fill};
use crate::report::view;

const FAULTS_HTML: &str = include_str!("../templates/faults.html");

/// A table of `rows` under `header`; the columns `numeric` picks are right-aligned, and the
/// cell a row names (if any) is marked bad.
fn html_table<const N: usize>(
    header: [&str; N],
    numeric: fn(usize) -> bool,
    rows: impl IntoIterator<Item = ([String; N], Option<usize>)>,
) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for (cells, bad) in rows {
        out.push_str("<tr>");
        for (i, c) in cells.iter().enumerate() {
            let class = match (numeric(i), bad == Some(i)) {
                (true, true) => r#" class="num bad""#,
                (true, false) => r#" class="num""#,
                (false, true) => r#" class="bad""#,
                (false, false) => "",
            };
            let _ = write!(out, "<td{class}>{}</td>", escape(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// The "Faults and recovery" section, or nothing when the run had no faults and no recovery
/// events. The same numbers as the terminal and `summary.md`, plus the retried requests from
/// the samples.
pub(super) fn faults_section(s: &RunSummary, samples: &[Sample]) -> String {
    // An empty samples.csv (a run that stopped before issuing) says nothing about retries.
    let r = Resilience::from_run(s, (!samples.is_empty()).then_some(samples));
    if r.is_empty() {
        return String::new();
    }
    let kinds = html_table(
        view::FAULT_KIND_COLUMNS,
        |i| i > 0,
        r.fault_kinds.iter().map(|k| {
            let bad = (k.recovery.failed() > 0).then_some(4);
            (view::fault_kind_values(k), bad)
        }),
    );
    let levels = view::recovery_level_rows(&r);
    let level_table = if levels.is_empty() {
        r#"<p class="empty">No recovery events.</p>"#.to_string()
    } else {
        html_table(
            view::RECOVERY_LEVEL_COLUMNS,
            |i| i > 0,
            levels.into_iter().map(|l| {
                let bad = (l.failed() > 0).then_some(2);
                (view::recovery_level_values(l), bad)
            }),
        )
    };
    let failed = view::failed_recovery_notes(s);
    let failed_list = if failed.is_empty() {
        String::new()
    } else {
        let mut out = String::from(r#"<h3>Failed recoveries</h3><ul class="notes">"#);
        for n in failed {
            let _ = write!(out, r#"<li class="bad">{}</li>"#, escape(&n));
        }
        out.push_str("</ul>");
        out
    };
    let fault_table = if s.faults.is_empty() {
        r#"<p class="empty">No faults injected.</p>"#.to_string()
    } else {
        html_table(
            view::FAULT_COLUMNS,
            |i| i == 0,
            view::fault_rows(s).into_iter().map(|f| {
                let bad = (f[3] != "yes").then_some(3);
                (f, bad)
            }),
        )
    };
    let event_table = if s.recovery_events.is_empty() {
        String::new()
    } else {
        html_table(
            view::RECOVERY_EVENT_COLUMNS,
            |i| matches!(i, 0 | 5 | 6),
            view::recovery_event_rows(s).into_iter().map(|e| {
                let bad = (e[7] != "ok").then_some(7);
                (e, bad)
            }),
        )
    };
    fill(
        FAULTS_HTML,
        &[
            ("requests", &escape(&view::resilience_requests(&r))),
            ("kind_table", &kinds),
            (
                "ttr_note",
                &escape(&upper_first(view::TIME_TO_RECOVER_NOTE)),
            ),
            ("level_table", &level_table),
            ("failed_recoveries", &failed_list),
            ("fault_table", &fault_table),
            ("event_table", &event_table),
        ],
    )
}

/// `text` with its first letter in upper case (the shared notes start lower case, for the
/// terminal).
fn upper_first(text: &str) -> String {
    let mut c = text.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::compare::RunData;
    use crate::metrics::{FaultRecord, RecoveryEvent};
    use crate::report::html::render;
    use crate::report::view::tests::summary;

    #[test]
    fn the_faults_section_only_when_there_were_faults() {
        let mut s = summary();
        let html = render(RunData {
            summary: &s,
            samples: &[],
        });
        assert!(!html.contains(r#"id="faults""#));
        s.requests.issued = 10;
        s.requests.succeeded = 10;
        s.faults.push(FaultRecord {
            kind: "crash_tab".into(),
            at_ms: 1500,
            target: "chromium#1".into(),
            injected: true,
            detail: "Page.crash <tab 1>".into(),
        });
        s.recovery_events.push(RecoveryEvent {
            fault_kind: "crash_tab".into(),
            level: "reset".into(),
            detection_ms: 20,
            recovery_ms: 700,
            succeeded: true,
            at_ms: 1520,
            worker: "chromium#1".into(),
            detected_by: "tab_crash".into(),
            steps: vec!["reset: page reopened".into()],
            ..Default::default()
        });
        let html = render(RunData {
            summary: &s,
            samples: &[],
        });
        assert!(!html.contains("{{"));
        let section = &html[html.find(r#"<section id="faults">"#).unwrap()..];
        let section = &section[..section.find("</section>").unwrap()];
        assert!(
            section.contains("10 issued, 10 succeeded, 0 failed, 0 lost, success rate 100%"),
            "{section}"
        );
        assert!(
            section.contains(r#"<td>crash_tab</td><td class="num">1</td><td class="num">0</td><td class="num">1</td><td class="num">1</td><td class="num">20</td><td class="num">20</td><td class="num">720</td><td class="num">720</td>"#),
            "{section}"
        );
        assert!(section.contains("<td>reset</td>") && section.contains("<td>all</td>"));
        assert!(section.contains("Page.crash &lt;tab 1&gt;"), "{section}");
        assert!(!section.contains("Failed recoveries"));
        // Faults come before the throughput chart that marks them.
        assert!(html.find(r#"id="faults""#) < html.find(r#"id="throughput""#));
    }
}
