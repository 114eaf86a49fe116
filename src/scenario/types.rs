//! The scenario types: what a YAML file (or the CLI flags) describes.
//!
//! Input: nothing (plain data). Output: [`Scenario`] and its parts, with serde (unknown keys
//! rejected everywhere), JSON Schema derives and `Default`s that are the built-in defaults.
//! The doc comments here become the descriptions in `schemas/scenario.schema.json`.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::fault_types::{Fault, FaultChoice, FaultTarget};

use super::defaults as d;
use super::duration;
use crate::backend::Backend;
use crate::browser::{BrowserKind, DriverKind};

/// One test scenario: a pool, the models to run in it, the load, and what to break.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports and run folders (letters, digits, `-`, `_`, `.`).
    #[serde(default = "d::name")]
    pub name: String,
    /// What the scenario exercises, in a sentence or two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seed for generated weights, inputs and every random choice (fault times, targets).
    #[serde(default = "d::seed")]
    pub seed: u64,
    /// The browser pool.
    #[serde(default)]
    pub pool: PoolConfig,
    /// Backend priority list; each model uses the first one its browser really offers.
    #[serde(default = "d::backends")]
    pub backends: Vec<Backend>,
    /// Count a software WebGPU adapter (SwiftShader, lavapipe) as WebGPU. Off by default: on
    /// such adapters a model falls back to the next backend and the report says why.
    #[serde(default)]
    pub allow_fallback_adapter: bool,
    /// Threads of onnxruntime-web's wasm backend in each page (1 to 16). Unset: what
    /// onnxruntime-web picks (on 2 cores, 1); the report says how many ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm_threads: Option<u32>,
    /// The models to run (catalog names or aliases; see `webgpu-pool models list`).
    #[serde(default)]
    pub models: Vec<ModelEntry>,
    /// The load: closed or open loop, bounded by duration or iterations.
    #[serde(default)]
    pub workload: Workload,
    /// Faults injected during the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
    /// How workers and requests recover from faults.
    #[serde(default)]
    pub recovery: Recovery,
    /// Split one text-generation model across several workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharding: Option<Sharding>,
    /// A language model writing text beside the other models: a cell per browser of the
    /// matrix, or requests of a routed pool's workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<Generation>,
    /// Periodic state synchronisation between workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateSync>,
    /// Pass/fail limits; a broken threshold makes the run exit 1.
    #[serde(default, skip_serializing_if = "Thresholds::is_empty")]
    pub thresholds: Thresholds,
}

