//! The "Generation" section of `report.html`, for a `generate` run: the text, the pool's and
//! native onnxruntime's times side by side, the shards, the token-by-token check, and the
//! per-token latency chart by shard (each step's whole time, each shard's `session.run`, each
//! hop), a marker at every step that waited for a recovery. Nothing when the run generated
//! nothing. Imports `crate::metrics` and the report helpers only.

use std::fmt::Write as _;

use crate::metrics::generation::SideFigures;
use crate::metrics::{GenerationReport, Percentiles, RunSummary};

use super::table;
use crate::report::svg::{Chart, Marker, MarkerKind, Scale, Series};
use crate::report::template::escape;

/// Generations drawn in full; a routed run writes many (each prompt again and again), and the
/// rest are in run.json and the result rows.
const DRAWN: usize = 6;

/// The section of each generation (the first [`DRAWN`]), or nothing.
pub(super) fn generation_section(s: &RunSummary) -> String {
    let mut out: String = s.generations.iter().take(DRAWN).map(section).collect();
    if let Some(more) = s.generations.len().checked_sub(DRAWN).filter(|&n| n > 0) {
        let _ = writeln!(
            out,
            "<p>{more} more generation(s), each checked against native onnxruntime like these: \
             their steps are in run.json's <code>generations</code> and in the result rows.</p>"
        );
    }
    out
}

fn section(g: &GenerationReport) -> String {
    let mut out = String::from("<h2>Generation</h2>\n");
    let _ = writeln!(
        out,
        "<p>{} ({}, {}), {} prompt tokens, {} generated:</p>\n<blockquote class=\"generated\">{}</blockquote>",
        escape(&g.model),
        escape(&g.precision),
        escape(&g.choice),
        g.prompt_tokens,
        g.tokens.len(),
        escape(&g.text)
    );
    if let Some(native) = &g.native_text {
        let _ = writeln!(
            out,
            "<p>Native onnxruntime's own text differs (after a near tie):</p>\n<blockquote>{}</blockquote>",
            escape(native)
        );
    }
    out += &table(
        &[
            "side",
            "time to first token ms",
            "prefill tok/s",
            "inter-token p50 / p95 / p99 ms",
            "decode tok/s",
            "x native (decode)",
        ],
        &|i| i >= 1,
        std::iter::once(&g.pool)
            .chain(&g.native)
            .map(|f| side_row(g, f))
            .collect(),
    );
    out += &table(
        &[
            "shard",
            "layers",
            "worker",
            "browser",
            "backend",
            "compute p50 / p95 / p99 ms",
            "hop to next p50 / p95 / p99 ms",
            "memory MiB (growth)",
        ],
        &|i| i == 0 || i >= 5,
        g.shards
            .iter()
            .enumerate()
            .map(|(k, sh)| {
                vec![
                    k.to_string(),
                    format!("{}..{}", sh.layers[0], sh.layers[1]),
                    sh.worker.clone(),
                    sh.browser.clone(),
                    sh.backend.clone(),
                    ms3(sh.compute_ms),
                    ms3(sh.hop_ms),
                    match (sh.memory_mib, sh.memory_growth_mib) {
                        (None, _) => "-".into(),
                        (Some(m), None) => format!("{m:.0}"),
                        (Some(m), Some(g)) => format!("{m:.0} (+{g:.0})"),
                    },
                ]
            })
            .collect(),
    );
    out.push('\n');
    let mut lines = vec![format!(
        "verified: {} of {} steps match native onnxruntime teacher-forced on the browser's tokens (max |diff| {:.2e}, {} near tie(s))",
        g.verified_steps, g.checked_steps, g.max_abs_diff, g.near_ties
    )];
    if !g.backends_note.is_empty() {
        lines.push(format!("backends: {}", g.backends_note));
    }
    lines.extend(g.fault.iter().map(|f| format!("fault: {f}")));
    lines.extend(g.stalls.iter().map(|st| {
        format!(
            "recovery ({}): shard {} on {} {} writing token {}; the generation stalled {:.0} ms",
            g.recovery,
            st.shard,
            st.worker,
            st.class.as_deref().map_or_else(
                || "was out of service".to_owned(),
                |c| format!("failed ({c})")
            ),
            st.step + 1,
            st.stalled_ms
        )
    }));
    let _ = write!(out, "<ul class=\"notes\">");
    for l in lines {
        let _ = write!(out, "<li>{}</li>", escape(&l));
    }
    let _ = writeln!(out, "</ul>");
    out += &token_chart(g);
    out
}

fn side_row(g: &GenerationReport, f: &SideFigures) -> Vec<String> {
    let x = if f.threads == 0 {
        g.native
            .iter()
            .filter_map(|n| {
                g.x_native(n.threads)
                    .map(|x| format!("{x:.1}x @{}", n.threads))
            })
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        "-".into()
    };
    let side = if f.threads == 0 {
        f.side.clone()
    } else {
        format!("{} @{}", f.side, f.threads)
    };
    vec![
        side,
        format!("{:.0}", f.time_to_first_token_ms),
        format!("{:.0}", f.prefill_tokens_per_s),
        ms3(f.inter_token_ms),
        format!("{:.1}", f.decode_tokens_per_s),
        x,
    ]
}

