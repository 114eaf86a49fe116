//! What the pool observed ([`PoolReport`]) into the engine's output: one row per model x
//! browser x backend in plan order (figures from `metrics::aggregate`, correctness judged across
//! each model's cells), worker summaries, routing records and pool events. Pure. Must not import
//! `report`, `cli` or terminal crates.

use std::collections::BTreeMap;

use crate::metrics::{
    aggregate, ModelMemory, Phase, ResultRow, RoutingRecord, Sample, WebnnUse, WorkerSummary,
};

use super::super::correctness::{self, CellOutput};
use super::super::error::ErrorClass;
use super::super::router::Target;
use super::super::worker::runs;
use super::super::{PoolReport, WorkerReport};
use super::matrix::CellCores;
use super::pipeline::{PipelineOutcome, PipelinePlan};
use super::{EngineOutput, PlacementError, RunPlan};
use crate::metrics::sharding::{median_ratio, HopRow, ShardEvent, ShardRow, ShardingReport};
use crate::metrics::{Percentiles, Requests};

use super::super::events::RecoveryRecord;

/// A row's key: the model's position in the plan, browser, backend.
type CellKey = (usize, String, String);

/// Turns what the pool observed into report rows, worker summaries and routing records.
pub(super) fn summarize(
    plan: &RunPlan,
    report: PoolReport,
    errors: Vec<PlacementError>,
    cores: &[CellCores],
) -> EngineOutput {
    let mut out = EngineOutput {
        requests: report.requests,
        peak_workers: report.peak_workers,
        faults: report.faults.clone(),
        recoveries: report.recoveries.clone(),
        ..Default::default()
    };
    let mut workers = report.workers.clone();
    workers.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
    for w in &workers {
        if let Some(env) = &w.status.env {
            if !out.browsers.iter().any(|b| b.kind == env.kind) {
                out.browsers.push(env.clone());
            }
        }
    }
    let mut rows = cells(plan, &report, cores);
    judge(plan, &mut rows, &report.samples);
    proven(&mut rows, &report);
    for (row, output) in rows.into_values() {
        if let Some(o) = output.filter(|o| !o.full.is_empty()) {
            out.outputs.push(super::CellTensor {
                model: row.model.clone(),
                browser: row.browser.clone(),
                backend: row.backend.clone(),
                dims: o.dims,
                values: o.full,
            });
        }
        out.rows.push(row);
    }
    for (model, browser, e) in errors {
        // A cell whose only placement was rejected has its row already: the error joins it.
        let browser_name = browser.map(|b| b.to_string()).unwrap_or_default();
        if let Some(row) = out
            .rows
            .iter_mut()
            .find(|r| r.model == model && r.browser == browser_name && r.runs == 0)
        {
            row.error.get_or_insert_with(|| e.to_string());
            continue;
        }
        let spec = plan.models.iter().find(|m| m.prepared.name == model);
        out.rows.push(ResultRow {
            task: spec
                .map(|m| m.prepared.task.as_str().to_string())
                .unwrap_or_default(),
            weights: spec
                .map(|m| m.prepared.weights.as_str().to_string())
                .unwrap_or_default(),
            model,
            browser: browser.map(|b| b.to_string()).unwrap_or_default(),
            error: Some(e.to_string()),
            ..Default::default()
        });
    }
    out.workers = workers.iter().map(|w| worker_summary(w, &report)).collect();
    out.routing = report
        .decisions
        .iter()
        .map(|d| RoutingRecord {
            model: d.model.clone(),
            target: match &d.target {
                Target::Worker(id) => id.clone(),
                Target::Launch(k) => format!("new {k} worker"),
            },
            reasons: d.reasons.clone(),
        })
        .collect();
    out.pool_events = report.events;
    out.samples = report.samples;
    out
}

/// The adaptive report: each move gets the p50 of the requests served at its new placement
/// after it.
pub(super) fn adaptive(
    mut evaluations: Vec<crate::metrics::AdaptiveEvaluation>,
    samples: &[Sample],
) -> crate::metrics::AdaptiveReport {
    for e in &mut evaluations {
        let Some(m) = e.moved.as_mut() else { continue };
        let after: Vec<f64> = samples
            .iter()
            .filter(|s| {
                s.phase == Phase::Measure
                    && s.ok
                    && s.model == e.model
                    && s.worker == m.to.worker
                    && s.backend == m.to.backend
                    && s.started_ms >= m.at_ms as f64
            })
            .map(|s| s.page_ms)
            .collect();
        m.after_samples = after.len();
        m.after_p50_ms = crate::metrics::Percentiles::from_ms(&after).map(|p| p.p50);
    }
    crate::metrics::AdaptiveReport { evaluations }
}

