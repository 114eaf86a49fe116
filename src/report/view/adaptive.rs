//! Adaptive routing as lines of text, shared by the terminal, Markdown and HTML reports: per
//! model evaluated, where it ran and how fast, each placement timed beside the current one
//! (with its p-value and Holm level), and the move with the latency before and after it.

use crate::metrics::{AdaptiveEvaluation, PairTiming, RunSummary};

fn pair(p: &PairTiming) -> String {
    match &p.error {
        Some(e) => format!("{}/{}: not timed ({e})", p.browser, p.backend),
        None => {
            let beside = match (p.current_p50_ms, p.p_value, p.holm_level) {
                (Some(c), Some(pv), Some(level)) => format!(
                    " vs current {c:.1} ms timed beside it, p={} (Holm level {})",
                    crate::metrics::compare::format_p(pv),
                    crate::metrics::compare::format_p(level)
                ),
                _ => String::new(),
            };
            format!(
                "{}/{} {:.1} ms (n={}){beside}",
                p.browser, p.backend, p.p50_ms, p.samples
            )
        }
    }
}

fn line(e: &AdaptiveEvaluation) -> String {
    let probes: Vec<String> = e.probes.iter().map(pair).collect();
    let mut out = format!(
        "{} at {:.1}s: ran on {} ({}), p50 {:.1} ms over {} requests; timed {}; {}",
        e.model,
        e.at_ms as f64 / 1e3,
        format_args!("{}/{}", e.current.browser, e.current.backend),
        e.current.worker,
        e.current.p50_ms,
        e.current.samples,
        if probes.is_empty() {
            "nothing else".to_string()
        } else {
            probes.join(", ")
        },
        e.decision
    );
    if let Some(m) = &e.moved {
        let after = match m.after_p50_ms {
            Some(ms) => format!("{ms:.1} ms over {} requests", m.after_samples),
            None => "no request ran there before the end".to_string(),
        };
        out.push_str(&format!(
            ". Latency p50 before the move {:.1} ms over {} requests, after it ({}, from {:.1}s) {after}",
            m.before_p50_ms,
            m.before_samples,
            m.to.worker,
            m.at_ms as f64 / 1e3
        ));
    }
    out
}

/// One line per adaptive evaluation; empty when the run was not adaptive.
pub fn adaptive_lines(s: &RunSummary) -> Vec<String> {
    let Some(a) = &s.adaptive else {
        return Vec::new();
    };
    if a.evaluations.is_empty() {
        return vec![
            "adaptive routing: no model reached the warm requests it needs before the workload ended"
                .into(),
        ];
    }
    a.evaluations.iter().map(line).collect()
}
