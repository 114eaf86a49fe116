//! [`RunSummary`]: everything a run measured, in the shape of the `run.json` report contract
//! (ARCHITECTURE.md, "Report contract"). Field names here are a contract with CI jobs: renaming
//! one means bumping [`SCHEMA_VERSION`] and `schemas/run.schema.json`.

use serde::{Deserialize, Serialize};

use super::Percentiles;

/// Version of the `run.json` layout.
pub const SCHEMA_VERSION: u32 = 1;

/// The result of one run: the body of `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    /// Layout version of this document.
    pub schema_version: u32,
    /// Unique id, also the folder name under `results/`.
    pub run_id: String,
    /// The command line that started the run.
    pub command: String,
    /// Wall-clock start, RFC 3339.
    pub started_at: String,
    /// Wall-clock end, RFC 3339.
    pub finished_at: String,
    /// Whether the run finished its whole workload (false when interrupted or aborted).
    pub complete: bool,
    /// Why the run stopped early, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    /// Host and browsers the run used.
    pub environment: Environment,
    /// How the run loaded its cells (isolated, routed under N clients, under faults): part of
    /// each cell's identity in the history and `compare`. `unknown` in a `run.json` written
    /// before it was recorded.
    #[serde(default)]
    pub load: super::LoadContext,
    /// Request accounting over the whole run.
    pub requests: Requests,
    /// One row per model x browser x backend.
    pub results: Vec<ResultRow>,
    /// Faults injected during the run.
    pub faults: Vec<FaultRecord>,
    /// Recoveries performed during the run.
    pub recovery_events: Vec<RecoveryEvent>,
    /// Threshold verdicts.
    pub thresholds: Vec<ThresholdResult>,
    /// Every worker the pool ran: resources and utilization.
    #[serde(default)]
    pub workers: Vec<WorkerSummary>,
    /// Why each model went where (`--explain-routing` prints these).
    #[serde(default)]
    pub routing: Vec<RoutingRecord>,
    /// Pool scaling and health events.
    #[serde(default)]
    pub pool_events: Vec<PoolEventRecord>,
    /// Most workers alive at once.
    #[serde(default)]
    pub peak_workers: usize,
    /// When this run was resumed after the harness died: what its earlier part did (its
    /// counts are included in `requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<EarlierPart>,
    /// A sharded run's plan, shards, hops, baseline and answers checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharding: Option<super::ShardingReport>,
    /// What adaptive routing measured and moved (runs with `adaptive: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<super::AdaptiveReport>,
    /// Generations (`generate` writes one): each one's text, times, shards, steps and check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generations: Vec<super::GenerationReport>,
}

/// The part of a resumed run that ran before the harness died, as its transaction log has it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EarlierPart {
    /// Requests started before the harness died.
    pub issued: u64,
    /// Of those, succeeded.
    pub succeeded: u64,
    /// Of those, failed.
    pub failed: u64,
    /// In flight when the harness died: no answer was ever recorded, so they count as lost
    /// (`requests.lost_with_harness`; no sample of them exists, only this count).
    pub interrupted: u64,
    /// Measured time it ran, ms.
    pub elapsed_ms: u64,
    /// Transactions committed and aborted in the log, and open ones rolled back on resume.
    pub transactions: String,
    /// Measured requests per model before the harness died.
    #[serde(default)]
    pub per_model: std::collections::BTreeMap<String, u64>,
}

impl RunSummary {
    /// The verdict of the whole run, the one every report and the exit code use: the run
    /// finished its workload, every row passed its correctness check, every threshold held, no
    /// request was lost, and every page ran exactly the runs the harness sent it.
    pub fn passed(&self) -> bool {
        self.complete
            && self.stopped_early.is_none()
            && self
                .results
                .iter()
                .all(|r| r.error.is_none() && r.correctness.passed)
            && self.thresholds.iter().all(|t| t.passed)
            && self.requests.lost == self.requests.lost_with_harness
            && self.requests.closed_twice == 0
            && self.workers.iter().all(|w| w.runs.mismatch().is_none())
            && self
                .sharding
                .as_ref()
                .is_none_or(super::ShardingReport::passed)
            && self
                .generations
                .iter()
                .all(super::GenerationReport::verified)
    }
}

/// Host and browsers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Environment {
    /// `webgpu-pool` version.
    pub harness_version: String,
    /// Operating system and architecture, e.g. `linux x86_64`.
    pub os: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Each browser launched, with what it offered.
    pub browsers: Vec<BrowserEnv>,
    /// Where the pages were served from: `http://127.0.0.1:<port>` by default, `https://...`
    /// with `--tls`, the `--serve-addr` address when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_origin: Option<String>,
    /// Browser kinds a `run` without `--browsers` would have used that are not installed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_installed: Vec<NotInstalled>,
}