/// One row per model x browser x backend that was placed, in plan order, with its measured
/// figures and its first run's output.
fn cells(
    plan: &RunPlan,
    report: &PoolReport,
    cores: &[CellCores],
) -> BTreeMap<CellKey, (ResultRow, Option<CellOutput>)> {
    let order = |m: &str| {
        plan.models
            .iter()
            .position(|p| p.prepared.name == m)
            .unwrap_or(usize::MAX)
    };
    let mut rows: BTreeMap<CellKey, (ResultRow, Option<CellOutput>)> = BTreeMap::new();
    for p in &report.placements {
        let key = (
            order(&p.model),
            p.browser.to_string(),
            p.load.backend.to_string(),
        );
        let entry = rows.entry(key).or_insert_with(|| {
            let model = plan
                .models
                .iter()
                .find(|m| m.prepared.name == p.model)
                .map(|m| &m.prepared);
            let row = ResultRow {
                model: p.model.clone(),
                task: model
                    .map(|m| m.task.as_str().to_string())
                    .unwrap_or_default(),
                weights: model
                    .map(|m| m.weights.as_str().to_string())
                    .unwrap_or_default(),
                weights_note: model.map(|m| m.weights_note.clone()).unwrap_or_default(),
                browser: p.browser.to_string(),
                backend: p.load.backend.to_string(),
                backend_fallback_reason: (!p.load.fallback_reasons.is_empty()).then(|| {
                    p.load
                        .fallback_reasons
                        .iter()
                        .map(|r| format!("{}: {}", r.backend, r.reason))
                        .collect::<Vec<_>>()
                        .join("; ")
                }),
                webnn: p
                    .load
                    .webnn_device_type
                    .clone()
                    .map(|device_type| WebnnUse {
                        device_type,
                        graph: p.load.webnn_graph.clone(),
                        ..Default::default()
                    }),
                wasm_threads: p
                    .load
                    .wasm_threads
                    .filter(|_| p.load.backend == crate::backend::Backend::Wasm),
                load_ms: p.load.fetch_ms + p.load.session_create_ms,
                session_create_ms: p.load.session_create_ms,
                graph_optimization: graph_optimization(&p.load),
                first_run_ms: p.first_run_ms,
                memory_added_mb: p.memory_added_kib as f64 / 1024.0,
                ..Default::default()
            };
            (row, p.output.clone())
        });
        if !entry.0.workers.contains(&p.worker) {
            entry.0.workers.push(p.worker.clone());
        }
    }
    // A cell whose every placement was rejected before serving has a row too: it fails.
    for c in report
        .checks
        .iter()
        .filter(|c| c.checks.placements_rejected > 0)
    {
        let key = (
            order(&c.model),
            c.browser.to_string(),
            c.backend.to_string(),
        );
        if key.0 == usize::MAX {
            continue;
        }
        rows.entry(key).or_insert_with(|| {
            let model = &plan.models[order(&c.model)].prepared;
            let row = ResultRow {
                model: c.model.clone(),
                task: model.task.as_str().to_string(),
                weights: model.weights.as_str().to_string(),
                weights_note: model.weights_note.clone(),
                browser: c.browser.to_string(),
                backend: c.backend.to_string(),
                ..Default::default()
            };
            (row, None)
        });
    }
    for ((_, browser, backend), (row, _)) in rows.iter_mut() {
        let mine: Vec<&Sample> = of_cell(&report.samples, &row.model, browser, backend)
            .filter(|s| s.phase == Phase::Measure)
            .collect();
        let stats = aggregate::cell(&mine);
        row.runs = stats.runs;
        row.failed = stats.failed;
        row.latency_ms = stats.latency_ms;
        row.round_trip_ms = stats.round_trip_ms;
        row.throughput_per_s = stats.throughput_per_s;
        row.error = stats.error;
        let native = plan
            .models
            .iter()
            .find(|m| m.prepared.name == row.model)
            .and_then(|m| m.native.as_deref());
        row.cores_used = cores
            .iter()
            .find(|c| {
                c.model == row.model
                    && c.browser.as_str() == browser
                    && c.backend.as_str() == backend
            })
            .map(|c| c.cores);
        // The cores the cell used say which native figure is like for like; without a reading
        // (a routed run, a Grid browser) the page's wasm threads do, else one thread.
        let used = row
            .cores_used
            .or_else(|| row.wasm_threads.map(f64::from))
            .unwrap_or(1.0);
        row.native =
            native.map(|n| super::native::native_baseline(n, row.runs, row.latency_ms.p50, used));
    }
    rows
}

