//! Generation cells of a `run` (a scenario's `generation:` block, or a language model in
//! `--models`): the decoder and the prompts prepared before the browsers start, and after they
//! are closed each generation checked against native onnxruntime teacher-forced on the
//! browser's tokens, then reported like `generate`'s: an entry of `generations` per prompt and
//! browser, a result row per browser over all its prompts' decode steps, step samples.

use anyhow::Result;

use super::in_pool::steady;
use super::record::{generation, rows, samples};
use super::split::decoder_graph;
use super::{against_native, GenerateOutcome, ShardFigures, Split, Verdict, Written};
use crate::generate::check::{against_logits, SideTimes};
use crate::generate::model::{architecture, open_weights, prepared, DecoderFile, Precision};
use crate::metrics::{GenerationReport, Phase, ResultRow, Sample};
use crate::models::gguf::chat::{render_chat, ChatMessage};
use crate::models::gguf::tokenizer::LlmTokenizer;
use crate::models::Cache;
use crate::pool::engine::generation::{GenerationPlan, GenerationRun};
use crate::pool::{RunEvent, RunObserver};
use crate::recovery::ShardRecovery;
use crate::scenario::Generation;

/// The prepared cells: the engine's plan and what the check needs afterwards.
pub struct Cells {
    /// What the engine runs.
    pub plan: GenerationPlan,
    tokenizer: LlmTokenizer,
    whole: DecoderFile,
}

/// Prepares `g`: the model's whole decoder graph (f32, cached), the prompts in its chat
/// template.
///
/// # Errors
/// Missing or bad weights (as usage errors), a prompt over the graph's positions, a graph that
/// cannot be written.
pub async fn prepare_cells(
    g: &Generation,
    cache: &Cache,
    observer: &dyn RunObserver,
) -> Result<Cells> {
    observer.on_event(&RunEvent::Note {
        line: format!(
            "preparing the generation cells: {} writing {} prompt(s), {} tokens each",
            g.model,
            g.prompts.len(),
            g.max_new_tokens
        ),
    });
    let weights = open_weights(cache).map_err(super::usage)?;
    let tokenizer = LlmTokenizer::from_gguf(&weights).map_err(super::usage)?;
    let cfg = architecture(&weights).map_err(super::usage)?;
    let mut prompts = Vec::new();
    for (i, text) in g.prompts.iter().enumerate() {
        let chat = render_chat(&weights, &[ChatMessage::user(text.clone())], true)
            .map_err(super::usage)?;
        let ids = tokenizer.encode(&chat, true).map_err(super::usage)?;
        let positions = ids.len() + g.max_new_tokens as usize;
        if positions > crate::generate::model::MAX_POSITIONS {
            anyhow::bail!(super::UsageError(format!(
                "generation.prompts[{i}] is {} tokens and max_new_tokens {}: together {positions} positions, over the {} the graph holds",
                ids.len(),
                g.max_new_tokens,
                crate::generate::model::MAX_POSITIONS
            )));
        }
        prompts.push(ids);
    }
    let file = decoder_graph(cache, &cfg, 0..cfg.layers, (Precision::F32, None)).await?;
    let model = g.model.trim().to_ascii_lowercase();
    Ok(Cells {
        plan: GenerationPlan {
            prepared: prepared(&model, &file, &cfg),
            model,
            layers: file.layers.clone(),
            cache: (cfg.kv_heads, cfg.head_dim()),
            hidden: cfg.hidden,
            prompts,
            max_new_tokens: g.max_new_tokens as usize,
            eos: tokenizer.eos(),
        },
        tokenizer,
        whole: file,
    })
}

/// What the cells report: a row per browser, a generation per prompt and browser, the step
/// samples.
pub struct Checked {
    /// One per browser, over its prompts' steady decode steps.
    pub rows: Vec<ResultRow>,
    /// One per prompt and browser.
    pub generations: Vec<GenerationReport>,
    /// A sample per step.
    pub samples: Vec<Sample>,
}

/// Checks every finished generation of `runs` against native onnxruntime (after the browsers
/// closed) and reports them; a generation that failed is a failed row.
///
/// # Errors
/// The native runtime cannot run the graph.
pub async fn check_cells(
    cells: &Cells,
    runs: Vec<GenerationRun>,
    cache: &Cache,
    observer: &dyn RunObserver,
) -> Result<Checked> {
    let mut out = Checked {
        rows: Vec::new(),
        generations: Vec::new(),
        samples: Vec::new(),
    };
    let mut by_browser: Vec<Browser> = Vec::new();
    let mut known = Known::new();
    for run in runs {
        let kind = run.browser.map(|k| k.to_string()).unwrap_or_default();
        let at = match by_browser.iter().position(|b| b.kind == kind) {
            Some(i) => i,
            None => {
                by_browser.push(Browser {
                    kind: kind.clone(),
                    ..Browser::default()
                });
                by_browser.len() - 1
            }
        };
        let b = &mut by_browser[at];
        if let Some(e) = &run.error {
            b.failed.push(format!("prompt {}: {e}", run.prompt));
            continue;
        }
        let (prompt, warmup) = (run.prompt, run.phase == Phase::Warmup);
        let outcome = check_one(cells, run, cache, &mut known, observer).await?;
        if warmup {
            // A warm-up generation is checked like any, but not measured or reported.
            let matched = outcome.checks.iter().filter(|c| c.matched()).count();
            if matched < outcome.checks.len() {
                b.mismatched.push(format!(
                    "warm-up generation of prompt {prompt}: {matched} of {} steps match native onnxruntime",
                    outcome.checks.len()
                ));
            }
            continue;
        }
        b.outcomes.push(outcome);
    }
    for b in by_browser {
        for o in &b.outcomes {
            out.generations.push(generation(o));
            out.samples.extend(samples(o));
        }
        let mut row = match merged(&b.outcomes) {
            Some(all) => rows(&all).swap_remove(0),
            None => ResultRow {
                model: cells.plan.model.clone(),
                task: "text_generation".into(),
                browser: b.kind.clone(),
                ..ResultRow::default()
            },
        };
        row.failed += b.failed.len() as u64;
        let errors: Vec<String> = b.failed.into_iter().chain(b.mismatched).collect();
        if !errors.is_empty() {
            row.correctness.passed = false;
            row.error = Some(errors.join("; "));
        }
        out.rows.push(row);
    }
    Ok(out)
}

