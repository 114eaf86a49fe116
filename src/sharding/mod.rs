//! Cross-browser model sharding: a model's layers cut into shards (`crate::models::prepare_shards`),
//! planned onto workers ([`plan`]), run as a pipeline ([`ShardedModelExecution`]) with every
//! answer checked against the unsharded model run by native onnxruntime, and failed shards
//! recovered (`retry_failed_shards`, `reassign_shards`, `full_retry`).
//!
//! Files: `plan` (pure planner), `exec` (workers, pipeline, recovery), this file (the request
//! stream with its independent ledger, fault injection, the unsharded baseline and the report).
//! Rust API: `ShardedModelExecution::new(sharded, setup)`, `.initialize()`, then
//! `.run_inference(Input::Prepared)`; [`stream`] drives a workload through it.
//! Must not import `cli` or `report`.

mod exec;
pub mod plan;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use exec::{Route, ShardError, ShardSetup, ShardedAnswer, ShardedModelExecution};
pub use plan::{plan, Plan, PlanError, PlanRequest};

use crate::faults::{FaultSpec, Kind};
use crate::metrics::sharding::{Baseline, HopRow, ShardCorrectness, ShardRow, ShardingReport};
use crate::metrics::{FaultRecord, Percentiles, Phase, Requests, Sample};
use crate::models::Task;
use crate::pool::ledger::{Ledger, Ran, RequestEnd};
use crate::pool::worker::OutputMode;
use crate::pool::ErrorClass;
use crate::scenario::FaultTarget;

/// The reference every answer is checked against: the unsharded model's output from native
/// onnxruntime.
#[derive(Debug, Clone)]
pub struct Reference {
    /// Its shape.
    pub dims: Vec<i64>,
    /// Every value.
    pub output: Vec<f32>,
    /// The model's task (a text_generation answer must also have the same argmax).
    pub task: Task,
}

/// One fault of a sharded run.
#[derive(Debug, Clone)]
pub struct ShardFault {
    /// After the stream starts.
    pub at: Duration,
    /// What.
    pub kind: Kind,
    /// Whom: a shard's worker, a worker id or a browser kind.
    pub target: FaultTarget,
    /// Its settings (duration of a hang).
    pub spec: FaultSpec,
}

/// The workload of a sharded run.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Unmeasured requests first.
    pub warmup: u32,
    /// Measured requests (when no duration is given).
    pub iterations: u32,
    /// Measured time instead of a count.
    pub duration: Option<Duration>,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// A request that is still retrying past this fails with `deadline`.
    pub request_timeout: Duration,
    /// Faults to inject.
    pub faults: Vec<ShardFault>,
    /// Cancelled: no new request starts (those in flight finish).
    pub cancel: tokio_util::sync::CancellationToken,
}

/// What the stream did.
#[derive(Debug, Default)]
pub struct StreamOutcome {
    /// Independent ledger counts.
    pub requests: Requests,
    /// One sample per request.
    pub samples: Vec<Sample>,
    /// End-to-end ms of measured, successful requests.
    pub latency: Vec<f64>,
    /// Measured requests per second of wall time.
    pub throughput_per_s: f64,
    /// Every answer against the reference.
    pub correctness: ShardCorrectness,
    /// Faults injected.
    pub faults: Vec<FaultRecord>,
    /// Ledger events (lost tickets).
    pub events: Vec<crate::pool::PoolEvent>,
}

