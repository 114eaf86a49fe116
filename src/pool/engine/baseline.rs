//! A pipeline run's comparison with the same model unsharded, like for like. After the stream
//! (never during it: faults may run then), the whole model is loaded on a worker of its own: a
//! fresh page of shard 0's browser kind, on shard 0's backend, whose onnxruntime-web wasm
//! thread count is the sum of the shard pages' (a page fixes its count at its first session,
//! so the shards' pages cannot be reused). Then sharded and unsharded batches of the same
//! size at the run's concurrency alternate in rounds, the side that goes first swapping each
//! round, so a drift of the shared machine lands on both. Every answer on both sides is
//! checked against the native reference. Named probes, outside the ledger. Produces the
//! report's `baseline` and `rounds`; their median ratio is made in `metrics::sharding`. Must
//! not import `report`, `cli` or terminal crates.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::metrics::sharding::{Baseline, Batch, Round, Side};
use crate::metrics::Percentiles;
use crate::models::PreparedModel;
use crate::sharding::transfer::{f32_values, Route};

use super::super::correctness::{check_answer, Reference};
use super::super::events::LaunchReason;
use super::super::pipeline::ShardedHandle;
use super::super::worker::{FedOutputs, OutputMode, Probe, RunFor, Worker};
use super::super::{lock, Pool, PoolError};

/// Most rounds: enough for a median that one slow moment cannot move, few enough that the
/// comparison costs about what the stream did.
const MOST_ROUNDS: u32 = 5;
/// Fewest rounds: the order of the sides must alternate at least once.
const FEWEST_ROUNDS: u32 = 2;

/// The comparison: the unsharded side's record and every round.
#[derive(Debug, Default)]
pub(super) struct Comparison {
    /// The unsharded side, or why it was skipped.
    pub baseline: Baseline,
    /// The rounds, in order.
    pub rounds: Vec<Round>,
}

impl Comparison {
    /// A comparison that did not run, and why.
    pub fn skipped(why: impl Into<String>) -> Self {
        Self {
            baseline: Baseline {
                skipped: Some(why.into()),
                ..Baseline::default()
            },
            rounds: Vec::new(),
        }
    }
}

/// Rounds and requests per batch after a stream of `measured` requests at `concurrency`: a
/// batch keeps every client busy twice over (so the pipeline fills, and fill and drain are not
/// most of it), and each side's batches together are about the stream's size, in 2 to 5
/// rounds.
pub(super) fn round_shape(measured: usize, concurrency: usize) -> (u32, u32) {
    let least = 2 * concurrency.max(1) as u32;
    let measured = measured as u32;
    let rounds = (measured / least).clamp(FEWEST_ROUNDS, MOST_ROUNDS);
    (rounds, least.max(measured.div_ceil(rounds)))
}

/// The sum of the wasm threads of the pages serving the shards now (each page counted once,
/// however many shards it holds), and shard 0's worker and backend.
///
/// # Errors
/// Why the comparison cannot be made like for like, as the report says it.
fn sharded_side(handle: &ShardedHandle) -> Result<(u32, Arc<Worker>, Backend), SideUnknown> {
    let shards = handle.shards();
    let mut pages: BTreeMap<String, u32> = BTreeMap::new();
    let mut first = None;
    for (k, s) in shards.iter().enumerate() {
        let w = handle
            .worker_of(k)
            .ok_or(SideUnknown::NoWorker { shard: k })?;
        let threads = w
            .wasm_threads_of(&s.name)
            .ok_or_else(|| SideUnknown::ThreadsUnsaid {
                shard: k,
                worker: w.id.clone(),
            })?;
        pages.insert(w.id.clone(), threads);
        if k == 0 {
            let backend = w
                .backend_of(&s.name)
                .ok_or_else(|| SideUnknown::NotLoaded {
                    worker: w.id.clone(),
                })?;
            first = Some((w, backend));
        }
    }
    let (w, backend) = first.ok_or(SideUnknown::NoShard)?;
    Ok((pages.values().sum(), w, backend))
}

