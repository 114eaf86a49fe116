//! A pipeline run's named probes: runs on real workers outside the ledger, each for one
//! decision or one comparison. `cost_balanced` times one layer on every worker; a `transfer:
//! auto` run times one request through each route; the unsharded baseline runs the whole
//! model on one worker beside the pipeline's figures. Must not import `report`, `cli` or
//! terminal crates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::metrics::sharding::{Baseline, TransferProbe};
use crate::metrics::Percentiles;
use crate::models::PreparedModel;
use crate::sharding::transfer::{f32_values, Route};

use super::super::correctness::check_answer;
use super::super::pipeline::ShardedHandle;
use super::super::worker::{OutputMode, Probe, RunFor, Worker};
use super::super::{lock, PoolError};

/// Requests per route when the transfer is chosen by timing both.
pub(super) const TRANSFER_ROUNDS: usize = 2;

/// Each worker's ms per layer: `probe` (a shard of one middle layer) loaded on every worker,
/// one warm-up run each, then `runs` rounds of one run per worker in turn (so a slow moment of
/// the shared machine lands on every worker alike), the median taken, then unloaded. Runs on
/// zeros: the time does not depend on the values. A named probe, outside the ledger.
pub(super) async fn layer_ms(
    workers: &[Arc<Worker>],
    probe: Arc<PreparedModel>,
    runs: usize,
) -> Result<Vec<f64>, PoolError> {
    for w in workers {
        w.load(probe.clone(), None).await?;
    }
    let mut times = vec![Vec::with_capacity(runs); workers.len()];
    for round in 0..=runs {
        for (i, w) in workers.iter().enumerate() {
            let r = w
                .run(
                    &probe.name,
                    OutputMode::None,
                    RunFor::Probe(Probe::LayerTiming),
                )
                .await?;
            if round > 0 {
                times[i].push(r.run_ms);
            }
        }
    }
    for w in workers {
        w.unload(&probe.name).await?;
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect())
}

/// Times one request through each route, one request at a time, best of `TRANSFER_ROUNDS`, in
/// turn (harness, server, harness, ...); sets the faster route on `handle` and returns the
/// times. Named probes, outside the ledger.
pub(super) async fn choose_route(handle: &ShardedHandle) -> TransferProbe {
    let mut best = [None::<f64>; 2];
    for _ in 0..TRANSFER_ROUNDS {
        for (i, route) in [Route::Harness, Route::Server].into_iter().enumerate() {
            if let Some(t) = handle.probe(route).await {
                let ms = t.as_secs_f64() * 1e3;
                best[i] = Some(best[i].map_or(ms, |b: f64| b.min(ms)));
            }
        }
    }
    let chosen = match best {
        [Some(h), Some(s)] if s < h => Route::Server,
        [None, Some(_)] => Route::Server,
        _ => Route::Harness,
    };
    handle.set_route(chosen);
    TransferProbe {
        harness_ms: best[0],
        server_ms: best[1],
    }
}

/// The same model unsharded on the first shard's worker (after its shards are unloaded):
/// `runs` requests at `concurrency`, each returning its whole output the way the pipeline's
/// last output came back, checked against the reference. A named probe, outside the ledger.
///
/// # Errors
/// A load that failed; a failed run is counted in the result instead.
pub(super) async fn unsharded(
    handle: &ShardedHandle,
    whole: &PreparedModel,
    runs: u32,
    concurrency: u32,
) -> Result<Baseline, PoolError> {
    let worker = handle.worker_of(0).ok_or_else(|| PoolError::NoPlacement {
        model: whole.name.clone(),
        reason: "the first shard has no worker".into(),
    })?;
    for s in handle.shards() {
        if worker.backend_of(&s.name).is_some() {
            let _ = worker.unload(&s.name).await;
        }
    }
    let whole = Arc::new(whole.clone());
    let loaded = worker.load(whole.clone(), None).await?;
    // The first run pays first-call costs, as the shards' warm-up did.
    let _ = worker
        .run(
            &whole.name,
            OutputMode::None,
            RunFor::Probe(Probe::Baseline),
        )
        .await;
    let next = AtomicU64::new(0);
    let times = Mutex::new(Vec::new());
    let worst = Mutex::new(0.0f64);
    let started = Instant::now();
    let server = handle.server();
    let route = handle.route();
    let reference = handle.reference();
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
                .run_fed(
                    &whole.name,
                    std::collections::BTreeMap::new(),
                    output_to,
                    RunFor::Probe(Probe::Baseline),
                )
                .await;
            let values = reply.ok().and_then(|r| {
                let out = r.outputs.get(&whole.output_name)?;
                let values = if out.relayed {
                    f32_values(&server.take_relay(&key)?).ok()?
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
