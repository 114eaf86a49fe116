//! The record of a sharded run (`run.json`'s `sharding`): the plan and its reasons, each shard's
//! compute, each hop's bytes and time, end-to-end latency and pipelined throughput beside one
//! unsharded worker, the check of every answer against the native oracle, recovery events and
//! the timeline the HTML report draws.

use serde::{Deserialize, Serialize};

use super::{Percentiles, Requests};

/// What a sharded run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardingReport {
    /// The sharded model.
    pub model: String,
    /// `layer_balanced`, `cost_balanced` or `memory_aware`.
    pub strategy: String,
    /// `retry_failed_shards`, `reassign_shards` or `full_retry`.
    pub recovery: String,
    /// Why the plan is what it is, one line each (printed before the run).
    pub reasons: Vec<String>,
    /// The shards as planned and as they ended (worker after any recovery).
    pub shards: Vec<ShardRow>,
    /// Each boundary between shards.
    pub hops: Vec<HopRow>,
    /// How activations travelled: `harness` or `server`.
    pub transfer: String,
    /// With `transfer: auto`: one request's end-to-end ms by each route (best of two, one
    /// request at a time, before the stream); the faster was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_probe: Option<TransferProbe>,
    /// The sharded stream's requests (independent ledger; also the run's `requests`).
    pub requests: Requests,
    /// Requests in flight at once (closed loop).
    pub concurrency: u32,
    /// End-to-end latency of the measured requests, ms.
    pub latency_ms: Option<Percentiles>,
    /// Measured requests per second of wall time, with requests pipelined.
    pub throughput_per_s: f64,
    /// The same model unsharded on one worker, measured the same way.
    pub baseline: Baseline,
    /// `throughput_per_s / baseline.throughput_per_s` when both were measured.
    pub throughput_vs_unsharded: Option<f64>,
    /// Every answer against the unsharded model run by native onnxruntime.
    pub correctness: ShardCorrectness,
    /// Recoveries of failed shards.
    pub events: Vec<ShardEvent>,
    /// One bar per shard execution (the HTML report's shard timeline).
    pub timeline: Vec<ShardSpan>,
}

impl ShardingReport {
    /// Every answer checked and right, and no recovery that gave up.
    pub fn passed(&self) -> bool {
        self.correctness.passed && self.events.iter().all(|e| e.succeeded)
    }
}

/// One request's end-to-end time by each route, measured side by side before the stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TransferProbe {
    /// Through the harness (base64 in the page-API calls), ms; none when it failed.
    pub harness_ms: Option<f64>,
    /// Through the asset server's relay, ms; none when it failed.
    pub server_ms: Option<f64>,
}

/// One shard.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardRow {
    /// Index, from 0.
    pub shard: usize,
    /// Layers `[start, end)`.
    pub layers: [usize; 2],
    /// Learned parameters.
    pub parameters: u64,
    /// Its ONNX file, bytes.
    pub onnx_bytes: u64,
    /// The worker serving it at the end of the run.
    pub worker: String,
    /// Workers that served it before a recovery moved it, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_workers: Vec<String>,
    /// The backend it ran on there.
    pub backend: String,
    /// Times it was loaded (1 unless a recovery reloaded it).
    pub loads: u32,
    /// Its last load (fetch plus session creation), ms.
    pub load_ms: f64,
    /// `session.run` plus read-back in the page, measured requests, ms.
    pub compute_ms: Option<Percentiles>,
    /// Successful runs of this shard (all phases).
    pub runs: u64,
}

/// One boundary: shard `from` hands its activation to shard `from + 1`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HopRow {
    /// The shard before the boundary.
    pub from: usize,
    /// The shard after it.
    pub to: usize,
    /// Raw bytes of the activation (float32 values; base64 on the wire is 4/3 of it).
    pub bytes: u64,
    /// How the bytes travel: through the harness, in the page-API call's reply and the next
    /// call's arguments.
    pub route: String,
    /// From the end of `from`'s run to the start of `to`'s run (page clocks, wall time), less
    /// the time `to`'s worker was busy with other requests, ms: encoding, the two transfers,
    /// the harness and decoding.
    pub transfer_ms: Option<Percentiles>,
    /// The time the activation waited for `to`'s worker to finish other requests, ms (0 at
    /// concurrency 1; a pipeline stall above it).
    pub wait_ms: Option<Percentiles>,
}

/// The unsharded model on one worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Baseline {
    /// The worker, when it ran.
    pub worker: Option<String>,
    /// Its backend.
    pub backend: Option<String>,
    /// Measured requests.
    pub runs: u64,
    /// End-to-end latency, ms.
    pub latency_ms: Option<Percentiles>,
    /// Requests per second at the same concurrency.
    pub throughput_per_s: f64,
    /// Its outputs against the oracle.
    pub max_abs_diff: Option<f64>,
    /// Why it did not run (e.g. the whole model is over one worker's memory budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Every sharded answer against the oracle's output of the unsharded model.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardCorrectness {
    /// Every answer checked was within tolerance (and, for a decoder, had the same argmax).
    pub passed: bool,
    /// Answers checked (every successful request).
    pub checked: u64,
    /// Answers outside tolerance or with another argmax.
    pub mismatched: u64,
    /// Largest absolute difference over every checked answer.
    pub max_abs_diff: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// For a decoder (logits): answers whose argmax differed at any position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argmax_mismatched: Option<u64>,
    /// What the oracle was.
    pub reference: String,
}

/// A failed shard and what recovery did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardEvent {
    /// Since the stream started, ms.
    pub at_ms: u64,
    /// The recovery strategy.
    pub strategy: String,
    /// The shard whose call failed.
    pub shard: usize,
    /// The worker that failed.
    pub from: String,
    /// Where its shards went.
    pub to: Vec<String>,
    /// Shards loaded again.
    pub reloaded: Vec<usize>,
    /// The failure.
    pub cause: String,
    /// From the fault's injection to the failed call, ms (none for a failure no injected
    /// fault explains).
    pub detection_ms: Option<f64>,
    /// The injected fault that explains the failure, if one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_kind: Option<String>,
    /// From the failed call to the shards serving again, ms.
    pub recovery_ms: f64,
    /// Whether the shards serve again.
    pub succeeded: bool,
}

/// One shard execution.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardSpan {
    /// The request (issue order).
    pub request: u64,
    /// The shard.
    pub shard: usize,
    /// The worker.
    pub worker: String,
    /// Start, ms since the stream started (harness clock: the call was sent).
    pub start_ms: f64,
    /// End, ms since the stream started (the reply arrived).
    pub end_ms: f64,
    /// Whether it answered.
    pub ok: bool,
}