/// Checks `got` against the reference: (max abs diff, within tolerance, argmax equal).
pub fn check_answer(reference: &Reference, dims: &[i64], got: &[f32]) -> (f64, bool, Option<bool>) {
    if dims != reference.dims.as_slice() {
        return (f64::INFINITY, false, Some(false));
    }
    let (diff, close) = crate::oracle::allclose(got, &reference.output);
    let argmax = (reference.task == Task::TextGeneration).then(|| {
        let v = *reference.dims.last().unwrap_or(&1) as usize;
        got.chunks(v.max(1))
            .zip(reference.output.chunks(v.max(1)))
            .all(|(a, b)| argmax(a) == argmax(b))
    });
    (diff, close && argmax != Some(false), argmax)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Drives `spec` through `exec`: `concurrency` clients in a closed loop, each request ticketed
/// in an independent ledger before it starts, each answer checked against `reference`, faults
/// injected at their times.
pub async fn stream(
    exec: &ShardedModelExecution,
    spec: &StreamSpec,
    reference: &Reference,
) -> StreamOutcome {
    let model = exec.model().whole.name.clone();
    let t0 = exec.start_clock();
    let ledger = Mutex::new(Ledger::new(t0));
    let next = AtomicU64::new(0);
    let measured_end = spec
        .duration
        .map(|d| (d, std::sync::OnceLock::<Instant>::new()));
    let correctness = Mutex::new(ShardCorrectness {
        passed: true,
        atol: crate::oracle::ATOL,
        reference: format!(
            "the unsharded {model} run by native onnxruntime {} on the same input",
            crate::oracle::ORT_VERSION
        ),
        argmax_mismatched: (reference.task == Task::TextGeneration).then_some(0),
        ..ShardCorrectness::default()
    });
    let latency = Mutex::new(Vec::new());
    let window = Mutex::new((None::<Instant>, None::<Instant>));
    let faults = Mutex::new(Vec::new());

    let client = || async {
        loop {
            if spec.cancel.is_cancelled() {
                break;
            }
            let i = next.fetch_add(1, Ordering::SeqCst);
            let phase = if i < u64::from(spec.warmup) {
                Phase::Warmup
            } else {
                Phase::Measure
            };
            if phase == Phase::Measure {
                match &measured_end {
                    Some((d, start)) => {
                        let s = *start.get_or_init(Instant::now);
                        if s.elapsed() >= *d {
                            break;
                        }
                    }
                    None if i >= u64::from(spec.warmup + spec.iterations) => break,
                    None => {}
                }
            }
            let ticket = lock(&ledger).issue(&model, phase);
            let scheduled = Instant::now();
            if phase == Phase::Measure {
                let mut w = lock(&window);
                w.0.get_or_insert(scheduled);
            }
            let result = exec
                .run_request(i, phase == Phase::Measure, exec.route())
                .await;
            let result = match result {
                Ok(_) if scheduled.elapsed() > spec.request_timeout => Err(ShardError {
                    class: ErrorClass::Deadline,
                    message: format!(
                        "answered after {:.1} s, past the request timeout of {:.1} s",
                        scheduled.elapsed().as_secs_f64(),
                        spec.request_timeout.as_secs_f64()
                    ),
                }),
                other => other,
            };
            let ms = scheduled.elapsed().as_secs_f64() * 1e3;
            let (ran, outcome) = match &result {
                Ok(a) => {
                    let (diff, ok, same_argmax) = check_answer(reference, &a.dims, &a.output);
                    let mut c = lock(&correctness);
                    c.checked += 1;
                    c.max_abs_diff = c.max_abs_diff.max(diff);
                    if !ok {
                        c.mismatched += 1;
                        c.passed = false;
                    }
                    if same_argmax == Some(false) {
                        *c.argmax_mismatched.get_or_insert(0) += 1;
                    }
                    if phase == Phase::Measure {
                        lock(&latency).push(ms);
                        lock(&window).1 = Some(Instant::now());
                    }
                    (
                        Some((a.last_worker.clone(), a.last_browser, a.last_backend)),
                        Ok(ms),
                    )
                }
                Err(e) => (None, Err(e.class)),
            };
            lock(&ledger).request(RequestEnd {
                ticket,
                model: &model,
                ran: ran.as_ref().map(|(w, b, k)| Ran {
                    worker: w,
                    browser: *b,
                    backend: *k,
                }),
                phase,
                scheduled,
                issued: scheduled,
                attempt: 1,
                outcome,
            });
        }
    };
    let injector = async {
        for f in &spec.faults {
            let wait = (t0 + f.at).saturating_duration_since(Instant::now());
            tokio::time::sleep(wait).await;
            if next.load(Ordering::SeqCst) >= u64::from(spec.warmup + spec.iterations)
                && spec.duration.is_none()
            {
                // The stream is over: a fault now would hit nothing.
                lock(&faults).push(FaultRecord {
                    kind: f.kind.as_str().to_string(),
                    at_ms: t0.elapsed().as_millis() as u64,
                    target: String::new(),
                    injected: false,
                    detail: "not injected: every request had been issued".into(),
                });
                continue;
            }
            let worker = target_worker(exec, &f.target);
            let at_ms = t0.elapsed().as_millis() as u64;
            let record = match worker {
                Some(w) => {
                    exec.fault_injected(&w.id, f.kind.as_str());
                    let r = crate::pool::injector::inject(&w, f.kind, &f.spec).await;
                    FaultRecord {
                        kind: f.kind.as_str().to_string(),
                        at_ms,
                        target: w.id.clone(),
                        injected: r.is_ok(),
                        detail: match r {
                            Ok(d) => d,
                            Err(e) => e.to_string(),
                        },
                    }
                }
                None => FaultRecord {
                    kind: f.kind.as_str().to_string(),
                    at_ms,
                    target: format!("{:?}", f.target),
                    injected: false,
                    detail: "no worker matches the target".into(),
                },
            };
            lock(&faults).push(record);
        }
    };
    let clients = futures::future::join_all((0..spec.concurrency.max(1)).map(|_| client()));
    let ((), ()) = futures::future::join(
        async {
            clients.await;
        },
        injector,
    )
    .await;

    let report = ledger
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_report(Vec::new(), 0);
    let latency = std::mem::take(&mut *lock(&latency));
    let (first, last) = *lock(&window);
    let wall = match (first, last) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let mut correctness = lock(&correctness).clone();
    if correctness.checked == 0 {
        correctness.passed = false;
    }
    StreamOutcome {
        requests: report.requests,
        samples: report.samples,
        throughput_per_s: if wall > 0.0 {
            latency.len() as f64 / wall
        } else {
            0.0
        },
        latency,
        correctness,
        faults: faults.into_inner().unwrap_or_default(),
        events: report.events,
    }
}

/// The worker a fault target names now.
fn target_worker(
    exec: &ShardedModelExecution,
    target: &FaultTarget,
) -> Option<Arc<crate::pool::Worker>> {
    let (workers, _) = exec.workers();
    match target {
        FaultTarget::Shard(n) => {
            let n = *n as usize;
            (n < exec.model().shards.len()).then(|| exec.worker_of(n))
        }
        FaultTarget::Worker(id) => workers.into_iter().find(|w| &w.id == id),
        FaultTarget::Browser(b) => workers.into_iter().find(|w| w.kind == *b),
        FaultTarget::Random | FaultTarget::Model(_) => None,
    }
}

/// Times one request through each route, one request at a time, best of `rounds`, in turn
/// (harness, server, harness, ...); sets the faster route on `exec` and returns the times.
pub async fn choose_route(
    exec: &ShardedModelExecution,
    rounds: usize,
) -> crate::metrics::sharding::TransferProbe {
    let mut best = [None::<f64>; 2];
    for _ in 0..rounds {
        for (i, route) in [Route::Harness, Route::Server].into_iter().enumerate() {
            let t = Instant::now();
            if exec.run_request(u64::MAX, false, route).await.is_ok() {
                let ms = t.elapsed().as_secs_f64() * 1e3;
                best[i] = Some(best[i].map_or(ms, |b: f64| b.min(ms)));
            }
        }
    }
    let chosen = match best {
        [Some(h), Some(s)] if s < h => Route::Server,
        [None, Some(_)] => Route::Server,
        _ => Route::Harness,
    };
    exec.set_route(chosen);
    crate::metrics::sharding::TransferProbe {
        harness_ms: best[0],
        server_ms: best[1],
    }
}

/// The same model unsharded on one worker (`worker`, after its shards are unloaded): `runs`
/// requests at `concurrency`, each returning its whole output, checked against `reference`.
///
/// # Errors
/// A load that failed; a failed run is counted in the result instead.
pub async fn baseline(
    exec: &ShardedModelExecution,
    runs: u32,
    concurrency: u32,
    reference: &Reference,
) -> Result<Baseline, ShardError> {
    let worker = exec.worker_of(0);
    let whole = Arc::new(exec.model().whole.clone());
    for s in &exec.model().shards {
        if worker.backend_of(&s.name).is_some() {
            let _ = worker.unload(&s.name).await;
        }
    }
    let loaded = worker
        .load(whole.clone(), None)
        .await
        .map_err(|e| ShardError {
            class: ErrorClass::of(&e),
            message: format!("loading the unsharded {} on {}: {e}", whole.name, worker.id),
        })?;
    // The first run pays first-call costs, as the shards' warm-up did.
    let _ = worker.run(&whole.name, OutputMode::None).await;
    let next = AtomicU64::new(0);
    let times = Mutex::new(Vec::new());
    let worst = Mutex::new(0.0f64);
    let started = Instant::now();
    // Its output comes back the way the sharded pipeline's last output did, so the two are
    // compared on the same transfer.
    let server = exec.server();
    let route = exec.route();
    let client = || async {
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= u64::from(runs) {
                break;
            }
            let key = format!("baseline-{i}");
            let mut output_to = std::collections::BTreeMap::new();
            if route == Route::Server {
                output_to.insert(whole.output_name.clone(), server.relay_path(&key));
            }
            let t = Instant::now();
            let reply = worker
                .run_fed(&whole.name, std::collections::BTreeMap::new(), output_to)
                .await;
            let values = reply.ok().and_then(|r| {
                let out = r.outputs.get(&whole.output_name)?;
                let values = if out.relayed {
                    exec::f32_values(&server.take_relay(&key)?).ok()?
                } else {
                    out.full().ok()?
                };
                Some((out.dims.clone(), values))
            });
            if let Some((dims, values)) = values {
                let ms = t.elapsed().as_secs_f64() * 1e3;
                let (diff, _, _) = check_answer(reference, &dims, &values);
                let mut w = lock(&worst);
                *w = w.max(diff);
                lock(&times).push(ms);
            }
            let _ = server.take_relay(&key);
        }
    };
    futures::future::join_all((0..concurrency.max(1)).map(|_| client())).await;
    let wall = started.elapsed().as_secs_f64();
    let times = std::mem::take(&mut *lock(&times));
    let _ = worker.unload(&whole.name).await;
    Ok(Baseline {
        worker: Some(worker.id.clone()),
        backend: Some(loaded.reply.backend.to_string()),
        runs: times.len() as u64,
        throughput_per_s: times.len() as f64 / wall.max(1e-9),
        latency_ms: Percentiles::from_ms(&times),
        max_abs_diff: Some(worst.into_inner().unwrap_or(f64::NAN)),
        skipped: None,
    })
}

