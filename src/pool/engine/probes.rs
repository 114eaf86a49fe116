//! A pipeline run's named probes: runs on real workers outside the ledger, each for one
//! decision. `cost_balanced` times one layer on every worker; a `transfer: auto` run times one
//! request through each route. (The comparison with the unsharded model is `baseline.rs`.)
//! Must not import `report`, `cli` or terminal crates.

use std::sync::Arc;

use crate::backend::Backend;
use crate::metrics::sharding::TransferProbe;
use crate::models::PreparedModel;
use crate::sharding::transfer::Route;

use super::super::pipeline::ShardedHandle;
use super::super::worker::{OutputMode, Probe, RunFor, Worker};
use super::super::PoolError;

/// Requests per route when the transfer is chosen by timing both.
pub(super) const TRANSFER_ROUNDS: usize = 2;

/// Each worker's ms per layer: `probe` (a shard of one middle layer) loaded on every worker
/// (on its backend of `backends`, where one is given), one warm-up run each, then `runs` rounds of one run per worker in turn (so a slow moment of
/// the shared machine lands on every worker alike), the median taken, then unloaded. Runs on
/// zeros: the time does not depend on the values. A named probe, outside the ledger.
pub async fn layer_ms(
    workers: &[Arc<Worker>],
    backends: &[Option<Backend>],
    probe: Arc<PreparedModel>,
    runs: usize,
) -> Result<Vec<f64>, PoolError> {
    for (k, w) in workers.iter().enumerate() {
        let on = backends.get(k).copied().flatten().map(|b| vec![b]);
        w.load(probe.clone(), on).await?;
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
