//! `summary.md`: a GitHub-flavoured Markdown summary sized for a CI step summary
//! (`cat summary.md >> "$GITHUB_STEP_SUMMARY"`): the verdict, the result table, request
//! accounting, fallbacks, and every failed check or threshold.

use std::fmt::Write as _;

use crate::metrics::compare::RunData;

use super::{table, ReportError, Reporter};

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

fn render(run: RunData<'_>) -> String {
    let s = run.summary;
    let mut out = String::new();
    let verdict = if table::run_passed(s) {
        "passed"
    } else {
        "FAILED"
    };
    let _ = writeln!(out, "## webgpu-pool run `{}`: {verdict}\n", s.run_id);
    let _ = writeln!(out, "`{}`\n", cell(&s.command));
    out.push_str("| model | browser | backend | weights | load ms | first run ms | warm p50 ms | warm p95 ms | warm p99 ms | runs/s | correct |\n");
    out.push_str("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for r in &s.results {
        let v = table::row_values(r);
        let _ = writeln!(
            out,
            "| {} |",
            v.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        );
    }
    let q = &s.requests;
    let _ = writeln!(
        out,
        "\n**Requests:** {} issued, {} succeeded, {} failed, {} lost\n",
        q.issued, q.succeeded, q.failed, q.lost
    );
    let fallbacks = table::fallback_notes(s);
    if !fallbacks.is_empty() {
        out.push_str("**Fallbacks**\n\n");
        for f in fallbacks {
            let _ = writeln!(out, "- {}", cell(&f));
        }
        out.push('\n');
    }
    let problems = table::problem_notes(s);
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
    if !s.faults.is_empty() {
        let _ = writeln!(
            out,
            "\n{} fault(s) injected, {} recovery event(s).",
            s.faults.len(),
            s.recovery_events.len()
        );
    }
    if let Some(why) = &s.stopped_early {
        let _ = writeln!(out, "\n**Stopped early:** {}", cell(why));
    }
    out
}
