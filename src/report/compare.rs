//! The `compare` output: one table row per cell and metric (baseline, current, change, the
//! one-sided p-value and the direction it tests, verdict), then one `lost: ...` line per cell
//! that had successes in the baseline and none now, and one `regression: ...` line per
//! significant regression. The numbers come from the pure `metrics::compare`.

use comfy_table::{Cell, CellAlignment, Color};

use crate::metrics::compare::{format_p, Comparison, Verdict};

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
    let mut out = format!("{table}\n");
    out.push_str(&format!(
        "a regression is worse by more than {:.1}% with p < {}; a cell with successful runs in \
         the baseline and none now fails too\n",
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

/// What fails the gate, one line each: lost cells first (a model that stopped working is the
/// bigger news), `lost: bert-tiny/chromium/wasm: 40 successful runs in the baseline, none now:
/// ...`, then regressions, `regression: bert-tiny/chromium/wasm latency p50 +23.4%
/// (p_worse=1.2e-9)`. Empty exactly when [`Comparison::passed`].
pub fn failure_lines(c: &Comparison) -> Vec<String> {
    let lost = c
        .lost_cells
        .iter()
        .map(|l| format!("lost: {}", l.describe()));
    let regressions = c
        .regressions()
        .map(|d| format!("regression: {}", d.describe()));
    lost.chain(regressions).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::compare::{CellKey, Direction, LostCell, Metric, MetricDelta};

    fn cell() -> CellKey {
        CellKey {
            model: "bert-tiny".into(),
            browser: "chromium".into(),
            backend: "wasm".into(),
        }
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
                metric: Metric::LatencyP50,
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
    }
}