/// Why the sharded side's threads, first worker or backend are not known.
#[derive(Debug, thiserror::Error)]
enum SideUnknown {
    #[error("shard {shard} has no worker")]
    NoWorker { shard: usize },
    #[error("the page of shard {shard} ({worker}) did not say its wasm threads")]
    ThreadsUnsaid { shard: usize, worker: String },
    #[error("shard 0 is not loaded on {worker}")]
    NotLoaded { worker: String },
    #[error("the pipeline has no shard")]
    NoShard,
}

/// Runs the comparison; see the module doc. `measured` is the stream's measured requests.
/// A failure to launch or load the baseline skips it with the reason.
pub(super) async fn compare(
    pool: &Pool,
    handle: &ShardedHandle,
    whole: &PreparedModel,
    measured: usize,
    concurrency: usize,
    cancel: &CancellationToken,
) -> Comparison {
    let (threads, first, backend) = match sharded_side(handle) {
        Ok(s) => s,
        Err(why) => return Comparison::skipped(why.to_string()),
    };
    let why = LaunchReason::Baseline(whole.name.clone());
    let worker = match pool.launch_with_threads(first.kind, threads, why).await {
        Ok(w) => w,
        Err(PoolError::NoRoom { max, counted }) => {
            return Comparison::skipped(format!(
                "no room for its own worker: max_connections is {max} and the pool has {counted} (the baseline's browser counts against it, as every browser does)"
            ))
        }
        Err(e) => return Comparison::skipped(format!("launching its worker failed: {e}")),
    };
    let whole = Arc::new(whole.clone());
    let loaded = match worker.load(whole.clone(), Some(vec![backend])).await {
        Ok(l) => l,
        Err(e) => {
            return Comparison::skipped(format!(
                "the unsharded model did not load on {} ({backend}): {e}",
                worker.id
            ))
        }
    };
    let page_threads = loaded.reply.wasm_threads;
    if page_threads != Some(threads) {
        return Comparison::skipped(format!(
            "its page on {} runs {} wasm threads, not the {threads} of the shard pages together: unlike terms",
            worker.id,
            page_threads.map_or_else(|| "an unknown number of".into(), |n| n.to_string())
        ));
    }
    // The first run pays first-call costs, as the shards' warm-up did.
    let _ = worker
        .run(
            &whole.name,
            OutputMode::None,
            RunFor::Probe(Probe::Baseline),
        )
        .await;
    let (count, per_batch) = round_shape(measured, concurrency);
    let reference = handle.reference();
    let sharded = move |_: u32| async move {
        let a = handle.unrecorded().await.ok()?;
        Some((a.dims, a.output))
    };
    let (w, m): (&Worker, &PreparedModel) = (&worker, &whole);
    let unsharded = move |i: u32| whole_once(handle, w, m, i);
    let mut rounds = Vec::new();
    let mut latencies = Vec::new();
    for round in 0..count {
        let first = Side::first_in(round);
        let mut s = None;
        let mut u = None;
        for side in [first, other(first)] {
            if cancel.is_cancelled() {
                break;
            }
            match side {
                Side::Sharded => {
                    s = Some(
                        batch(pool, per_batch, concurrency, reference, sharded)
                            .await
                            .0,
                    );
                }
                Side::Unsharded => {
                    let (b, ms) = batch(pool, per_batch, concurrency, reference, unsharded).await;
                    latencies.extend(ms);
                    u = Some(b);
                }
            }
        }
        let (Some(sharded), Some(unsharded)) = (s, u) else {
            // Interrupted: a round with one side is no comparison.
            break;
        };
        rounds.push(Round {
            round,
            first,
            ratio: Round::ratio_of(&sharded, &unsharded),
            sharded,
            unsharded,
        });
    }
    let sum = |f: fn(&Batch) -> u32| rounds.iter().map(|r| u64::from(f(&r.unsharded))).sum();
    let right: u64 = rounds
        .iter()
        .map(|r| u64::from(r.unsharded.checked - r.unsharded.mismatched))
        .sum();
    let wall_s: f64 = rounds
        .iter()
        .map(|r| (r.unsharded.end_ms - r.unsharded.start_ms) / 1e3)
        .sum();
    Comparison {
        baseline: Baseline {
            worker: Some(worker.id.clone()),
            backend: Some(loaded.reply.backend.to_string()),
            wasm_threads: page_threads,
            runs: sum(|b| b.requests),
            checked: sum(|b| b.checked),
            mismatched: sum(|b| b.mismatched),
            latency_ms: Percentiles::from_ms(&latencies),
            throughput_per_s: if wall_s > 0.0 {
                right as f64 / wall_s
            } else {
                0.0
            },
            max_abs_diff: rounds
                .iter()
                .filter_map(|r| r.unsharded.max_abs_diff)
                .reduce(f64::max),
            skipped: None,
        },
        rounds,
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Sharded => Side::Unsharded,
        Side::Unsharded => Side::Sharded,
    }
}