/// One browser's generations: those measured, and why others failed or did not match.
#[derive(Default)]
struct Browser {
    kind: String,
    outcomes: Vec<GenerateOutcome>,
    /// Generations that did not finish.
    failed: Vec<String>,
    /// Warm-up generations that finished but did not match native.
    mismatched: Vec<String>,
}

/// Native's verdicts so far, by prompt and tokens: greedy generations repeat (a routed run
/// writes each prompt many times), and native teacher-forced on the same tokens gives the
/// same logits, so each sequence runs natively once and every generation of it is judged
/// against those logits.
type Known = Vec<((usize, Vec<u32>), Verdict)>;

/// One generation checked against native, as `generate` reports it.
async fn check_one(
    cells: &Cells,
    run: GenerationRun,
    cache: &Cache,
    known: &mut Known,
    observer: &dyn RunObserver,
) -> Result<GenerateOutcome> {
    let prompt = cells.plan.prompts[run.prompt].clone();
    let w = run.written;
    let key = (run.prompt, w.tokens.clone());
    let verdict = match known.iter().find(|(k, _)| *k == key) {
        Some((_, v)) => Verdict {
            checks: against_logits(&w.logits, &v.native_logits, &w.tokens),
            native_times: v.native_times.clone(),
            text: v.text.clone(),
            native_text: v.native_text.clone(),
            native_logits: Vec::new(),
        },
        None => {
            observer.on_event(&RunEvent::Note {
                line: format!(
                    "checking {}'s generation of prompt {} against native onnxruntime ...",
                    cells.plan.model, run.prompt
                ),
            });
            let v = against_native(
                cache,
                &cells.whole,
                cells.plan.cache,
                &cells.tokenizer,
                Written {
                    prompt: prompt.clone(),
                    tokens: w.tokens.clone(),
                    logits: w.logits,
                    sampling: None,
                    draws: Vec::new(),
                },
            )
            .await?;
            known.push((key, v.clone()));
            v
        }
    };
    let Verdict {
        checks,
        native_times,
        text,
        native_text,
        ..
    } = verdict;
    let records = &w.records;
    let times = SideTimes {
        prefill_ms: records.first().map_or(0.0, |r| r.wall_ms),
        decode_ms: steady(records).map(|r| r.wall_ms).collect(),
    };
    let kind = run.browser.map(|k| k.to_string()).unwrap_or_default();
    let shard = ShardFigures {
        model: cells.plan.model.clone(),
        layers: cells.plan.layers.clone(),
        worker: run.worker.clone(),
        kind: kind.clone(),
        backend: run
            .backend
            .map_or_else(|| "-".to_owned(), |b| b.to_string()),
        compute_ms: steady(records).map(|s| s.compute_ms[0]).collect(),
        hop_ms: Vec::new(),
        load: (run.load.last_ms, run.load.loads),
        wasm_threads: run.load.wasm_threads,
        parameters: cells.whole.parameters,
        graph_bytes: cells.plan.prepared.onnx_bytes,
        memory_mib: None,
    };
    Ok(GenerateOutcome {
        browsers: vec![format!("{kind} {}", run.version).trim_end().to_owned()],
        prompt_tokens: prompt.len(),
        text,
        native_text,
        checks,
        load_ms: run.load.last_ms,
        time_to_first_token_ms: w.ttft_ms,
        browser_times: times,
        native_times,
        shards: vec![shard],
        stalls: Vec::new(),
        rebuilt: Vec::new(),
        fault: None,
        recovery: ShardRecovery::RetryFailedShards,
        plan: (Split::Even, Vec::new()),
        precision: Precision::F32,
        sampling: None,
        interrupted: w.interrupted,
        steps: w.records,
        step_started_ms: w.started_ms.iter().map(|t| t + w.sent_ms).collect(),
        capacity: None,
        tokens: w.tokens,
        run_dir: std::path::PathBuf::new(),
    })
}

/// One browser's generations as one: their checks, steady steps and native times pooled, for
/// its row.
fn merged(outcomes: &[GenerateOutcome]) -> Option<GenerateOutcome> {
    let mut all = outcomes.first()?.clone();
    for o in &outcomes[1..] {
        all.checks.extend(o.checks.iter().cloned());
        all.browser_times
            .decode_ms
            .extend(&o.browser_times.decode_ms);
        all.shards[0].compute_ms.extend(&o.shards[0].compute_ms);
        for (a, b) in all.native_times.iter_mut().zip(&o.native_times) {
            a.1.decode_ms.extend(&b.1.decode_ms);
        }
    }
    Some(all)
}
