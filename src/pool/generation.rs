//! [`GenerationHandle`]: a language model writing text through the pool, its decoder placed as a
//! pipeline (one shard or several, each on its own worker). A generation is one request of the
//! ledger, a stream of steps through the same path as any sharded request: each step runs the
//! new tokens through every shard in order, each page keeping its layers' key/value cache
//! (`carry`), only the hidden state crossing between shards.
//!
//! The handle keeps every shard's boundary input for every position (the tokens for the first,
//! the hidden state coming in for the others), so a shard whose cache is gone can be rebuilt
//! alone. A shard call that fails with a transient class starts (or waits for) the pool's
//! recovery episode of its worker, whose step for a shard is the pipeline's `ShardRecovery`.
//! After it, every shard whose cache is no longer where the handle left it (another worker, a
//! new browser, a reload: its load count moved) is run again over all its positions from its
//! kept inputs, and the step goes on. `retry_failed_shards` and `reassign_shards` so rebuild only
//! the failed worker's shards; `full_retry` reloads every shard, so every cache is rebuilt (the
//! whole sequence prefilled again). Must not import `report`, `cli` or terminal crates.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::faults::{Choice, FaultSpec, Kind, Target, When};
use crate::metrics::Phase;
use crate::models::decoder::{
    causal_bias, past_key, past_value, present_key, present_value, ATTENTION_BIAS, CACHE_SLOT,
    MASKED, POSITION_IDS,
};
use crate::models::{HIDDEN_IN, HIDDEN_OUT};
use crate::sharding::transfer::decode_f32;

use super::attribution::FaultNote;
use super::error::{AnswerFault, ShardError};
use super::ledger::{Ran, RequestEnd, Ticket};
use super::pipeline::{recover_shard, serving_worker};
use super::pipelines::PipelineId;
use super::placements::ModelEntry;
use super::worker::{FedOutputs, Feed, RunFor, RunReply, Worker};
use super::{injector, ErrorClass, Pool};

mod write;

pub use write::{Writing, Written};

/// The input of the first shard: the new tokens.
const INPUT_IDS: &str = "input_ids";
/// The last shard's output: the last new position's logits.
const LOGITS: &str = "logits";

/// Who holds a shard's cache, and how many positions it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    worker: String,
    generation: u64,
    loads: u32,
    positions: usize,
}

/// A recovery a step waited for.
#[derive(Debug, Clone, PartialEq)]
pub struct Stall {
    /// The shard whose call failed.
    pub shard: usize,
    /// The worker it failed on, or that held its cache (empty if none did).
    pub worker: String,
    /// How its call failed; `None` when the step found the shard out of service (its recovery
    /// started by the pool's own watch) and waited for it.
    pub class: Option<ErrorClass>,
    /// The failing call's send (or the wait's start) to the step's logits back, ms: what the
    /// generation stalled.
    pub stalled_ms: f64,
}

/// One step's record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepRecord {
    /// New tokens in (the prompt's length for the prefill, else 1).
    pub tokens: usize,
    /// Sent to logits back, measured by the harness, ms.
    pub wall_ms: f64,
    /// Per shard: the page's `session.run` ms of its run that counted (0 if it had run this
    /// step before a recovery and did not run again).
    pub compute_ms: Vec<f64>,
    /// Per hop (shard k -> k+1): the end of shard k's run to the start of shard k+1's, by the
    /// pages' clocks, ms: encoding, two transfers, the harness and decoding.
    pub hop_ms: Vec<Option<f64>>,
    /// Shards whose cache was rebuilt in this step, and the positions each ran again.
    pub rebuilt: Vec<(usize, usize)>,
    /// The recoveries it waited for.
    pub stalls: Vec<Stall>,
}

impl StepRecord {
    /// A decode step that neither waited for a recovery nor rebuilt a cache: the steps every
    /// figure is taken over.
    pub fn steady(&self) -> bool {
        self.stalls.is_empty() && self.rebuilt.is_empty()
    }
}

/// One step's answer.
#[derive(Debug, Clone)]
pub struct Step {
    /// The last new position's logits.
    pub logits: Vec<f32>,
    /// What it took.
    pub record: StepRecord,
}

/// A decoder placed as a pipeline, and the sequence it is writing. Not `Clone`: one generation
/// at a time.
#[derive(Debug)]
pub struct GenerationHandle {
    pool: Pool,
    id: PipelineId,
    model: String,
    entries: Vec<Arc<ModelEntry>>,
    /// The layers of each shard.
    layers: Vec<Range<usize>>,
    /// An empty cache's dims, `[1, KV, 0, dh]`.
    empty: Vec<i64>,
    /// The hidden size.
    hidden: usize,
    /// Every position's token: the first shard's boundary input.
    tokens: Vec<u32>,
    /// Per shard after the first: its boundary input for every position, `[positions, D]`.
    boundary: Vec<Vec<f32>>,
    /// Per shard: who holds its cache.
    holders: Vec<Option<Holder>>,
    /// The fixed-capacity graphs' slots (`None`: the caches grow).
    capacity: Option<usize>,
}