/// A browser kind that is not installed, and how to install it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NotInstalled {
    /// `chrome`, `edge`, ...
    pub kind: String,
    /// The setup step (or why it is not available here).
    pub install: String,
}

/// One launched browser and what its page reported.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BrowserEnv {
    /// `chromium`, `firefox`, ...
    pub kind: String,
    /// Product version.
    pub version: String,
    /// `cdp` or `webdriver`.
    pub driver: String,
    /// Executable path.
    pub executable: String,
    /// onnxruntime-web version in the page.
    pub ort_version: String,
    /// WebGPU: `available`, `adapter` {vendor, architecture, device, description, fallback},
    /// `features`, `limits`, `reason` (as the page reported it).
    pub webgpu: serde_json::Value,
    /// WebNN: `available`, `reason`, per-device results.
    pub webnn: serde_json::Value,
    /// WASM: `simd`, `threads`, `num_threads`.
    pub wasm: serde_json::Value,
    /// `crossOriginIsolated` in the page.
    pub cross_origin_isolated: bool,
    /// Launch to page ready, ms.
    pub launch_ms: f64,
    /// The Selenium Grid node that served it (`http://10.0.0.7:5555`); absent for a browser
    /// on this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Request accounting. `lost = issued - succeeded - failed`, and every lost request must be
/// one an earlier part's harness took with it when it died (`lost_with_harness`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    /// Inference requests issued.
    pub issued: u64,
    /// Requests that returned a result.
    pub succeeded: u64,
    /// Requests that ended with a classified error.
    pub failed: u64,
    /// Requests issued a ticket that no outcome ever closed: always a bug. Counted from the
    /// tickets, not from the other three.
    pub lost: u64,
    /// Outcomes recorded for a ticket already closed: always a bug.
    #[serde(default)]
    pub closed_twice: u64,
    /// Of `lost`, in a resumed run: the requests in flight when an earlier part's harness died
    /// (its transaction log has them started and never ended). Their outcomes died with that
    /// harness; they are reported lost, not failed, and do not fail the run.
    #[serde(default)]
    pub lost_with_harness: u64,
    /// `failed`, by why each failed (see [`super::FailureCause`]).
    #[serde(default)]
    pub causes: FailureCauses,
}

/// Failed requests by [`super::FailureCause`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCauses {
    /// No live copy of the model for the request's whole wait.
    pub capacity: u64,
    /// A live copy existed while it waited, and it still failed.
    pub recovery: u64,
    /// A copy answered wrong or threw.
    pub answer: u64,
    /// The open-loop queue was full.
    pub overload: u64,
    /// The run was stopped first.
    pub stopped: u64,
}

impl FailureCauses {
    /// Counts one failure of `cause`.
    pub fn add(&mut self, cause: super::FailureCause) {
        *self.count_of(cause) += 1;
    }

    /// The count of `cause`.
    pub fn get(mut self, cause: super::FailureCause) -> u64 {
        *self.count_of(cause)
    }

    fn count_of(&mut self, cause: super::FailureCause) -> &mut u64 {
        use super::FailureCause as C;
        match cause {
            C::Capacity => &mut self.capacity,
            C::Recovery => &mut self.recovery,
            C::Answer => &mut self.answer,
            C::Overload => &mut self.overload,
            C::Stopped => &mut self.stopped,
        }
    }
}