/// The samples of one cell (model x browser x backend).
fn of_cell<'a>(
    samples: &'a [Sample],
    model: &'a str,
    browser: &'a str,
    backend: &'a str,
) -> impl Iterator<Item = &'a Sample> {
    samples
        .iter()
        .filter(move |s| s.model == model && s.browser == browser && s.backend == backend)
}

/// What the pool proved in each cell: placements verified against native or rejected before
/// serving, and warm answers digest-checked. A rejected placement fails its cell, and so does a
/// warm answer served without a digest check (fewer checks than warm answers that succeeded).
fn proven(rows: &mut BTreeMap<CellKey, (ResultRow, Option<CellOutput>)>, report: &PoolReport) {
    for ((_, browser, backend), (row, _)) in rows.iter_mut() {
        let checks = report
            .checks
            .iter()
            .find(|c| {
                c.model == row.model
                    && c.browser.as_str() == browser
                    && c.backend.as_str() == backend
            })
            .map(|c| c.checks.clone())
            .unwrap_or_default();
        let webnn_failure = row.webnn.as_mut().and_then(|w| {
            w.runs = checks.webnn_runs;
            w.runs_dispatched = checks.webnn_runs_dispatched;
            w.failure = w.judge();
            w.failure.clone()
        });
        let c = &mut row.correctness;
        c.placements_verified = checks.placements_verified;
        c.placements_rejected = checks.placements_rejected;
        c.answers_digest_checked = checks.answers_digest_checked;
        let mut problems: Vec<String> = webnn_failure.into_iter().collect();
        if checks.placements_rejected > 0 {
            problems.push(format!(
                "{} placement(s) rejected before serving: the first answer did not match native \
                 onnxruntime",
                checks.placements_rejected
            ));
        }
        let served = of_cell(&report.samples, &row.model, browser, backend)
            .filter(|s| s.ok && s.phase != Phase::First)
            .count() as u64;
        if served > checks.answers_digest_checked {
            problems.push(format!(
                "{served} warm answers served but {} digest-checked",
                checks.answers_digest_checked
            ));
        }
        if !problems.is_empty() {
            c.passed = false;
            c.detail = format!("{}; {}", problems.join("; "), c.detail);
        }
    }
}

/// Correctness per model across its cells: the first run's output judged against native and
/// the other cells, and every warm answer whose digests differed from the verified reference
/// (a `wrong_answer` request) failing its cell.
fn judge(
    plan: &RunPlan,
    rows: &mut BTreeMap<CellKey, (ResultRow, Option<CellOutput>)>,
    samples: &[Sample],
) {
    let keys: Vec<_> = rows.keys().cloned().collect();
    for m in 0..plan.models.len() {
        let mine: Vec<_> = keys.iter().filter(|k| k.0 == m).cloned().collect();
        let outputs: Vec<CellOutput> = mine
            .iter()
            .map(|k| {
                rows[k].1.clone().unwrap_or_else(|| CellOutput {
                    label: format!("{}/{}", k.1, k.2),
                    backend: k.2.clone(),
                    dims: Vec::new(),
                    full: Vec::new(),
                    stats: None,
                    transfer_error: None,
                    golden: None,
                })
            })
            .collect();
        let oracle = plan.models[m]
            .native
            .as_deref()
            .map(|n| correctness::Oracle {
                dims: &n.dims,
                values: &n.output,
            });
        for (k, mut verdict) in mine.iter().zip(correctness::judge(&outputs, oracle)) {
            let Some(r) = rows.get_mut(k) else { continue };
            let wrong = of_cell(samples, &r.0.model, &k.1, &k.2)
                .filter(|s| s.error == ErrorClass::WrongAnswer.as_str())
                .count() as u64;
            if wrong > 0 {
                verdict.passed = false;
                verdict.detail = format!(
                    "{wrong} answer(s) differed from the verified reference; {}",
                    verdict.detail
                );
            }
            verdict.wrong_answers = wrong;
            r.0.correctness = verdict;
        }
    }
}