/// The browser pool: how many workers, which browsers, and health checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Workers kept alive even when idle (0 lets the pool empty out).
    #[serde(default = "d::min_connections")]
    pub min_connections: u32,
    /// Most workers at once; at least one per listed browser.
    #[serde(default = "d::max_connections")]
    pub max_connections: u32,
    /// Browser kinds the pool may launch.
    #[serde(default = "d::browsers")]
    pub browsers: Vec<BrowserKind>,
    /// How Chromium-family browsers are driven; Firefox always uses WebDriver (geckodriver).
    #[serde(default = "d::driver")]
    pub driver: DriverKind,
    /// Preferred browser per model task; the router falls back when it is not in the pool.
    #[serde(default)]
    pub preferences: Preferences,
    /// A worker idle this long is closed (down to `min_connections`).
    #[serde(default = "d::idle_timeout", with = "duration")]
    #[schemars(schema_with = "duration::schema")]
    pub idle_timeout: Duration,
    /// Time between heartbeats to each worker.
    #[serde(default = "d::heartbeat_interval", with = "duration")]
    #[schemars(schema_with = "duration::schema")]
    pub heartbeat_interval: Duration,
    /// An idle worker's health check (an `echo` call) unanswered this long marks the worker
    /// unhealthy. A hang while a run is in flight is found by the page's own heartbeat
    /// (`hang_after`).
    #[serde(default = "d::heartbeat_timeout", with = "duration")]
    #[schemars(schema_with = "duration::schema")]
    pub heartbeat_timeout: Duration,
    /// A page whose own heartbeat (a beat every 250 ms from its main thread) is silent this
    /// long is taken for hung. More than 250 ms.
    #[serde(default = "d::hang_after", with = "duration")]
    #[schemars(schema_with = "duration::schema")]
    pub hang_after: Duration,
    /// Bound on launching one browser and opening its page.
    #[serde(default = "d::launch_timeout", with = "duration")]
    #[schemars(schema_with = "duration::schema")]
    pub launch_timeout: Duration,
    /// `routed` (default): the router puts each model on the browser its type prefers and all
    /// models run at once. `matrix`: every model in every browser, one at a time (the
    /// benchmark grid `webgpu-pool run` uses).
    #[serde(default = "d::placement")]
    pub placement: PlacementMode,
    /// A routing profile (`webgpu-pool recommend --apply` writes one): each model goes to the
    /// browser and backend measured best for it, ahead of `preferences`. Routed placement only.
    /// Default: `<results-dir>/routing-profile.json` when that file exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_profile: Option<String>,
    /// Adaptive routing: after warm-up, measure each model on the pool's other browser x
    /// backend pairs and move it (one journaled transaction) where it runs significantly
    /// faster. Routed placement only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adaptive: bool,
    /// Selenium Grid 4 hubs (`http://host:4444`): each browser in `browsers` that a hub's nodes
    /// offer runs there as a remote WebDriver session; the others run on this machine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grid: Vec<String>,
    /// Where the asset server listens (`host:port`; port 0 picks one): an address the Grid's
    /// nodes can reach. Default `127.0.0.1:0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve_addr: Option<String>,
    /// Serve the pages over HTTPS with a certificate made for the run, so a page loaded from
    /// another host is still a secure, cross-origin-isolated context. Needed when `serve_addr`
    /// is not a loopback address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// Hot standbys: copies of each model kept loaded on workers that do not serve it, promoted
    /// at once when a serving worker fails and replaced in the background. Default: 1 in a
    /// routed pool that recovers from injected faults (when `max_connections` is 2 or more),
    /// else 0. 0 turns them off. At most `max_connections - 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standbys: Option<u32>,
    /// Memory all standby copies together may take, MiB, each counted at its model's measured
    /// load cost. Default: half the memory available when the run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_memory_mib: Option<u64>,
}

/// How models are put on browsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlacementMode {
    /// The router places each model; all run at once.
    Routed,
    /// Each model in each browser, one cell at a time.
    Matrix,
}

/// Preferred browser per model task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// Audio models (whisper). Default: firefox.
    #[serde(default = "d::pref_audio", skip_serializing_if = "Option::is_none")]
    pub audio: Option<BrowserKind>,
    /// Vision models (vit). Default: chromium.
    #[serde(default = "d::pref_vision", skip_serializing_if = "Option::is_none")]
    pub vision: Option<BrowserKind>,
    /// Text-embedding models (bert, minilm). Default: chromium-shell (WebNN), else another
    /// Chromium-family browser.
    #[serde(default = "d::pref_text", skip_serializing_if = "Option::is_none")]
    pub text_embedding: Option<BrowserKind>,
    /// Text-generation models (llama). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_generation: Option<BrowserKind>,
}

/// One model to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Catalog name or alias, e.g. `bert-base-uncased` or `bert`.
    pub name: String,
    /// Pin the model to this browser kind (it must be in `pool.browsers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<BrowserKind>,
    /// Relative share of requests (default 1).
    #[serde(default = "d::weight")]
    pub weight: u32,
}

impl ModelEntry {
    /// An entry with no pin and weight 1.
    pub fn named(name: impl Into<String>) -> Self {
        ModelEntry {
            name: name.into(),
            browser: None,
            weight: 1,
        }
    }
}

/// Closed loop (N clients, each sends its next request when the last one ends) or open loop
/// (requests arrive at a fixed rate whatever the latency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadMode {
    /// `concurrency` clients in a loop.
    Closed,
    /// `rate` requests per second; `concurrency` bounds the requests in flight.
    Open,
}

