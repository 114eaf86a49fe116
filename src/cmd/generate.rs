//! `webgpu-pool generate`: the text streams to stdout as the page writes it, then a table of
//! what it took and how it compares with native onnxruntime on the same graph.

use anyhow::Result;
use comfy_table::{presets::UTF8_FULL, Table};

use webgpu_pool::app::{self, GenerateOutcome, GenerateRequest, SideTimes};

use super::common::print;
use super::{Context, Outcome};
use crate::cli::GenerateArgs;
use crate::observe;

/// Generates, checks every step against native, prints the figures; exit 1 when a step did not
/// match native.
///
/// # Errors
/// Missing weights, a bad prompt or flag (exit 2), or a browser or page failure.
pub async fn execute(args: GenerateArgs, ctx: &Context) -> Result<Outcome> {
    let observer = observe::Stderr { quiet: ctx.quiet };
    let req = GenerateRequest {
        prompt: args.prompt,
        chat: !args.raw,
        max_new_tokens: args.max_new_tokens as usize,
        browser: args.browser,
        call_timeout: args.call_timeout,
        shutdown: ctx.shutdown.clone(),
    };
    let mut wrote = false;
    let mut on_text = |piece: &str| {
        if !piece.is_empty() {
            wrote = true;
            let _ = print(piece);
        }
    };
    let progress = |m: &str| observer.line(m);
    let out = app::generate(req, &mut on_text, &progress).await?;
    if wrote {
        print("\n")?;
    }
    print(&render(&out))?;
    Ok(if out.interrupted {
        Outcome::Interrupted
    } else if out.verified() {
        Outcome::Pass
    } else {
        Outcome::Failed
    })
}

fn render(out: &GenerateOutcome) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL).set_header([
        "side",
        "time to first token ms",
        "prefill tok/s",
        "inter-token p50 / p95 / p99 ms",
        "decode tok/s",
    ]);
    let row = |name: String, ttft: Option<f64>, s: &SideTimes| {
        let itl = s.inter_token().map_or_else(
            || "-".to_owned(),
            |p| format!("{:.1} / {:.1} / {:.1}", p.p50, p.p95, p.p99),
        );
        vec![
            name,
            ttft.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}")),
            format!("{:.0}", s.prefill_tokens_per_s(out.prompt_tokens)),
            itl,
            format!("{:.1}", s.decode_tokens_per_s()),
        ]
    };
    t.add_row(row(
        format!("{} {}", out.browser, out.backend),
        Some(out.time_to_first_token_ms),
        &out.browser_times,
    ));
    for (threads, s) in &out.native_times {
        t.add_row(row(
            format!("native onnxruntime @{threads}"),
            Some(s.prefill_ms),
            s,
        ));
    }
    let b = out.browser_times.decode_tokens_per_s();
    let x = |n: &SideTimes| n.decode_tokens_per_s() / b;
    let worst = out
        .checks
        .iter()
        .map(|c| c.max_abs_diff)
        .fold(0.0, f64::max);
    let ties = out.checks.iter().filter(|c| c.near_tie).count();
    let mut s = format!("{t}\n");
    s += &format!(
        "prompt {} tokens, generated {}; page load {:.0} ms\n",
        out.prompt_tokens,
        out.tokens.len(),
        out.load_ms
    );
    s += &format!(
        "x native (decode): {:.1}x @{} thread, {:.1}x @{} threads\n",
        x(&out.native_times[0].1),
        out.native_times[0].0,
        x(&out.native_times[1].1),
        out.native_times[1].0
    );
    s += &format!(
        "verified: {} of {} steps match native onnxruntime teacher-forced on the browser's tokens (max |diff| {worst:.2e}, {ties} near tie(s)): {}\n",
        out.checks.iter().filter(|c| c.matched()).count(),
        out.checks.len(),
        if out.verified() { "ok" } else { "MISMATCH" }
    );
    match &out.native_text {
        None => s += "native greedy: token-identical\n",
        Some(text) => s += &format!("native greedy (differs after a near tie): {text}\n"),
    }
    s
}
