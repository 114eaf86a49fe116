//! The `compare` output: which time it tests, one table row per cell and metric (baseline,
//! current, change, the one-sided p-value and the direction it tests, verdict), the conditions
//! each compared cell was measured under, then one `unlike: ...` line per cell measured under
//! other conditions (not compared), one `lost: ...` line per cell that had successes in the
//! baseline and none now, and one `regression: ...` line per significant regression. The
//! numbers come from the pure `metrics::compare`.

use comfy_table::{Cell, CellAlignment, Color};

use crate::metrics::compare::{format_p, CellKey, Comparison, Timing, Verdict};

use super::terminal::new_table;

/// Renders `c` for the terminal.
pub fn render(c: &Comparison) -> String {
    let mut table = new_table();
    table.set_header([
        "model/browser/backend",
        "metric",
        "baseline",
        "current",
        "change",
        "p (one-sided)",
        "n (base/cur)",
        "verdict",
    ]);
    for d in &c.deltas {
        let (text, colour) = match d.verdict {
            Verdict::Regression => ("REGRESSION", Some(Color::Red)),
            Verdict::Improvement => ("improvement", Some(Color::Green)),
            Verdict::Unchanged => ("unchanged", None),
            Verdict::Insufficient => ("too few samples", None),
        };
        let verdict = match colour {
            Some(col) => Cell::new(text).fg(col),
            None => Cell::new(text),
        };
        table.add_row(vec![
            Cell::new(d.cell.to_string()),
            Cell::new(d.metric.as_str()),
            Cell::new(format!("{:.2} {}", d.baseline, d.metric.unit())),
            Cell::new(format!("{:.2} {}", d.current, d.metric.unit())),
            Cell::new(format!("{:+.1}%", d.change * 100.0)),
            Cell::new(format!("{} {}", format_p(d.p_value), d.direction.as_str())),
            Cell::new(format!("{}/{}", d.n_baseline, d.n_current)),
            verdict,
        ]);
    }
    for i in 2..7 {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let table = if c.deltas.is_empty() {
        "no cell was measured alike in both runs: nothing to compare".to_string()
    } else {
        table.to_string()
    };
    let mut out = format!(
        "timing: {} ({}); --timing {} tests the other\n{table}\n",
        c.timing.as_str(),
        match c.timing {
            Timing::PageRun => "the page's own session.run, p50 and p95",
            Timing::EndToEnd => "scheduled start to answer as the harness saw it, p50 and p95",
        },
        match c.timing {
            Timing::PageRun => "end-to-end",
            Timing::EndToEnd => "page-run",
        }
    );
    let mut compared: Vec<&CellKey> = c.deltas.iter().map(|d| &d.cell).collect();
    compared.dedup();
    for k in compared {
        out.push_str(&format!("measured alike: {k} on {}\n", k.conditions()));
    }
    out.push_str(&format!(
        "a regression is worse by more than {:.1}% with p < {}; a cell with successful runs in \
         the baseline and none now, or one measured unlike, fails too\n",
        c.threshold * 100.0,
        c.alpha
    ));
    out.push_str(
        "p is one-sided, for the direction beside it: \"worse\" tests current worse than \
         baseline, \"better\" current better\n",
    );
    for k in &c.only_in_current {
        out.push_str(&format!(
            "note: {k} is new in the current run (no baseline)\n"
        ));
    }
    out
}

/// What fails the gate, one line each: cells measured unlike first (nothing about them could be
/// tested), `unlike: bert-tiny/chromium/wasm: measured unlike, not compared (baseline vs
/// current): load isolated vs routed x4`, then lost cells (a model that stopped working),
/// `lost: bert-tiny/chromium/wasm: 40 successful runs in the baseline, none now: ...`, then
/// regressions, `regression: bert-tiny/chromium/wasm page run time p50 +23.4%
/// (p_worse=1.2e-9)`. Empty exactly when [`Comparison::passed`].
pub fn failure_lines(c: &Comparison) -> Vec<String> {
    let unlike = c.unlike.iter().map(|u| format!("unlike: {}", u.describe()));
    let lost = c
        .lost_cells
        .iter()
        .map(|l| format!("lost: {}", l.describe()));
    let regressions = c
        .regressions()
        .map(|d| format!("regression: {}", d.describe()));
    unlike.chain(lost).chain(regressions).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::compare::{Direction, LostCell, Metric, MetricDelta, Unlike};
    use crate::metrics::{LoadContext, LoadKind};

    fn cell() -> CellKey {
        CellKey {
            model: "bert-tiny".into(),
            browser: "chromium".into(),
            backend: "wasm".into(),
            adapter: "cpu".into(),
            threads: 1,
            build: "156.0.8078.114".into(),
            load: LoadContext::closed(LoadKind::Isolated, 1),
        }
    }

    #[test]
    fn a_cell_measured_unlike_is_a_failure_line_saying_what_differs() {
        let routed = CellKey {
            load: LoadContext::closed(LoadKind::Routed, 4),
            ..cell()
        };
        let c = Comparison {
            unlike: vec![Unlike {
                baseline: cell(),
                current: routed,
            }],
            ..Comparison::default()
        };
        assert!(!c.passed() && !c.alike());
        assert!(
            render(&c).contains("\nno cell was measured alike in both runs: nothing to compare\n"),
            "{}",
            render(&c)
        );
        assert_eq!(
            failure_lines(&c),
            [
                "unlike: bert-tiny/chromium/wasm: measured unlike, not compared (baseline vs \
              current): load isolated vs routed x4"
            ]
        );
    }

    #[test]
    fn a_lost_cell_is_a_failure_line() {
        let c = Comparison {
            lost_cells: vec![LostCell {
                cell: cell(),
                baseline_runs: 40,
                current_failed: 40,
                current_error: Some("40 of 40 requests failed (40 timeout)".into()),
            }],
            ..Comparison::default()
        };
        assert_eq!(
            failure_lines(&c),
            ["lost: bert-tiny/chromium/wasm: 40 successful runs in the baseline, none now: 40 of \
              40 requests failed (40 timeout)"]
        );
    }

    #[test]
    fn the_p_column_names_the_direction_it_tests() {
        let c = Comparison {
            deltas: vec![MetricDelta {
                cell: cell(),
                metric: Metric::PageRunP50,
                baseline: 20.0,
                current: 12.0,
                change: -0.4,
                p_value: 0.0061,
                direction: Direction::Better,
                test: "mann-whitney u (page_ms)".into(),
                n_baseline: 5,
                n_current: 5,
                verdict: Verdict::Improvement,
            }],
            ..Comparison::default()
        };
        let out = render(&c);
        assert!(out.contains(" 0.0061 better "), "{out}");
        assert!(failure_lines(&c).is_empty());
        // The table names the time it tested, and the conditions both sides shared.
        assert!(out.starts_with("timing: page run time ("), "{out}");
        assert!(out.contains(" page run time p50 "), "{out}");
        assert!(
            out.contains(
                "measured alike: bert-tiny/chromium/wasm on cpu x1, build 156.0.8078.114, isolated"
            ),
            "{out}"
        );
    }
}