/// The load and its bounds. Give exactly one of `duration` and `iterations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// `closed` (default) or `open`.
    #[serde(default = "d::mode")]
    pub mode: WorkloadMode,
    /// Closed loop: concurrent clients. Open loop: most requests in flight.
    #[serde(default = "d::concurrency")]
    pub concurrency: u32,
    /// Open loop only: arrivals per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Run for this long (measured part, after warm-up).
    #[serde(
        default,
        with = "duration::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration::schema")]
    pub duration: Option<Duration>,
    /// Or run this many measured requests per model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u64>,
    /// Unmeasured warm-up requests per model and worker.
    #[serde(default = "d::warmup")]
    pub warmup: u32,
    /// Deadline of one request, measured from its scheduled start.
    #[serde(default = "d::request_timeout", with = "duration")]
    #[schemars(schema_with = "duration::schema")]
    pub request_timeout: Duration,
    /// Bound on one page run: a run with no answer within it is taken for a hung page and its
    /// worker is recovered. Default: a quarter of `request_timeout` when recovery is on (a hang
    /// is noticed with time left to recover and run the request again inside its deadline),
    /// else `request_timeout`. At most `request_timeout`.
    #[serde(
        default,
        with = "duration::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "duration::schema")]
    pub run_timeout: Option<Duration>,
    /// Bound on loading one model in one worker (fetch plus session creation).
    #[serde(default = "d::load_timeout", with = "duration")]
    #[schemars(schema_with = "duration::schema")]
    pub load_timeout: Duration,
    /// After the measured part, keep the pool up and idle this long so idle workers beyond
    /// `min_connections` are closed (scale-down shows in the report).
    #[serde(default = "d::cooldown", with = "duration")]
    #[schemars(schema_with = "duration::schema")]
    pub cooldown: Duration,
}

/// How recovery proceeds after a worker fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryStrategy {
    /// Fail over at once: migrate the failed worker's models to another worker (rebuild if
    /// none), and re-run its in-flight requests there.
    Immediate,
    /// Retry on the same worker, then reset its page (models reloaded), then migrate to
    /// another worker, then rebuild on a new browser.
    Progressive,
    /// No recovery: failed requests count as errors and the worker stays down.
    None,
}

/// Recovery settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// `progressive` (default), `immediate` or `none`.
    #[serde(default = "d::strategy")]
    pub strategy: RecoveryStrategy,
    /// Bound on one recovery (relaunch plus reload); past it the worker is closed.
    #[serde(default = "d::recovery_timeout", with = "duration")]
    #[schemars(schema_with = "duration::schema")]
    pub timeout: Duration,
    /// Attempts per request, the first included, before it counts as failed.
    #[serde(default = "d::max_attempts")]
    pub max_attempts: u32,
}

/// How layers are split across shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShardStrategy {
    /// Balance learned parameters per shard: the shards holding the embeddings and the head
    /// get fewer layers.
    LayerBalanced,
    /// By per-layer time measured on each worker before the run: faster workers get more layers.
    CostBalanced,
    /// By parameter bytes against each worker's memory budget (`memory_budget`) and WebGPU's
    /// largest storage buffer; with no `shards`, as few shards as fit.
    MemoryAware,
}

impl ShardStrategy {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LayerBalanced => "layer_balanced",
            Self::CostBalanced => "cost_balanced",
            Self::MemoryAware => "memory_aware",
        }
    }
}

pub use crate::recovery::ShardRecovery;