impl GenerationHandle {
    /// The handle of pipeline `id` of `pool`: shards holding `layers`, whose caches are
    /// `[1, kv_heads, T, head_dim]` and whose hidden state is `hidden` wide.
    pub fn new(
        pool: Pool,
        id: PipelineId,
        layers: Vec<Range<usize>>,
        (kv_heads, head_dim): (usize, usize),
        hidden: usize,
    ) -> Self {
        let entries = pool.pipelines().shards(id);
        let n = entries.len();
        Self {
            model: pool.pipelines().model(id),
            pool,
            id,
            entries,
            layers,
            empty: vec![1, kv_heads as i64, 0, head_dim as i64],
            hidden,
            tokens: Vec::new(),
            boundary: vec![Vec::new(); n],
            holders: vec![None; n],
            capacity: None,
        }
    }

    /// The handle for fixed-capacity graphs (WebNN needs static shapes): every cache holds
    /// `capacity` slots and one position runs at a time ([`Self::write`] feeds the prompt
    /// token by token); a shard whose cache is gone cannot be rebuilt yet.
    pub fn fixed(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// The fixed-capacity graphs' slots, if the shards are that variant.
    pub fn capacity(&self) -> Option<usize> {
        self.capacity
    }

    /// Per shard: the worker serving it now (empty when none).
    pub fn workers(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| {
                self.pool
                    .placements()
                    .serving(e)
                    .first()
                    .map(|w| w.id.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Per shard: its loads so far (the last one's ms, its page's wasm threads).
    pub fn loads(&self) -> Vec<super::ShardLoads> {
        self.pool
            .pipelines()
            .history(self.id)
            .into_iter()
            .map(|(_, loads)| loads)
            .collect()
    }

    /// Per shard: its worker's browser kind and the backend the shard runs on, if served.
    pub fn places(&self) -> Vec<Option<(BrowserKind, Backend)>> {
        self.entries
            .iter()
            .map(|e| {
                let w = self.pool.placements().serving(e).first().cloned()?;
                Some((w.kind, w.backend_of(e.name()).unwrap_or(Backend::Wasm)))
            })
            .collect()
    }

    /// Issues the generation's ticket: one measured request of the ledger, started now.
    pub fn ticket(&self) -> Ticket {
        let pool = &self.pool;
        let t = pool.ledger().issue(&self.model, Phase::Measure);
        pool.ledger().start();
        t
    }

    /// Closes `ticket` of `phase`: ok after `ms`, or failed with `class`; `attempts` counts
    /// the first and every recovery it waited for.
    pub fn end(
        &self,
        (ticket, phase): (Ticket, Phase),
        scheduled: Instant,
        outcome: Result<f64, ErrorClass>,
        attempts: u32,
    ) {
        let last = self.entries.len() - 1;
        let worker = self
            .pool
            .placements()
            .serving(&self.entries[last])
            .first()
            .cloned();
        self.pool.request_ended(RequestEnd {
            ticket,
            model: &self.model,
            ran: match (&worker, outcome.is_ok()) {
                (Some(w), true) => Some(Ran {
                    worker: &w.id,
                    browser: w.kind,
                    backend: w
                        .backend_of(self.entries[last].name())
                        .unwrap_or(Backend::Wasm),
                }),
                _ => None,
            },
            phase,
            scheduled,
            issued: scheduled,
            attempt: attempts,
            outcome,
        });
    }

    /// SIGKILLs the browser of the worker serving shard `shard` now, recorded as an injected
    /// fault (detection is timed from it). `None` when no worker serves it.
    pub async fn kill(&self, shard: usize) -> Option<FaultNote> {
        let worker = self
            .pool
            .placements()
            .serving(&self.entries[shard])
            .first()
            .cloned()?;
        let spec = FaultSpec {
            choice: Choice::One(Kind::KillBrowser),
            when: When::At(Duration::ZERO),
            count: Some(1),
            seed: 0,
            target: Target::Shard(shard as u32),
            duration: Duration::ZERO,
            delay: Duration::ZERO,
        };
        let note = injector::carry_out(&self.pool, &worker.id, Kind::KillBrowser, &spec, "").await;
        self.pool.note_fault(note.clone());
        Some(note)
    }

    /// Runs `ids` (the prompt, or the one token just chosen) after the positions written so far
    /// through every shard; returns the last new position's logits.
    ///
    /// # Errors
    /// [`ShardError`] when a shard failed and recovery could not make it answer within the
    /// pool's `max_attempts`, or an answer was not what the next shard needs.
    pub async fn step(&mut self, ids: &[u32]) -> Result<Step, ShardError> {
        let t0 = Instant::now();
        let n = self.entries.len();
        self.tokens.extend_from_slice(ids);
        let end = self.tokens.len();
        let mut record = StepRecord {
            tokens: ids.len(),
            compute_ms: vec![0.0; n],
            hop_ms: vec![None; n.saturating_sub(1)],
            ..StepRecord::default()
        };
        let mut ends: Vec<Option<f64>> = vec![None; n];
        let mut recoveries = 0;
        let mut k = 0;
        let mut since = Vec::new();
        loop {
            let entry = &self.entries[k];
            if self.pool.placements().least_loaded(entry, None).is_none() {
                // Out of service: a recovery the pool started on its own is moving it.
                since.push(Instant::now());
                record.stalls.push(Stall {
                    shard: k,
                    worker: self.holders[k]
                        .as_ref()
                        .map(|h| h.worker.clone())
                        .unwrap_or_default(),
                    class: None,
                    stalled_ms: 0.0,
                });
            }
            let worker = serving_worker(&self.pool, entry, k).await?;
            let holder = self.holder(k, &worker);
            let from = match &self.holders[k] {
                Some(h)
                    if h.worker == holder.worker
                        && h.generation == holder.generation
                        && h.loads == holder.loads =>
                {
                    h.positions
                }
                _ => 0,
            };
            if from == end {
                // It ran this step before a recovery elsewhere: its output is kept already.
                k += 1;
                continue;
            }
            // A cache lost with earlier positions in it: rebuilt from the kept inputs.
            let rebuild = from == 0 && end > ids.len();
            if rebuild && self.capacity.is_some() {
                return Err(ShardError::NotRebuildable {
                    shard: k,
                    positions: end - ids.len(),
                });
            }
            if rebuild {
                record.rebuilt.push((k, end));
            }
            // The break: the kept inputs of the earlier positions are lost (zeros).
            let forget = rebuild && crate::breaks::once(crate::breaks::Break::LostInputs);
            let (feeds, carry) = self.feeds(k, from, end, forget);
            let sent = Instant::now();
            let generation = worker.generation();
            let result = worker
                .run_fed(
                    self.entries[k].name(),
                    feeds,
                    FedOutputs::Carry(carry),
                    RunFor::Request,
                )
                .await;
            let reply = match result {
                Ok(reply) => reply,
                Err(e) => {
                    self.holders[k] = None;
                    let call = (k, self.entries[k].name(), sent);
                    let class =
                        recover_shard(&self.pool, &worker, generation, call, e, &mut recoveries)
                            .await?;
                    since.push(sent);
                    record.stalls.push(Stall {
                        shard: k,
                        worker: worker.id.clone(),
                        class: Some(class),
                        stalled_ms: 0.0,
                    });
                    // From the first shard: those whose cache went with the recovery run again.
                    k = 0;
                    continue;
                }
            };
            self.kept(k, &worker, &reply, end)?;
            record.compute_ms[k] = reply.run_ms;
            ends[k] = reply.run_end_epoch_ms;
            if k > 0 {
                if let (Some(prev), Some(start)) = (ends[k - 1], reply.run_start_epoch_ms) {
                    record.hop_ms[k - 1] = Some((start - prev).max(0.0));
                }
            }
            let bad = |what: AnswerFault| ShardError::Answer {
                shard: k,
                worker: worker.id.clone(),
                what,
            };
            let name = if k + 1 == n { LOGITS } else { HIDDEN_OUT };
            let out = reply
                .outputs
                .get(name)
                .ok_or_else(|| bad(AnswerFault::Missing(name.to_string())))?;
            let b64 = out
                .data_b64
                .as_deref()
                .ok_or_else(|| bad(AnswerFault::NoValues(name.to_string())))?;
            let values = decode_f32(b64).map_err(|e| bad(e.into()))?;
            if k + 1 == n {
                record.wall_ms = t0.elapsed().as_secs_f64() * 1e3;
                for (s, t) in record.stalls.iter_mut().zip(&since) {
                    s.stalled_ms = t.elapsed().as_secs_f64() * 1e3;
                }
                return Ok(Step {
                    logits: values,
                    record,
                });
            }
            // Its output is the next shard's input for positions `from..end`.
            if values.len() != (end - from) * self.hidden {
                return Err(bad(AnswerFault::WrongSize {
                    output: HIDDEN_OUT.to_string(),
                    values: values.len(),
                    positions: end - from,
                    width: self.hidden,
                }));
            }
            let next = &mut self.boundary[k + 1];
            next.truncate(from * self.hidden);
            next.extend_from_slice(&values);
            // Shard k's outputs so far are shard k+1's inputs so far.
            debug_assert_eq!(next.len(), end * self.hidden);
            k += 1;
        }
    }

    /// Who would hold shard `k`'s cache on `worker` now.
    fn holder(&self, k: usize, worker: &Worker) -> Holder {
        Holder {
            worker: worker.id.clone(),
            generation: worker.generation(),
            loads: self.pool.pipelines().loads(self.id, k),
            positions: 0,
        }
    }

    /// Checks that the page kept shard `k`'s cache grown to `end` positions, and records where.
    fn kept(
        &mut self,
        k: usize,
        worker: &Worker,
        reply: &RunReply,
        end: usize,
    ) -> Result<(), ShardError> {
        let first = present_key(self.layers[k].start);
        let kept = reply.carried.get(&first).and_then(|d| d.get(2)).copied();
        // A fixed-capacity cache holds its slots whatever was written.
        let holds = self.capacity.unwrap_or(end);
        if kept != Some(holds as i64) {
            return Err(ShardError::Answer {
                shard: k,
                worker: worker.id.clone(),
                what: AnswerFault::CacheNotKept {
                    output: first,
                    positions: holds,
                    kept,
                },
            });
        }
        self.holders[k] = Some(Holder {
            positions: end,
            ..self.holder(k, worker)
        });
        Ok(())
    }

    /// Shard `k`'s feeds for positions `from..end` (an empty cache given when `from` is 0),
    /// and its carry: every layer's present keys and values kept as its next past. `forget`
    /// (a deliberate break) gives zeros for the kept inputs of all but the last position.
    fn feeds(
        &self,
        k: usize,
        from: usize,
        end: usize,
        forget: bool,
    ) -> (BTreeMap<String, Feed>, BTreeMap<String, String>) {
        let new = end - from;
        let mut feeds = BTreeMap::new();
        if k == 0 {
            let mut ids: Vec<i64> = self.tokens[from..end]
                .iter()
                .map(|&t| i64::from(t))
                .collect();
            if forget {
                ids[..new - 1].fill(0);
            }
            feeds.insert(INPUT_IDS.to_owned(), feed_i64(vec![1, new as i64], &ids));
        } else {
            let mut rows = self.boundary[k][from * self.hidden..end * self.hidden].to_vec();
            if forget {
                rows[..(new - 1) * self.hidden].fill(0.0);
            }
            let dims = vec![1, new as i64, self.hidden as i64];
            feeds.insert(HIDDEN_IN.to_owned(), feed_f32(dims, &rows));
        }
        let positions: Vec<i64> = (from..end).map(|p| p as i64).collect();
        feeds.insert(
            POSITION_IDS.to_owned(),
            feed_i64(vec![new as i64], &positions),
        );
        let mut empty = self.empty.clone();
        let mut zeros = Vec::new();
        match self.capacity {
            // One position: it sees the slots up to its own, and is written into its own.
            Some(cap) => {
                let bias: Vec<f32> = (0..cap)
                    .map(|j| if j <= from { 0.0 } else { MASKED })
                    .collect();
                feeds.insert(
                    ATTENTION_BIAS.to_owned(),
                    feed_f32(vec![1, 1, 1, cap as i64], &bias),
                );
                let slot: Vec<f32> = (0..cap).map(|j| f32::from(u8::from(j == from))).collect();
                feeds.insert(
                    CACHE_SLOT.to_owned(),
                    feed_f32(vec![1, 1, cap as i64, 1], &slot),
                );
                empty[2] = cap as i64;
                // Only a cache started over is sent; later steps carry it in the page.
                if from == 0 {
                    zeros = vec![0.0; empty.iter().product::<i64>() as usize];
                }
            }
            None => {
                let dims = vec![1, 1, new as i64, end as i64];
                feeds.insert(
                    ATTENTION_BIAS.to_owned(),
                    feed_f32(dims, &causal_bias(from, new)),
                );
            }
        }
        let mut carry = BTreeMap::new();
        for i in self.layers[k].clone() {
            if from == 0 {
                feeds.insert(past_key(i), feed_f32(empty.clone(), &zeros));
                feeds.insert(past_value(i), feed_f32(empty.clone(), &zeros));
            }
            carry.insert(present_key(i), past_key(i));
            carry.insert(present_value(i), past_value(i));
        }
        (feeds, carry)
    }
}

fn feed_i64(dims: Vec<i64>, values: &[i64]) -> Feed {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    feed("int64", dims, &bytes)
}

fn feed_f32(dims: Vec<i64>, values: &[f32]) -> Feed {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    feed("float32", dims, &bytes)
}

fn feed(dtype: &'static str, dims: Vec<i64>, bytes: &[u8]) -> Feed {
    Feed {
        dtype,
        dims,
        data_b64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        url: None,
    }
}