/// One model x browser x backend.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResultRow {
    /// Catalog name of the model.
    pub model: String,
    /// Task type, e.g. `text_embedding`.
    pub task: String,
    /// `real` or `seeded`.
    pub weights: String,
    /// Where the weights came from.
    pub weights_note: String,
    /// Browser kind.
    pub browser: String,
    /// Backend actually used (`webgpu`, `webnn`, `wasm`), empty when loading failed.
    pub backend: String,
    /// Why higher-priority backends were not used, `backend: reason; ...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_fallback_reason: Option<String>,
    /// Model file fetch plus session creation in the page, ms.
    pub load_ms: f64,
    /// Session creation alone, ms.
    pub session_create_ms: f64,
    /// How the session's graph was optimized: `native basic, page disabled` (saved once by
    /// native onnxruntime, loaded without optimizing again), `native basic, page all`, or
    /// `page all` with why the native graph was not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_optimization: Option<String>,
    /// First `session.run`, ms (includes shader compilation on WebGPU).
    pub first_run_ms: f64,
    /// Warm runs measured.
    pub runs: u64,
    /// Warm `session.run` latency measured in the page.
    pub latency_ms: Percentiles,
    /// Request latency from its scheduled start to its end, measured by the harness (includes
    /// queueing and the driver round trip).
    pub round_trip_ms: Percentiles,
    /// Measured requests that succeeded per second of the row's measured window.
    pub throughput_per_s: f64,
    /// Measured requests that failed.
    #[serde(default)]
    pub failed: u64,
    /// Growth of the browser's memory (PSS) when the model was loaded, MiB.
    #[serde(default)]
    pub memory_added_mb: f64,
    /// Workers that served this row.
    #[serde(default)]
    pub workers: Vec<String>,
    /// A webnn cell: the WebNN device and how much of the graph WebNN took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webnn: Option<super::WebnnUse>,
    /// Threads of onnxruntime-web's wasm backend that ran a wasm cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm_threads: Option<u32>,
    /// Cores the cell's browser processes kept busy during its measured runs (their CPU time
    /// from `/proc` over the runs' wall time). `None` in routed runs, where cells share a
    /// browser at once, and for Grid browsers.
    #[serde(default)]
    pub cores_used: Option<f64>,
    /// Output check.
    pub correctness: Correctness,
    /// The same model run natively (onnxruntime outside the browser), and what the browser
    /// costs against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<NativeBaseline>,
    /// Why the row has no measurements, when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A model's native onnxruntime baseline, beside one browser cell.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NativeBaseline {
    /// The native runtime, e.g. `onnxruntime 1.30.0`.
    pub runtime: String,
    /// Warm `session.run` p50 at one intra-op thread, ms.
    pub p50_ms_1_thread: f64,
    /// Warm p50 at `all_threads` threads, ms.
    pub p50_ms_all_threads: f64,
    /// Threads of that measurement (the machine's cores).
    pub all_threads: usize,
    /// The cell's warm p50 over the native p50 at [`Self::x_native_threads`]: what running in
    /// the browser costs, like for like. `None` when the cell has no successful run.
    pub x_native: Option<f64>,
    /// The native thread count `x_native` is taken at: of 1 and `all_threads`, the nearest to
    /// the cores the cell used (its page's wasm threads when that was not measured).
    #[serde(default = "one")]
    pub x_native_threads: usize,
    /// The cell's warm p50 over the native all-threads p50.
    pub x_native_all_threads: Option<f64>,
}

/// The verdict of an output check.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Correctness {
    /// Whether the outputs passed.
    pub passed: bool,
    /// Which checks ran, joined with `+`: `finite`, `transfer`, `golden`, `oracle` (against
    /// native onnxruntime), `cross` (against another browser x backend).
    pub check: String,
    /// Largest absolute difference seen.
    pub max_abs_diff: f64,
    /// The absolute tolerance applied.
    pub tolerance: f64,
    /// The relative tolerance applied (of the reference's magnitude).
    #[serde(default)]
    pub rtol: f64,
    /// Largest absolute difference from the native output, when the oracle ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oracle_max_abs_diff: Option<f64>,
    /// What was compared with what.
    pub detail: String,
    /// Answers whose digests differed from the verified reference (each a `wrong_answer`
    /// request); any fails the cell.
    #[serde(default)]
    pub wrong_answers: u64,
    /// Placements in this cell (first, scale-up, standby, recovery, migration, adaptive) whose
    /// first answer matched native onnxruntime over every value before they served.
    #[serde(default)]
    pub placements_verified: u64,
    /// Placements whose first answer did not: never served; any fails the cell.
    #[serde(default)]
    pub placements_rejected: u64,
    /// Warm answers whose digests were compared with a verified first answer's. Fewer than the
    /// warm answers served fails the cell: one was served unchecked.
    #[serde(default)]
    pub answers_digest_checked: u64,
}

/// One injected fault.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Fault kind, e.g. `kill_browser`.
    pub kind: String,
    /// Offset from run start, ms.
    pub at_ms: u64,
    /// The worker hit, e.g. `chromium#1` (empty when skipped).
    pub target: String,
    /// Whether it was carried out (false: skipped or failed, see `detail`).
    #[serde(default = "yes")]
    pub injected: bool,
    /// What was done (e.g. `SIGKILL to browser pid 4242`), or why it was skipped.
    #[serde(default)]
    pub detail: String,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