/// Split one model's layers into pipeline shards, one per worker. A scenario with this block
/// runs that model sharded (its `models` list must name only it); the workload drives the
/// sharded stream, and then the unsharded model is compared with it like for like on a worker of
/// its own, which counts against `pool.max_connections`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sharding {
    /// The model: `llama-tiny`, `bert-base-uncased`, `whisper-tiny` or a test variant.
    pub model: String,
    /// Number of shards, from 2 up to `pool.max_connections` and the model's layer count.
    /// Required but for `memory_aware`, which picks the fewest that fit when it is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// `layer_balanced` (default), `cost_balanced` or `memory_aware`.
    #[serde(default = "d::shard_strategy")]
    pub strategy: ShardStrategy,
    /// `retry_failed_shards` (default), `reassign_shards` or `full_retry`.
    #[serde(default = "d::shard_recovery")]
    pub recovery: ShardRecovery,
    /// Parameter memory one worker may hold, in MiB (e.g. `64`); a shard over it is not
    /// placed, and the unsharded baseline is skipped when the whole model is over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_budget_mib: Option<u64>,
    /// Where each shard runs, one entry per shard in order: a browser of `pool.browsers` and,
    /// optionally, the one backend its shard must use (e.g. shard 0 on
    /// `{browser: chromium-shell, backend: webnn}`, the others on wasm). Default: the pool's
    /// browsers in turn, each with the scenario's `backends`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<ShardWorker>,
    /// How activations travel between shards: `harness` (base64 in the page-API calls),
    /// `server` (raw bytes through the asset server's relay), or `auto` (default: both are
    /// timed on the same requests before the stream, and the faster is used).
    #[serde(default = "d::shard_transfer")]
    pub transfer: ShardTransfer,
}

/// A language model's generations, each prompt written greedily and every step checked against
/// native onnxruntime teacher-forced on the browser's tokens. In the matrix placement, after
/// each browser's model cells, the model is loaded in that browser (wasm) and writes each prompt
/// once; in a routed pool it is placed once and each request of the workload writes the next
/// prompt. A generation is one request; the row's figures are its decode steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Generation {
    /// The language model: `smollm2`.
    pub model: String,
    /// What to ask, each wrapped in the model's chat template. Default: two fixed prompts.
    #[serde(default = "d::generation_prompts")]
    pub prompts: Vec<String>,
    /// Tokens each prompt's generation writes at most (1 to 256; fewer when the model ends
    /// its turn).
    #[serde(default = "d::generation_tokens")]
    pub max_new_tokens: u32,
}

/// How activations travel between shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShardTransfer {
    /// Time both before the stream and use the faster.
    Auto,
    /// Base64 in the page-API reply and the next call's arguments.
    Harness,
    /// Raw bytes PUT to the asset server's relay and fetched by the next page.
    Server,
}

/// Where one shard runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShardWorker {
    /// The browser.
    pub browser: BrowserKind,
    /// The one backend the shard must run on (default: the scenario's `backends` in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
}

/// Periodic state synchronisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateSync {
    /// Time between syncs of the pool state (workers, loaded models, counters).
    #[serde(default = "d::sync_interval", with = "duration")]
    #[schemars(schema_with = "duration::schema")]
    pub sync_interval: Duration,
    /// Planned migrations, each one transaction (load on the target, switch the placement,
    /// unload from the source), rolled back for real if a step fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<Migration>,
}

/// One planned migration of a model to a worker of another browser kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// The model to move (must be one of `models`).
    pub model: String,
    /// The browser kind to move it to (must be in `pool.browsers`).
    pub to: BrowserKind,
    /// When, after the workload starts.
    #[serde(with = "duration")]
    #[schemars(schema_with = "duration::schema")]
    pub at: Duration,
}

/// Pass/fail limits evaluated after the run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Most requests that may end without any answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_requests: Option<u64>,
    /// Largest share of failed requests, from 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Most requests that may fail while a live copy of their model existed during their wait
    /// (recovery failures; failures for want of any live copy are capacity failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_failures: Option<u64>,
    /// Largest p95 latency per model, in milliseconds (keys: models of this scenario).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub p95_ms: BTreeMap<String, f64>,
    /// Largest p99 latency per model, in milliseconds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub p99_ms: BTreeMap<String, f64>,
}

impl Thresholds {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        self.lost_requests.is_none()
            && self.error_rate.is_none()
            && self.recovery_failures.is_none()
            && self.p95_ms.is_empty()
            && self.p99_ms.is_empty()
    }
}
