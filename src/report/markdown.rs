//! `summary.md`: a GitHub-flavoured Markdown summary sized for a CI step summary
//! (`cat summary.md >> "$GITHUB_STEP_SUMMARY"`): the verdict, the result table, request
//! accounting, fallbacks, every failed check or threshold, and faults and recovery when the run
//! had any.

use std::fmt::Write as _;

use crate::metrics::compare::RunData;
use crate::metrics::{Resilience, RunSummary};

use super::{view, ReportError, Reporter};

/// The Markdown summary.
#[derive(Debug, Clone, Copy)]
pub struct MarkdownReport;

impl Reporter for MarkdownReport {
    fn file_name(&self) -> &'static str {
        "summary.md"
    }

    fn render(&self, run: RunData<'_>) -> Result<Vec<u8>, ReportError> {
        Ok(render(run).into_bytes())
    }
}

/// Escapes a table cell: pipes and newlines would break the row.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A Markdown table: `header`, then `rows`; the columns `numeric` picks are right-aligned.
fn md_table<const N: usize>(
    out: &mut String,
    header: [&str; N],
    numeric: fn(usize) -> bool,
    rows: impl IntoIterator<Item = [String; N]>,
) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let rule: Vec<&str> = (0..N)
        .map(|i| if numeric(i) { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "| {} |", rule.join(" | "));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

/// The "Faults and recovery" section: accounting with the success rate, faults by kind,
/// recovery by ladder level, failed recoveries, then every fault and recovery event in time
/// order.
fn faults_and_recovery(out: &mut String, s: &RunSummary, r: &Resilience) {
    let _ = writeln!(
        out,
        "\n### Faults and recovery\n\n{}\n",
        view::resilience_requests(r)
    );
    out.push_str("**Faults by kind**\n\n");
    md_table(
        out,
        view::FAULT_KIND_COLUMNS,
        |i| i > 0,
        r.fault_kinds.iter().map(view::fault_kind_values),
    );
    let levels = view::recovery_level_rows(r);
    if levels.is_empty() {
        out.push_str("No recovery events.\n\n");
    } else {
        let _ = writeln!(
            out,
            "**Recovery by ladder level**\n\n_{}_\n",
            view::TIME_TO_RECOVER_NOTE
        );
        md_table(
            out,
            view::RECOVERY_LEVEL_COLUMNS,
            |i| i > 0,
            levels.into_iter().map(view::recovery_level_values),
        );
    }
    let failed = view::failed_recovery_notes(s);
    if !failed.is_empty() {
        out.push_str("**Failed recoveries**\n\n");
        for n in failed {
            let _ = writeln!(out, "- {}", cell(&n));
        }
        out.push('\n');
    }
    if !s.faults.is_empty() {
        out.push_str("**Faults**\n\n");
        md_table(out, view::FAULT_COLUMNS, |i| i == 0, view::fault_rows(s));
    }
    if !s.recovery_events.is_empty() {
        out.push_str("**Recovery events**\n\n");
        md_table(
            out,
            view::RECOVERY_EVENT_COLUMNS,
            |i| matches!(i, 0 | 5 | 6),
            view::recovery_event_rows(s),
        );
    }
}

fn render(run: RunData<'_>) -> String {
    let s = run.summary;
    let mut out = String::new();
    let verdict = if s.passed() { "passed" } else { "FAILED" };
    let _ = writeln!(out, "## webgpu-pool run `{}`: {verdict}\n", s.run_id);
    let _ = writeln!(out, "`{}`\n", cell(&s.command));
    match &s.sharding {
        Some(sh) => {
            md_table(
                &mut out,
                view::SHARD_COLUMNS,
                |i| view::SHARD_NUMERIC.contains(&i),
                sh.shards.iter().map(view::shard_values),
            );
            md_table(
                &mut out,
                view::HOP_COLUMNS,
                |i| matches!(i, 1..=4),
                sh.hops.iter().map(view::hop_values),
            );
            for l in view::sharding_lines(sh) {
                let _ = writeln!(out, "- {}", cell(&l));
            }
            out.push_str("\n**Plan**\n\n");
            for r in &sh.reasons {
                let _ = writeln!(out, "- {}", cell(r));
            }
        }
        None => {
            // The result table is followed by the request line directly.
            md_table(
                &mut out,
                view::RESULT_COLUMNS,
                |i| view::RESULT_NUMERIC.contains(&i),
                s.results.iter().map(view::row_values),
            );
            out.pop();
        }
    }
    let q = &s.requests;
    let _ = writeln!(
        out,
        "\n**Requests:** {} issued, {} succeeded, {} failed, {} lost\n",
        q.issued, q.succeeded, q.failed, q.lost
    );
    if let Some(causes) = view::failure_causes(q) {
        let _ = writeln!(out, "**Failed by cause:** {}\n", cell(&causes));
    }
    for n in view::info_notes(s) {
        let _ = writeln!(out, "{}\n", cell(&n));
    }
    let adaptive = view::adaptive_lines(s);
    if !adaptive.is_empty() {
        out.push_str("**Adaptive routing**\n\n");
        for l in adaptive {
            let _ = writeln!(out, "- {}", cell(&l));
        }
        out.push('\n');
    }
    let fallbacks = view::fallback_notes(s);
    if !fallbacks.is_empty() {
        out.push_str("**Fallbacks**\n\n");
        for f in fallbacks {
            let _ = writeln!(out, "- {}", cell(&f));
        }
        out.push('\n');
    }
    let problems = view::problem_notes(s);
    let failed_thresholds: Vec<_> = s.thresholds.iter().filter(|t| !t.passed).collect();
    if problems.is_empty() && failed_thresholds.is_empty() {
        out.push_str("No failed checks or thresholds.\n");
    } else {
        out.push_str("**Failed checks**\n\n");
        for p in problems {
            let _ = writeln!(out, "- {}", cell(&p));
        }
        for t in failed_thresholds {
            let _ = writeln!(
                out,
                "- threshold `{}`: {} (limit {})",
                cell(&t.name),
                t.value,
                t.limit
            );
        }
    }
    if !s.thresholds.is_empty() {
        out.push_str("\n| threshold | limit | value | result |\n| --- | ---: | ---: | --- |\n");
        for t in &s.thresholds {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&t.name),
                t.limit,
                t.value,
                if t.passed { "pass" } else { "FAIL" }
            );
        }
    }
    // An empty samples.csv (a run that stopped before issuing) says nothing about retries.
    let samples = (!run.samples.is_empty()).then_some(run.samples);
    let resilience = Resilience::from_run(s, samples);
    if !resilience.is_empty() {
        faults_and_recovery(&mut out, s, &resilience);
    }
    if let Some(why) = &s.stopped_early {
        let _ = writeln!(out, "\n**Stopped early:** {}", cell(why));
    }
    out
}
