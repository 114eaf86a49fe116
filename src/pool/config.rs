//! The pool's configuration, one copy: [`PoolConfig`] is built once from the scenario (by `app`)
//! or by a benchmark, embedded in the engine's `RunPlan`, and shared read-only with every worker
//! through [`PageSettings`] (what a page load needs) and [`WorkerTimeouts`].
//!
//! Plain data, no behaviour beyond defaults. Must not import `report`, `cli` or terminal crates.

use std::time::Duration;

use crate::backend::Backend;
use crate::browser::{BrowserKind, LaunchSpec};
use crate::models::Cache;
use crate::recovery;

use super::router::Preferences;

/// How the pool is shaped and kept.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// One launch template per browser kind the pool may start, in preference order (the page
    /// URL is filled in by the pool from its asset server).
    pub launches: Vec<LaunchSpec>,
    /// The workers launched at start, when not [`PoolConfig::initial_kinds`]' default (a
    /// pipeline's: one per shard, in shard order).
    pub initial: Option<Vec<BrowserKind>>,
    /// Workers kept alive even when idle.
    pub min_workers: usize,
    /// Workers never exceeded.
    pub max_workers: usize,
    /// How pages load models: backend priority and the software-adapter policy.
    pub page: PageSettings,
    /// Browser preference per model type.
    pub preferences: Preferences,
    /// Bounds on page calls.
    pub timeouts: WorkerTimeouts,
    /// How often idle workers are health-checked.
    pub heartbeat_interval: Duration,
    /// How long an idle worker's health check may take.
    pub heartbeat_timeout: Duration,
    /// Silence of a page's own heartbeat after which it is taken for hung.
    pub hang_after: Duration,
    /// Idle time after which a worker beyond the minimum is closed.
    pub idle_timeout: Duration,
    /// Jobs queued on every placement of a model that make the pool add a worker for it.
    pub scale_up_queue: usize,
    /// Model cache (the Rust API's `get_model` prepares models into it).
    pub cache: Cache,
    /// Seed for weights and inputs.
    pub seed: u64,
    /// How failed workers are recovered.
    pub recovery: RecoveryConfig,
    /// Hot standbys: copies of each model loaded on workers that do not serve it, promoted on
    /// a failure (a recovery then costs no load) and replaced in the background.
    pub standbys: Standbys,
}

/// How many hot standbys the pool keeps, and the memory they may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standbys {
    /// Standby copies per model (0: none).
    pub copies: usize,
    /// Memory all standby copies together may take, KiB, counted with each model's measured
    /// load cost (its PSS growth when it was placed).
    pub memory_kib: u64,
}

impl Standbys {
    /// No standbys.
    pub const NONE: Self = Self {
        copies: 0,
        memory_kib: 0,
    };
}

impl PoolConfig {
    /// A pool of exactly one worker per launch, measuring (no recovery, no scaling, no spares):
    /// the benchmark grid's shape. Callers adjust fields from there.
    pub fn fixed(launches: Vec<LaunchSpec>) -> Self {
        let n = launches.len().max(1);
        Self {
            launches,
            initial: None,
            min_workers: n,
            max_workers: n,
            page: PageSettings::default(),
            preferences: Preferences::default(),
            timeouts: WorkerTimeouts::default(),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(30),
            hang_after: super::HANG_AFTER,
            idle_timeout: Duration::from_secs(3600),
            scale_up_queue: usize::MAX,
            cache: Cache::from_env(),
            seed: 42,
            recovery: RecoveryConfig::default(),
            standbys: Standbys::NONE,
        }
    }

    /// The browser kinds launched at start: `initial` when set, else at least `min_workers` of
    /// them, cycling through the launches in order.
    pub fn initial_kinds(&self) -> Vec<BrowserKind> {
        if let Some(initial) = &self.initial {
            return initial.clone();
        }
        let kinds: Vec<BrowserKind> = self.launches.iter().map(|l| l.kind).collect();
        let want = self
            .min_workers
            .max(kinds.len().min(self.max_workers))
            .max(1);
        kinds.iter().copied().cycle().take(want).collect()
    }

    /// The launch template of `kind`, if the pool has one.
    pub fn launch_of(&self, kind: BrowserKind) -> Option<&LaunchSpec> {
        self.launches.iter().find(|l| l.kind == kind)
    }
}

/// What a page needs to load a model: which backends to try, in order, and whether a software
/// WebGPU adapter counts as WebGPU. The one copy of both; workers share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSettings {
    /// Backend priority.
    pub backends: Vec<Backend>,
    /// Whether a software WebGPU adapter counts as WebGPU.
    pub allow_fallback_adapter: bool,
    /// Threads of onnxruntime-web's wasm backend per page; `None`: what it picks.
    pub wasm_threads: Option<u32>,
    /// Each page sends its own heartbeat (every `BEAT_INTERVAL`, watched by upkeep), and runs
    /// wasm inference in onnxruntime-web's proxy worker when its first session is on wasm, so
    /// the main thread keeps beating during a run.
    pub heartbeat: bool,
}

impl Default for PageSettings {
    fn default() -> Self {
        Self {
            backends: Backend::DEFAULT_PRIORITY.to_vec(),
            allow_fallback_adapter: false,
            wasm_threads: None,
            heartbeat: false,
        }
    }
}

/// Bounds on page calls made by a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerTimeouts {
    /// A load (fetch plus session creation).
    pub load: Duration,
    /// One run.
    pub run: Duration,
    /// Anything else (capabilities, unload, health checks).
    pub call: Duration,
}

impl Default for WorkerTimeouts {
    fn default() -> Self {
        Self {
            load: Duration::from_secs(300),
            run: Duration::from_secs(120),
            call: Duration::from_secs(60),
        }
    }
}

/// How the pool recovers failed workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// Ladder start (`None`: failed workers are closed and their requests fail).
    pub strategy: recovery::Strategy,
    /// Bound on one recovery episode.
    pub timeout: Duration,
    /// Attempts per request (the first included) before it counts as failed.
    pub max_attempts: u32,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            strategy: recovery::Strategy::None,
            timeout: Duration::from_secs(30),
            max_attempts: 1,
        }
    }
}

impl RecoveryConfig {
    /// Whether failed workers are recovered at all.
    pub fn enabled(&self) -> bool {
        self.strategy != recovery::Strategy::None
    }
}

/// Fault-tolerance wishes for a model handle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FaultTolerance {
    /// Fail the request when its worker fails.
    #[default]
    None,
    /// Hide worker failures from the caller: the pool recovers (per its recovery strategy and
    /// timeout) and the request runs again on the recovered placement, up to the pool's
    /// `max_attempts`. Only transient failures are hidden; a page error fails at once. A request
    /// succeeds at most once.
    Recover,
}
