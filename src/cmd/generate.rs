//! `webgpu-pool generate`: the text streams to stdout as the pages write it, then a table of
//! what it took and how it compares with native onnxruntime on the same graph, the shards, and
//! any recovery.

use anyhow::Result;
use comfy_table::{presets::UTF8_FULL, Table};

use webgpu_pool::app::{self, GenerateOutcome, GenerateRequest};
use webgpu_pool::generate::check::SideTimes;
use webgpu_pool::metrics::Percentiles;

use super::common::{add_history, command_line, history_file, print};
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
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        precision: args.weights.into(),
        shards: if args.placement.is_empty() {
            args.shards as usize
        } else {
            args.placement.len()
        },
        split: args.strategy.into(),
        browsers: args.browsers,
        placement: args
            .placement
            .iter()
            .map(|w| (w.browser, w.backend))
            .collect(),
        recovery: args.recovery.into(),
        kill: args
            .kill_shard
            .zip(args.kill_at_token)
            .map(|(s, k)| (s as usize, k as usize)),
        call_timeout: args.call_timeout,
        shutdown: ctx.shutdown.clone(),
        results_dir: args.results_dir.clone(),
        command: command_line(),
    };
    let history = history_file(&args.history, &args.results_dir);
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
    observer.line(&format!(
        "wrote {} (run.json, samples.csv, summary.md, report.html, junit.xml)",
        out.run_dir.display()
    ));
    if let Some(name) = &args.save_baseline {
        let to = webgpu_pool::report::save_baseline(&out.run_dir, &args.results_dir, name)?;
        observer.line(&format!("saved baseline '{name}' in {}", to.display()));
    }
    if let Some(file) = &history {
        add_history(file, &out.run_dir, &|m: &str| observer.line(m));
    }
    Ok(if out.interrupted {
        Outcome::Interrupted
    } else if out.verified() {
        Outcome::Pass
    } else {
        Outcome::Failed
    })
}