/// One request of the whole model on the baseline's worker, its output coming back the way
/// the pipeline's last output does (through the relay on [`Route::Server`]): its shape and
/// values, none when it failed.
async fn whole_once(
    handle: &ShardedHandle,
    worker: &Worker,
    whole: &PreparedModel,
    i: u32,
) -> Option<(Vec<i64>, Vec<f32>)> {
    let server = handle.server();
    let key = format!("baseline-{}-{i}", NONCE.fetch_add(1, Ordering::Relaxed));
    let mut output_to = BTreeMap::new();
    if handle.route() == Route::Server {
        output_to.insert(whole.output_name.clone(), server.relay_path(&key));
    }
    let reply = worker
        .run_fed(
            &whole.name,
            BTreeMap::new(),
            FedOutputs::Relay(output_to),
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
    let _ = server.take_relay(&key);
    values
}

/// Makes the baseline's relay slot keys unique across batches.
static NONCE: AtomicU64 = AtomicU64::new(0);

/// `n` requests of `one` at `concurrency`, each answer checked against `reference`: the batch
/// and the ms of each right answer.
async fn batch<F, Fut>(
    pool: &Pool,
    n: u32,
    concurrency: usize,
    reference: &Reference,
    one: F,
) -> (Batch, Vec<f64>)
where
    F: Fn(u32) -> Fut,
    Fut: Future<Output = Option<(Vec<i64>, Vec<f32>)>>,
{
    let next = AtomicU64::new(0);
    let seen = Mutex::new((Batch::default(), Vec::new()));
    let client = || async {
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= u64::from(n) {
                break;
            }
            let t = Instant::now();
            let answer = one(i as u32).await;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let Some((dims, values)) = answer else {
                continue;
            };
            let (diff, ok, _) = check_answer(reference, &dims, &values);
            let mut s = lock(&seen);
            let (b, times) = &mut *s;
            b.checked += 1;
            b.max_abs_diff = Some(b.max_abs_diff.map_or(diff, |d| d.max(diff)));
            if ok {
                times.push(ms);
            } else {
                b.mismatched += 1;
            }
        }
    };
    let since = |t: Instant| t.saturating_duration_since(pool.started()).as_secs_f64() * 1e3;
    let start = Instant::now();
    futures::future::join_all((0..concurrency.max(1)).map(|_| client())).await;
    let end = Instant::now();
    let (mut b, times) = seen.into_inner().unwrap_or_else(|e| e.into_inner());
    b.requests = n;
    b.start_ms = since(start);
    b.end_ms = since(end);
    let wall_s = end.saturating_duration_since(start).as_secs_f64();
    b.throughput_per_s = if wall_s > 0.0 {
        times.len() as f64 / wall_s
    } else {
        0.0
    };
    (b, times)
}

#[cfg(test)]
mod tests {
    use super::round_shape;

    #[test]
    fn rounds_take_about_the_streams_requests_in_two_to_five_rounds() {
        // A short run (bert, 4 requests at 3 in flight): 2 rounds of 6, each batch still
        // twice the concurrency.
        assert_eq!(round_shape(4, 3), (2, 6));
        // 20 requests at 3: 3 rounds of 7 (21, about the stream).
        assert_eq!(round_shape(20, 3), (3, 7));
        // A long run: 5 rounds, the stream's requests spread over them.
        assert_eq!(round_shape(1000, 3), (5, 200));
        // Nothing measured (or concurrency 0 given): still 2 rounds of at least 2.
        assert_eq!(round_shape(0, 0), (2, 2));
    }
}