fn ms3(p: Option<Percentiles>) -> String {
    p.map_or_else(
        || "-".to_owned(),
        |p| format!("{:.1} / {:.1} / {:.1}", p.p50, p.p95, p.p99),
    )
}

/// Per decode step (x: the token it wrote), its whole time and each shard's and hop's part;
/// a step that waited for a recovery gets a fault marker and its own (much larger) point, so
/// the y axis turns logarithmic when one is there.
fn token_chart(g: &GenerationReport) -> String {
    // Step i (from 1) writes token i+1; the prefill (step 0) is the time to first token.
    let decode: Vec<(f64, &crate::metrics::generation::GenerationStep)> = g
        .steps
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, st)| ((i + 1) as f64, st))
        .collect();
    if decode.is_empty() {
        return String::new();
    }
    let n = g.shards.len();
    let mut series = vec![Series {
        label: "whole step (sent to logits back)".into(),
        points: decode.iter().map(|(x, st)| (*x, st.wall_ms)).collect(),
        wide: true,
    }];
    for k in 0..n {
        let sh = &g.shards[k];
        series.push(Series {
            label: format!(
                "shard {k} ({}..{}, {}) session.run",
                sh.layers[0], sh.layers[1], sh.browser
            ),
            points: decode
                .iter()
                .filter_map(|(x, st)| {
                    st.compute_ms
                        .get(k)
                        .filter(|&&ms| ms > 0.0)
                        .map(|&ms| (*x, ms))
                })
                .collect(),
            wide: false,
        });
    }
    for k in 0..n.saturating_sub(1) {
        series.push(Series {
            label: format!("hop {k} to {}", k + 1),
            points: decode
                .iter()
                .filter_map(|(x, st)| st.hop_ms.get(k).copied().flatten().map(|ms| (*x, ms)))
                .collect(),
            wide: false,
        });
    }
    let markers = g
        .stalls
        .iter()
        .map(|st| Marker {
            x: (st.step + 1) as f64,
            label: format!("shard {} recovered: {:.0} ms", st.shard, st.stalled_ms),
            kind: MarkerKind::Fault,
        })
        .collect();
    let values = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| *v > 0.0);
    let chart = Chart {
        title: format!("{}: per-token latency by shard", g.model),
        x_label: "token written".into(),
        y_label: "ms".into(),
        x: Scale::Linear {
            min: 1.0,
            max: (g.steps.len() as f64).max(2.0),
        },
        y: Scale::fit(values, false),
        series,
        markers,
    };
    format!("<h3>Per-token latency by shard</h3>{}", chart.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::generation::{GenerationShard, GenerationStall, GenerationStep};

    fn report() -> GenerationReport {
        let step = |wall: f64, a: f64, b: f64, hop: f64| GenerationStep {
            positions: 1,
            wall_ms: wall,
            compute_ms: vec![a, b],
            hop_ms: vec![Some(hop), None],
            ..GenerationStep::default()
        };
        GenerationReport {
            model: "smollm2".into(),
            text: "As the AI, <b>".into(),
            tokens: vec![1, 2, 3, 4],
            shards: vec![
                GenerationShard {
                    layers: [0, 15],
                    browser: "chromium".into(),
                    ..GenerationShard::default()
                },
                GenerationShard {
                    layers: [15, 30],
                    browser: "firefox".into(),
                    ..GenerationShard::default()
                },
            ],
            steps: vec![
                step(700.0, 300.0, 320.0, 5.0),
                step(40.0, 15.0, 17.0, 4.0),
                step(7800.0, 15.0, 900.0, 4.5),
                step(41.0, 16.0, 18.0, 3.9),
            ],
            stalls: vec![GenerationStall {
                step: 2,
                shard: 1,
                stalled_ms: 7700.0,
                ..GenerationStall::default()
            }],
            ..GenerationReport::default()
        }
    }

    #[test]
    fn the_chart_has_a_line_per_shard_and_hop_and_a_marker_per_stall() {
        let svg = token_chart(&report());
        assert!(
            svg.contains("shard 0 (0..15, chromium) session.run"),
            "{svg}"
        );
        assert!(svg.contains("shard 1 (15..30, firefox) session.run"));
        assert!(svg.contains("hop 0 to 1"));
        assert!(!svg.contains("hop 1 to 2"), "the last shard has no hop");
        assert!(svg.contains("shard 1 recovered: 7700 ms"));
    }

    #[test]
    fn the_text_is_escaped() {
        let html = section(&report());
        assert!(html.contains("As the AI, &lt;b&gt;"), "{html}");
    }

    #[test]
    fn many_generations_draw_the_first_few_and_count_the_rest() {
        let mut s = crate::report::view::tests::summary();
        s.generations = vec![report(); DRAWN + 2];
        let html = generation_section(&s);
        assert_eq!(html.matches("<h2>Generation</h2>").count(), DRAWN);
        assert!(html.contains("<p>2 more generation(s)"), "{html}");
        s.generations.truncate(DRAWN);
        assert!(!generation_section(&s).contains("more generation"));
    }
}