/// The report of a sharded run from what the execution and the stream recorded.
pub fn report(
    exec: &ShardedModelExecution,
    strategy: &str,
    reasons: Vec<String>,
    outcome: &StreamOutcome,
    concurrency: u32,
    baseline: Baseline,
) -> ShardingReport {
    let model = exec.model();
    let placement = exec.placement_report();
    let rec = exec.records();
    let shards = model
        .shards
        .iter()
        .zip(&model.ranges)
        .enumerate()
        .map(|(i, (s, r))| {
            let (worker, earlier, (loads, load_ms, backend)) = placement[i].clone();
            ShardRow {
                shard: i,
                layers: [r.start, r.end],
                parameters: s.parameters,
                onnx_bytes: s.onnx_bytes,
                worker,
                earlier_workers: earlier,
                backend,
                loads,
                load_ms,
                compute_ms: Percentiles::from_ms(&rec.compute[i]),
                runs: rec.runs[i],
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
            route: exec.route().describe().into(),
            transfer_ms: Percentiles::from_ms(&rec.hops[i]),
            wait_ms: Percentiles::from_ms(&rec.waits[i]),
        })
        .collect();
    let throughput_vs_unsharded = (baseline.throughput_per_s > 0.0
        && outcome.throughput_per_s > 0.0)
        .then(|| outcome.throughput_per_s / baseline.throughput_per_s);
    ShardingReport {
        model: model.whole.name.clone(),
        strategy: strategy.to_string(),
        recovery: String::new(),
        reasons,
        shards,
        hops,
        transfer: match exec.route() {
            Route::Harness => "harness".into(),
            Route::Server => "server".into(),
        },
        transfer_probe: None,
        requests: outcome.requests,
        concurrency,
        latency_ms: Percentiles::from_ms(&outcome.latency),
        throughput_per_s: outcome.throughput_per_s,
        baseline,
        throughput_vs_unsharded,
        correctness: outcome.correctness.clone(),
        events: rec.events.clone(),
        timeline: rec.spans.clone(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Reference {
        // Two positions over a vocabulary of 3.
        Reference {
            dims: vec![1, 2, 3],
            output: vec![0.1, 0.9, 0.0, 0.5, 0.2, 0.3],
            task: Task::TextGeneration,
        }
    }

    #[test]
    fn an_answer_matches_within_tolerance_and_with_the_same_argmax() {
        let r = logits();
        let close: Vec<f32> = r.output.iter().map(|v| v + 1e-4).collect();
        assert!(check_answer(&r, &r.dims, &close).1);
        assert_eq!(check_answer(&r, &r.dims, &close).2, Some(true));
    }

    #[test]
    fn an_answer_off_by_more_than_the_tolerance_or_another_shape_fails() {
        let r = logits();
        let mut off = r.output.clone();
        off[5] += 0.01;
        let (diff, ok, argmax) = check_answer(&r, &r.dims, &off);
        assert!(!ok && (diff - 0.01).abs() < 1e-6, "{diff}");
        assert_eq!(argmax, Some(true));
        assert!(!check_answer(&r, &[1, 3, 2], &r.output).1);
    }

    #[test]
    fn another_argmax_fails_a_decoder_answer_even_within_tolerance() {
        let mut r = logits();
        r.output = vec![0.5, 0.5004, 0.0, 0.0, 0.0, 0.0];
        let swapped = vec![0.5004, 0.5, 0.0, 0.0, 0.0, 0.0];
        let (_, ok, argmax) = check_answer(&r, &r.dims, &swapped);
        assert_eq!(argmax, Some(false));
        assert!(!ok);
        r.task = Task::TextEmbedding;
        assert!(
            check_answer(&r, &r.dims, &swapped).1,
            "no argmax check for an encoder"
        );
    }
}