fn ms3(p: Option<Percentiles>) -> String {
    p.map_or_else(
        || "-".to_owned(),
        |p| format!("{:.1} / {:.1} / {:.1}", p.p50, p.p95, p.p99),
    )
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
    let row = |name: String, ttft: f64, s: &SideTimes| {
        vec![
            name,
            format!("{ttft:.0}"),
            format!("{:.0}", s.prefill_tokens_per_s(out.prompt_tokens)),
            ms3(s.inter_token()),
            format!("{:.1}", s.decode_tokens_per_s()),
        ]
    };
    let n = out.shards.len();
    t.add_row(row(
        format!(
            "pool, {n} shard(s), {}: {} ({})",
            out.precision.as_str(),
            dedup(&out.browsers).join(", "),
            dedup(
                &out.shards
                    .iter()
                    .map(|s| s.backend.clone())
                    .collect::<Vec<_>>()
            )
            .join(", ")
        ),
        out.time_to_first_token_ms,
        &out.browser_times,
    ));
    for (threads, s) in &out.native_times {
        t.add_row(row(
            format!(
                "native onnxruntime @{threads}, unsharded, {}",
                out.precision.as_str()
            ),
            s.prefill_ms,
            s,
        ));
    }
    let mut s = format!("{t}\n");
    {
        let mut st = Table::new();
        st.load_preset(UTF8_FULL).set_header([
            "shard",
            "layers",
            "worker",
            "backend",
            "parameters",
            "graph MB",
            "memory MiB (growth)",
            "compute p50 / p95 / p99 ms",
            "hop to next p50 / p95 / p99 ms",
        ]);
        for (k, sh) in out.shards.iter().enumerate() {
            st.add_row(vec![
                k.to_string(),
                format!("{}..{}", sh.layers.start, sh.layers.end),
                sh.worker.clone(),
                sh.backend.clone(),
                format!("{:.1} M", sh.parameters as f64 / 1e6),
                format!("{:.0}", sh.graph_bytes as f64 / 1e6),
                match sh.memory_mib {
                    None => "-".to_owned(),
                    Some((now, None)) => format!("{now:.0}"),
                    Some((now, Some(growth))) => format!("{now:.0} (+{growth:.0})"),
                },
                ms3(Percentiles::from_ms(&sh.compute_ms)),
                if k + 1 == n {
                    "-".to_owned()
                } else {
                    ms3(Percentiles::from_ms(&sh.hop_ms))
                },
            ]);
        }
        s += &format!("{st}\n");
        s += &format!("layers: {}\n", out.plan.1.join("; "));
    }
    let backends = dedup(
        &out.shards
            .iter()
            .map(|s| s.backend.clone())
            .collect::<Vec<_>>(),
    );
    s += &format!(
        "backends: {}; {}\n",
        if backends == ["wasm"] {
            "every shard on wasm".to_owned()
        } else {
            out.shards
                .iter()
                .enumerate()
                .map(|(k, s)| format!("shard {k} on {}", s.backend))
                .collect::<Vec<_>>()
                .join(", ")
        },
        out.backends_note()
    );
    let b = out.browser_times.decode_tokens_per_s();
    let x = |n: &SideTimes| n.decode_tokens_per_s() / b;
    let worst = out
        .checks
        .iter()
        .map(|c| c.max_abs_diff)
        .fold(0.0, f64::max);
    let ties = out.checks.iter().filter(|c| c.near_tie).count();
    s += &format!(
        "prompt {} tokens, generated {}; shards placed (fetch and session creation) in {:.0} ms\n",
        out.prompt_tokens,
        out.tokens.len(),
        out.load_ms
    );
    s += "step times: the harness's, tokens sent to logits back (transfers included); compute: the pages' session.run";
    if out.stalls.is_empty() && out.rebuilt.is_empty() {
        s += "\n";
    } else {
        s += &format!(
            "; the {} step(s) that waited for a recovery or rebuilt a cache are left out of both\n",
            out.stalls
                .iter()
                .map(|(t, _)| t)
                .chain(out.rebuilt.iter().map(|(t, _, _)| t))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        );
    }
    s += &format!(
        "x native (decode): {:.1}x @{} thread, {:.1}x @{} threads\n",
        x(&out.native_times[0].1),
        out.native_times[0].0,
        x(&out.native_times[1].1),
        out.native_times[1].0
    );
    if let Some(f) = &out.fault {
        s += &format!("fault: {f}\n");
    }
    for (token, st) in &out.stalls {
        let what = match st.class {
            Some(class) => format!("failed ({})", class.as_str()),
            None => "was out of service (the pool's watch had started its recovery)".to_owned(),
        };
        s += &format!(
            "recovery ({}): shard {} on {} {what} writing token {}; the generation stalled {:.0} ms\n",
            out.recovery.as_str(),
            st.shard,
            st.worker,
            token + 1,
            st.stalled_ms
        );
    }
    for (token, shard, positions) in &out.rebuilt {
        s += &format!(
            "rebuilt: shard {shard}'s cache, {positions} positions run again from its kept inputs, writing token {}\n",
            token + 1
        );
    }
    s += &format!(
        "verified: {} of {} steps match native onnxruntime teacher-forced on the browser's tokens (max |diff| {worst:.2e}, {ties} near tie(s)): {}\n",
        out.checks.iter().filter(|c| c.matched()).count(),
        out.checks.len(),
        if out.verified() { "ok" } else { "MISMATCH" }
    );
    let native = match out.sampling {
        None => "native greedy".to_owned(),
        Some(sp) => format!(
            "native sampled with the same draws (temperature {}, top-p {}, seed {})",
            sp.temperature, sp.top_p, sp.seed
        ),
    };
    match &out.native_text {
        None => s += &format!("{native}: token-identical\n"),
        Some(text) => s += &format!("{native} (differs from the browser's): {text}\n"),
    }
    s
}

/// `v` without repeats, in order.
fn dedup(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}