/// One recovery.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecoveryEvent {
    /// The fault kind that caused it.
    pub fault_kind: String,
    /// Highest ladder level reached: retry, reset, migrate, rebuild.
    pub level: String,
    /// Fault to detection, ms.
    pub detection_ms: u64,
    /// Detection to the end of the recovery episode, ms (a promotion of a hot standby is an
    /// in-memory step, so this can be about 0).
    pub recovery_ms: u64,
    /// Detection to the first successful answer, issued after the detection, of every model
    /// the worker served (the latest of them), ms: when service was back. Absent when the
    /// worker served nothing or a model it served never answered again in the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_ms: Option<u64>,
    /// The models the worker served when it failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// The worker served nothing when it failed (no model, no pipeline shard): no service was
    /// lost, so the episode (which still repairs or replaces the worker) is not a recovery and
    /// is left out of the recovery and time-to-recover figures.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub served_nothing: bool,
    /// Whether service was restored.
    pub succeeded: bool,
    /// When the failure was detected, ms from run start.
    #[serde(default)]
    pub at_ms: u64,
    /// The worker that failed.
    #[serde(default)]
    pub worker: String,
    /// How it was noticed: the failing call's error class (`crash`, `tab_crash`, `timeout`,
    /// `disconnect`, `device_lost`, ...) or `heartbeat` / `process_exit`.
    #[serde(default)]
    pub detected_by: String,
    /// What each ladder level did.
    #[serde(default)]
    pub steps: Vec<String>,
}

/// One threshold verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// Threshold name, e.g. `lost_requests` or `p95_ms.bert`.
    pub name: String,
    /// The limit.
    pub limit: f64,
    /// The measured value.
    pub value: f64,
    /// Whether it held.
    pub passed: bool,
}

/// One worker over its life.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerSummary {
    /// Worker id, e.g. `chromium#1`.
    pub id: String,
    /// Browser kind.
    pub browser: String,
    /// Browser version.
    pub version: String,
    /// The Selenium Grid node that served it; absent for a browser on this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Final lifecycle state.
    pub state: String,
    /// Seconds alive.
    pub alive_s: f64,
    /// Busy time over time alive.
    pub utilization: f64,
    /// Peak PSS of the browser's process tree, MiB.
    pub pss_peak_mb: f64,
    /// Mean PSS over the samples taken (one a second), MiB.
    pub pss_mean_mb: f64,
    /// Models loaded there and the memory each added.
    pub models: Vec<ModelMemory>,
    /// Sessions the page created (its own counter; a reused model does not add one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_load_count: Option<u64>,
    /// Its page runs by purpose, as the harness sent them and as its pages counted them: a
    /// difference fails the run.
    #[serde(default)]
    pub runs: super::PageRuns,
    /// Why it was taken out of service, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// Memory a model added to a worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModelMemory {
    /// Model name.
    pub model: String,
    /// PSS growth across its load, MiB.
    pub memory_added_mb: f64,
}

/// One routing decision.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RoutingRecord {
    /// Model name.
    pub model: String,
    /// Worker id, or `new <kind> worker`.
    pub target: String,
    /// The reasons, in the order they were applied.
    pub reasons: Vec<String>,
}

/// One pool event.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PoolEventRecord {
    /// Since the pool started, ms.
    pub at_ms: u64,
    /// `launched`, `placed`, `closed_idle`, `unhealthy`, ...
    pub kind: String,
    /// Worker id.
    pub worker: String,
    /// Details.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> RunSummary {
        serde_json::from_str(
            r#"{"schema_version":1,"run_id":"r","command":"c","started_at":"","finished_at":"",
            "complete":true,"environment":{"harness_version":"","os":"","cpus":1,"browsers":[]},
            "requests":{"issued":0,"succeeded":0,"failed":0,"lost":0},"results":[],"faults":[],
            "recovery_events":[],"thresholds":[]}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_run_that_did_not_finish_does_not_pass() {
        assert!(summary().passed());
        let incomplete = RunSummary {
            complete: false,
            ..summary()
        };
        assert!(!incomplete.passed());
        let stopped = RunSummary {
            stopped_early: Some("interrupted".into()),
            ..summary()
        };
        assert!(!stopped.passed());
        let mut lost = summary();
        lost.requests.lost = 1;
        assert!(!lost.passed());
        let mut sharded = summary();
        sharded.sharding = Some(crate::metrics::ShardingReport {
            correctness: crate::metrics::sharding::ShardCorrectness {
                passed: true,
                checked: 3,
                ..Default::default()
            },
            ..Default::default()
        });
        assert!(sharded.passed());
        let mut wrong = sharded.clone();
        if let Some(sh) = wrong.sharding.as_mut() {
            sh.correctness.passed = false;
        }
        assert!(
            !wrong.passed(),
            "a sharded answer off the reference fails the run"
        );
        let mut gave_up = sharded;
        if let Some(sh) = gave_up.sharding.as_mut() {
            sh.events
                .push(crate::metrics::sharding::ShardEvent::default());
        }
        assert!(!gave_up.passed(), "a recovery that gave up fails the run");
        let mut twice = summary();
        twice.requests.closed_twice = 1;
        assert!(!twice.passed());
    }
}