fn worker_summary(w: &WorkerReport, report: &PoolReport) -> WorkerSummary {
    let st = &w.status;
    WorkerSummary {
        id: w.id.clone(),
        browser: w.kind.to_string(),
        version: st
            .env
            .as_ref()
            .map(|e| e.version.clone())
            .unwrap_or_default(),
        node: st.env.as_ref().and_then(|e| e.node.clone()),
        state: st.lifecycle.as_str().to_string(),
        alive_s: w.alive.as_secs_f64(),
        utilization: w.utilization,
        pss_peak_mb: st.pss_peak_kib as f64 / 1024.0,
        pss_mean_mb: if st.pss_samples > 0 {
            st.pss_sum_kib as f64 / st.pss_samples as f64 / 1024.0
        } else {
            0.0
        },
        models: report
            .placements
            .iter()
            .filter(|p| p.worker == w.id)
            .map(|p| ModelMemory {
                model: p.model.clone(),
                memory_added_mb: p.memory_added_kib as f64 / 1024.0,
            })
            .collect(),
        fault: st.fault.clone(),
        page_load_count: st
            .page_stats
            .as_ref()
            .and_then(|v| v["load_count"].as_u64()),
        runs: st.runs.close(match &st.page_stats {
            Some(v) => runs::counted(v),
            None => Err(match &st.fault {
                Some(f) => runs::CountUnknown::OutOfService(f.clone()),
                None => runs::CountUnknown::NoAnswerAtClose,
            }),
        }),
    }
}
/// The sharding report of a pipeline run: its plan, each shard's compute and loads, each hop,
/// the answers' check, the baseline, and the recovery episodes of workers that held shards.
pub(super) fn sharding(
    p: &PipelinePlan,
    o: &PipelineOutcome,
    requests: Requests,
    recoveries: &[RecoveryRecord],
    concurrency: u32,
) -> ShardingReport {
    let records = o.handle.records();
    let route = o.handle.route();
    let model = &o.sharded;
    let shards = model
        .shards
        .iter()
        .zip(&model.ranges)
        .enumerate()
        .map(|(i, (s, r))| {
            let (earlier, loads) = o.history.get(i).cloned().unwrap_or_default();
            ShardRow {
                shard: i,
                layers: [r.start, r.end],
                parameters: s.parameters,
                onnx_bytes: s.onnx_bytes,
                worker: o.workers.get(i).cloned().unwrap_or_default(),
                earlier_workers: earlier,
                backend: loads.backend,
                wasm_threads: loads.wasm_threads,
                loads: loads.loads,
                load_ms: loads.last_ms,
                compute_ms: records.compute.get(i).and_then(|c| Percentiles::from_ms(c)),
                runs: records.runs.get(i).copied().unwrap_or(0),
            }
        })
        .collect();
    let hops = (0..model.shards.len().saturating_sub(1))
        .map(|i| HopRow {
            from: i,
            to: i + 1,
            bytes: model.shards[i + 1]
                .runtime_inputs
                .first()
                .map_or(0, |x| x.dims.iter().product::<i64>() as u64 * 4),
            route: route.describe().into(),
            transfer_ms: Percentiles::from_ms(&records.hops[i]),
            wait_ms: Percentiles::from_ms(&records.waits[i]),
        })
        .collect();
    let wall = records
        .window
        .map_or(0.0, |(a, b)| b.saturating_duration_since(a).as_secs_f64());
    let throughput_per_s = if wall > 0.0 {
        records.latency.len() as f64 / wall
    } else {
        0.0
    };
    // Like for like: the median over rounds whose two batches ran one right after the other,
    // never the stream's throughput over the baseline's, measured at another time.
    let versus = median_ratio(&o.rounds);
    let events = recoveries
        .iter()
        .filter_map(|r| {
            let s = r.shards.as_ref()?;
            Some(ShardEvent {
                at_ms: r.at_ms,
                strategy: s.strategy.as_str().to_string(),
                shard: s.shard,
                from: r.worker.clone(),
                to: s.to.clone(),
                reloaded: s.reloaded.clone(),
                cause: format!("{}: {}", r.detected_by, r.steps.join("; ")),
                detection_ms: r.fault.map(|_| r.detection_ms as f64),
                fault_kind: r.fault.map(|k| k.as_str().to_string()),
                recovery_ms: r.recovery_ms as f64,
                succeeded: r.succeeded,
            })
        })
        .collect();
    ShardingReport {
        model: model.whole.name.clone(),
        strategy: p.strategy.clone(),
        recovery: p.recovery.as_str().to_string(),
        reasons: o.reasons.clone(),
        shards,
        hops,
        transfer: route.as_str().to_string(),
        transfer_probe: o.probe.clone(),
        requests,
        concurrency,
        latency_ms: Percentiles::from_ms(&records.latency),
        throughput_per_s,
        baseline: o.baseline.clone(),
        rounds: o.rounds.clone(),
        throughput_vs_unsharded: versus.map(|v| v.0),
        throughput_vs_unsharded_range: versus.map(|v| v.1),
        correctness: records.correctness,
        events,
        timeline: records.spans,
    }
}

/// The row's `graph_optimization`: who optimized the session's graph, and how.
fn graph_optimization(load: &crate::pool::worker::LoadReply) -> Option<String> {
    let page = load.graph_optimization.as_deref()?;
    Some(match &load.preoptimize_failed {
        None => format!("native basic, page {page}"),
        Some(why) => format!("page {page} (no native graph: {why})"),
    })
}
