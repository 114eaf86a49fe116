//! The `compare` output: one table row per cell and metric (baseline, current, change, the
//! one-sided p-value and the direction it tests, verdict), then one `regression: ...` line per
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
        "a regression is worse by more than {:.1}% with p < {}\n",
        c.threshold * 100.0,
        c.alpha
    ));
    out.push_str(
        "p is one-sided, for the direction beside it: \"worse\" tests current worse than \
         baseline, \"better\" current better\n",
    );
    for k in &c.only_in_baseline {
        out.push_str(&format!(
            "note: {k} was measured in the baseline but not in the current run\n"
        ));
    }
    for k in &c.only_in_current {
        out.push_str(&format!(
            "note: {k} is new in the current run (no baseline)\n"
        ));
    }
    out
}

/// `regression: bert-tiny/chromium/wasm latency p50 +23.4% (p_worse=1.2e-9)`, one per
/// regression.
pub fn regression_lines(c: &Comparison) -> Vec<String> {
    c.regressions()
        .map(|d| format!("regression: {}", d.describe()))
        .collect()
}
