//! Built-in scenarios from flag values: `run` and `stress` compile into the same [`Scenario`] a
//! YAML file gives, so there is one engine path.
//!
//! Inputs: plain structs of the values the command-line flags carry ([`RunFlags`],
//! [`StressFlags`]), already parsed and defaulted by the CLI. Output: an unvalidated
//! [`Scenario`] (the caller runs [`Scenario::validate`] and names the flag of each error with
//! [`flag_for`]).
//!
//! Must not import `cli`, `report`, the argument parser or terminal crates: the binary maps its
//! parsed arguments onto these structs, and this module owns what the flags mean.

use std::time::Duration;

use crate::backend::Backend;
use crate::browser::{BrowserKind, DriverKind, Preferences};
use crate::faults::Kind;
use crate::models;

use super::{
    Fault, FaultChoice, FaultTarget, Generation, Migration, ModelEntry, PlacementMode,
    RecoveryStrategy, Scenario, ShardRecovery, ShardStrategy, ShardTransfer, ShardWorker, Sharding,
    StateSync, WorkloadMode,
};

/// What `run` and `stress` both name: the seed, the models and the pool's browsers.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolFlags {
    /// Seed for generated weights and inputs (and, in `stress`, for faults).
    pub seed: u64,
    /// Model names or aliases, in the order given.
    pub models: Vec<String>,
    /// Browsers in the pool, one worker each to start with.
    pub browsers: Vec<BrowserKind>,
    /// How Chromium-family browsers are driven.
    pub driver: DriverKind,
    /// Backend priority; `None` keeps the scenario default.
    pub backends: Option<Vec<Backend>>,
    /// Threads of onnxruntime-web's wasm backend per page; `None`: what it picks.
    pub wasm_threads: Option<u32>,
}

/// `run`: each model in each browser for a number of warm runs, or, routed, all at once.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFlags {
    /// Seed, models, browsers, driver, backends.
    pub pool: PoolFlags,
    /// Measured warm runs per model and browser.
    pub iterations: u32,
    /// Unmeasured warm-up runs after the first run.
    pub warmup: u32,
    /// Bound on one model load.
    pub load_timeout: Duration,
    /// Bound on one inference request.
    pub run_timeout: Duration,
    /// Time between syncs of the transaction log, when given.
    pub sync_interval: Option<Duration>,
    /// Exercise the crash-safe state: routed, timed, one migration half way.
    pub test_state_management: bool,
    /// The routed, concurrent workload (used with `concurrent_models` or
    /// `test_state_management`).
    pub routed: RoutedFlags,
    /// `--test-sharding`: run the one model sharded.
    pub sharding: Option<ShardFlags>,
}

/// `run --concurrent-models` and its companions: every model at once over a routed pool.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedFlags {
    /// Run all models at once through the router.
    pub concurrent_models: bool,
    /// Concurrent clients (closed loop), or the in-flight budget of an open loop.
    pub concurrency: u32,
    /// Run for this long instead of a fixed number of requests.
    pub duration: Option<Duration>,
    /// Open loop: requests started per second.
    pub rate: Option<f64>,
    /// Workers kept alive; one per browser when `None`.
    pub min_connections: Option<u32>,
    /// Workers never exceeded.
    pub max_connections: u32,
    /// Idle time after which a worker beyond the minimum is closed.
    pub idle_timeout: Duration,
    /// Idle time after the workload, so surplus workers are seen closing.
    pub cooldown: Duration,
    /// Route by this routing profile.
    pub routing_profile: Option<String>,
    /// Move models to measured faster placements during the run.
    pub adaptive: bool,
}

/// The most workers `memory_aware` may plan for when no shard count is given.
pub const MEMORY_AWARE_MOST: u32 = 8;

/// `shard` and `run --test-sharding`: one model split across workers.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardFlags {
    /// Shards; `None` lets `memory_aware` pick.
    pub shards: Option<u32>,
    /// How layers are split.
    pub strategy: ShardStrategy,
    /// What a failed shard gets.
    pub recovery: ShardRecovery,
    /// Parameter memory per worker, MiB.
    pub memory_budget_mib: Option<u64>,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// Kill the browser hosting this shard ...
    pub kill_shard: Option<u32>,
    /// ... this long after the stream starts.
    pub kill_at: Duration,
    /// Per shard: its browser and, optionally, its one backend (empty: browsers in turn).
    pub workers: Vec<ShardWorker>,
    /// How activations travel.
    pub transfer: ShardTransfer,
    /// Workers the pool may have (default: one per shard).
    pub max_connections: Option<u32>,
}

impl ShardFlags {
    /// Adds the sharding block (and the pool and faults it needs) to `s`, whose first model is
    /// the sharded one.
    pub fn apply(&self, s: &mut Scenario) {
        let model = s.models.first().map(|m| m.name.clone()).unwrap_or_default();
        let shards = match (self.shards, self.workers.len()) {
            (None, n) if n > 0 => Some(n as u32),
            (given, _) => given,
        };
        if !self.workers.is_empty() {
            let mut browsers = Vec::new();
            for w in &self.workers {
                if !browsers.contains(&w.browser) {
                    browsers.push(w.browser);
                }
            }
            s.pool.browsers = browsers;
        }
        // memory_aware without a count picks the fewest shards that fit, up to this many.
        let workers = shards.unwrap_or(if self.strategy == ShardStrategy::MemoryAware {
            MEMORY_AWARE_MOST
        } else {
            s.pool.browsers.len().max(2) as u32
        });
        s.pool.placement = PlacementMode::Matrix;
        // By default one more than the shards: the unsharded baseline's worker counts against
        // the maximum like every browser, and runs beside the shards' after the stream (it is
        // skipped, saying why, when a given maximum leaves no room). memory_aware without a
        // count plans over the maximum, so it keeps its own.
        let baseline = u32::from(shards.is_some() || self.strategy != ShardStrategy::MemoryAware);
        s.pool.max_connections = self
            .max_connections
            .unwrap_or((workers + baseline).min(super::validate::MAX_CONNECTIONS));
        s.pool.min_connections = workers.min(s.pool.max_connections);
        s.workload.concurrency = self.concurrency;
        s.sharding = Some(Sharding {
            model,
            shards,
            strategy: self.strategy,
            recovery: self.recovery,
            memory_budget_mib: self.memory_budget_mib,
            workers: self.workers.clone(),
            transfer: self.transfer,
        });
        if let Some(n) = self.kill_shard {
            let mut f = Fault::at(Kind::KillBrowser, self.kill_at);
            f.target = FaultTarget::Shard(n);
            s.faults = vec![f];
        }
    }
}

/// `stress`: a routed, closed-loop workload for a while, with faults and recovery.
#[derive(Debug, Clone, PartialEq)]
pub struct StressFlags {
    /// Seed (also of fault times, kinds and targets), models, browsers, driver, backends.
    pub pool: PoolFlags,
    /// How long to drive the load.
    pub duration: Duration,
    /// Concurrent clients.
    pub concurrency: u32,
    /// The faults to inject; `None` injects none.
    pub faults: Option<FaultFlags>,
    /// How failures are recovered.
    pub recovery: RecoveryStrategy,
    /// Bound on one recovery episode.
    pub recovery_timeout: Duration,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Deadline of one request from its scheduled start, recoveries included.
    pub request_timeout: Duration,
    /// Route by this routing profile.
    pub routing_profile: Option<String>,
    /// Move models to measured faster placements during the run.
    pub adaptive: bool,
}

/// `stress --fault-injection`: one fault stream drawn at random.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultFlags {
    /// One fault about this often (used when `rate` is `None`).
    pub every: Duration,
    /// Faults per minute at Poisson times instead.
    pub rate: Option<f64>,
    /// Kinds to draw from; empty means every kind that fits a live worker.
    pub kinds: Vec<Kind>,
    /// How long a hang, a frozen driver or a slowdown lasts.
    pub duration: Duration,
    /// Delay a `slow` fault adds to every run.
    pub slow_delay: Duration,
}

impl RunFlags {
    /// Compiles the flags into a [`Scenario`] named `run`: a matrix of every model in every
    /// browser, or a routed pool under `--concurrent-models` / `--test-state-management`.
    pub fn to_scenario(&self) -> Scenario {
        let mut s = self.pool.to_scenario("run");
        let w = &mut s.workload;
        w.warmup = self.warmup;
        w.request_timeout = self.run_timeout;
        w.load_timeout = self.load_timeout;
        w.iterations = Some(u64::from(self.iterations));
        w.duration = None;
        let c = &self.routed;
        let n = self.pool.browsers.len() as u32;
        if let Some(every) = self.sync_interval {
            s.state = Some(StateSync {
                sync_interval: every,
                migrations: Vec::new(),
            });
        }
        if self.test_state_management {
            let total = c.duration.unwrap_or(Duration::from_secs(20));
            let state = s.state.get_or_insert_with(StateSync::default);
            if let Some(first) = self.pool.models.first() {
                if let Some(to) = migration_target(first, &self.pool.browsers) {
                    state.migrations.push(Migration {
                        model: first.clone(),
                        to,
                        at: total / 2,
                    });
                }
            }
            w.duration = Some(total);
            w.iterations = None;
        }
        if c.concurrent_models || self.test_state_management {
            s.pool.placement = PlacementMode::Routed;
            s.pool.min_connections = c.min_connections.unwrap_or(n);
            s.pool.max_connections = c.max_connections;
            s.pool.idle_timeout = c.idle_timeout;
            w.concurrency = c.concurrency;
            w.cooldown = c.cooldown;
            if let Some(rate) = c.rate {
                w.mode = WorkloadMode::Open;
                w.rate = Some(rate);
            }
            if c.duration.is_some() {
                w.duration = c.duration;
                w.iterations = None;
            }
        } else {
            s.pool.placement = PlacementMode::Matrix;
            s.pool.min_connections = n;
            s.pool.max_connections = n;
            w.concurrency = 1;
        }
        // Set whatever the placement, so a matrix run refuses them by name.
        s.pool.routing_profile = c.routing_profile.clone();
        s.pool.adaptive = c.adaptive;
        if let Some(sh) = &self.sharding {
            sh.apply(&mut s);
        }
        s
    }
}

impl StressFlags {
    /// Compiles the flags into a [`Scenario`] named `stress`: a routed pool one worker larger
    /// than its browsers, tight heartbeats, a timed closed loop and at most one fault stream.
    pub fn to_scenario(&self) -> Scenario {
        let mut s = self.pool.to_scenario("stress");
        s.pool.placement = PlacementMode::Routed;
        let n = self.pool.browsers.len() as u32;
        s.pool.min_connections = n;
        // One above the browsers: room to rebuild a worker while the failed one is closing.
        s.pool.max_connections = n + 1;
        s.pool.heartbeat_interval = Duration::from_secs(2);
        s.pool.heartbeat_timeout = Duration::from_secs(5);
        let w = &mut s.workload;
        w.mode = WorkloadMode::Closed;
        w.concurrency = self.concurrency;
        w.duration = Some(self.duration);
        w.iterations = None;
        w.warmup = 1;
        w.request_timeout = self.request_timeout;
        s.recovery.strategy = self.recovery;
        s.recovery.timeout = self.recovery_timeout;
        s.recovery.max_attempts = self.max_attempts;
        if let Some(faults) = &self.faults {
            s.faults = vec![faults.to_fault(self.pool.seed)];
            // Under faults a pool that recovers must bring every request to a live copy when
            // one exists: a request that fails while one did is a recovery failure.
            if self.recovery != RecoveryStrategy::None {
                s.thresholds.recovery_failures = Some(0);
            }
        }
        s.pool.routing_profile = self.routing_profile.clone();
        s.pool.adaptive = self.adaptive;
        s
    }
}

impl FaultFlags {
    /// One random-target fault stream; a single kind is written as that kind, without the
    /// duration or delay it does not use.
    fn to_fault(&self, seed: u64) -> Fault {
        let mut f = Fault::at(FaultChoice::Random, Duration::ZERO);
        f.at = None;
        match self.rate {
            Some(rate) => f.rate = Some(rate),
            None => f.every = Some(self.every),
        }
        f.target = FaultTarget::Random;
        f.seed = Some(seed);
        f.duration = Some(self.duration);
        f.delay = Some(self.slow_delay);
        f.kinds = self.kinds.clone();
        if let [one] = self.kinds.as_slice() {
            f.kind = FaultChoice::One(*one);
            f.kinds.clear();
            if !one.has_duration() {
                f.duration = None;
            }
            if *one != Kind::Slow {
                f.delay = None;
            }
        }
        f
    }
}

impl PoolFlags {
    /// The part `run`, `stress` and `shard` share: name, seed, models, browsers, driver and
    /// backends.
    pub fn to_scenario(&self, name: &str) -> Scenario {
        let mut s = Scenario {
            name: name.into(),
            seed: self.seed,
            ..Scenario::default()
        };
        // A language model is a generation cell, not a model cell.
        let (language, single): (Vec<&String>, Vec<&String>) = self
            .models
            .iter()
            .partition(|m| models::is_language_model(m));
        s.generation = language.first().map(|m| Generation {
            model: m.trim().to_ascii_lowercase(),
            prompts: super::defaults::generation_prompts(),
            max_new_tokens: super::defaults::generation_tokens(),
        });
        s.models = single
            .into_iter()
            .map(|m| ModelEntry {
                name: m.clone(),
                browser: None,
                weight: 1,
            })
            .collect();
        s.pool.browsers = self.browsers.clone();
        s.pool.driver = self.driver;
        s.wasm_threads = self.wasm_threads;
        if let Some(b) = &self.backends {
            s.backends = b.clone();
            // Naming webgpu explicitly asks for it even on a software adapter (issue #2).
            s.allow_fallback_adapter = b.contains(&Backend::Webgpu);
        }
        s
    }
}

/// The browser `model` migrates to under `--test-state-management`: the first of `browsers`
/// other than the one the router places it on, so it really moves. `None` with one browser.
fn migration_target(model: &str, browsers: &[BrowserKind]) -> Option<BrowserKind> {
    let placed = first_placement(model, browsers);
    browsers.iter().copied().find(|b| Some(*b) != placed)
}

/// The browser kind the router picks for `model` in an empty pool that may launch `browsers`:
/// its type's preferred kind (the router's own table, [`Preferences`], not a copy of it), else
/// the first browser, as the router launches when no preference applies.
fn first_placement(model: &str, browsers: &[BrowserKind]) -> Option<BrowserKind> {
    // An unknown model fails validation anyway; with no type there is no preference.
    models::resolve(model)
        .ok()
        .and_then(|entry| Preferences::default().browser_for(entry.task, browsers))
        .or_else(|| browsers.first().copied())
}

/// `message` with the scenario key paths it names written as the flags they came from, for
/// errors about flag-built scenarios (`pool.max_connections 3` -> `--max-connections 3`).
pub fn in_flag_words(message: &str) -> String {
    const KEYS: [&str; 6] = [
        "pool.max_connections",
        "pool.min_connections",
        "sharding.shards",
        "sharding.memory_budget_mib",
        "workload.concurrency",
        "pool.browsers",
    ];
    KEYS.iter()
        .fold(message.to_string(), |m, key| m.replace(key, flag_for(key)))
}

/// The flag a scenario key path came from, for errors about flag-built scenarios.
pub fn flag_for(path: &str) -> &'static str {
    match path {
        p if p.starts_with("models") => "--models",
        // `run --models` fills the generation block with a language model.
        p if p.starts_with("generation") => "--models",
        p if p.starts_with("pool.browsers") => "--browsers",
        "backends" => "--backends",
        "workload.concurrency" => "--concurrency",
        "workload.duration" => "--duration",
        "workload.iterations" => "--iterations",
        "workload.rate" | "workload.mode" => "--rate",
        "pool.max_connections" => "--max-connections",
        "pool.min_connections" => "--min-connections",
        "pool.idle_timeout" => "--idle-timeout",
        "pool.routing_profile" => "--routing-profile",
        "pool.adaptive" => "--adaptive",
        p if p.starts_with("pool.grid") => "--grid",
        "pool.serve_addr" => "--serve-addr",
        "pool.tls" => "--tls",
        "pool.standbys" => "--standbys",
        "pool.standby_memory_mib" => "--standby-memory",
        p if p.starts_with("faults") && p.contains("kinds") => "--fault-kinds",
        p if p.starts_with("faults") && p.ends_with("every") => "--fault-every",
        p if p.starts_with("faults") && p.ends_with("rate") => "--fault-rate",
        p if p.starts_with("faults") && p.ends_with("duration") => "--fault-duration",
        p if p.starts_with("recovery") => "--recovery",
        "sharding.shards" => "--shards",
        "sharding.model" => "--model",
        "sharding.memory_budget_mib" => "--memory-budget-mib",
        p if p.starts_with("sharding.workers") => "--placement",
        p if p.starts_with("faults") && p.ends_with("target.shard") => "--kill-shard",
        p if p.starts_with("sharding") => "--strategy",
        _ => "a flag",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BrowserKind::{Chromium, Edge, Firefox};

    fn pool(models: &[&str], browsers: &[BrowserKind]) -> PoolFlags {
        PoolFlags {
            seed: 42,
            models: models.iter().map(|m| m.to_string()).collect(),
            browsers: browsers.to_vec(),
            driver: DriverKind::Cdp,
            backends: None,
            wasm_threads: None,
        }
    }

    fn stress(faults: Option<FaultFlags>) -> StressFlags {
        StressFlags {
            pool: pool(&["bert", "whisper"], &[Chromium, Firefox]),
            duration: Duration::from_secs(120),
            concurrency: 4,
            faults,
            recovery: RecoveryStrategy::Progressive,
            recovery_timeout: Duration::from_secs(30),
            max_attempts: 4,
            request_timeout: Duration::from_secs(40),
            routing_profile: None,
            adaptive: false,
        }
    }

    fn state_run(models: &[&str], browsers: &[BrowserKind]) -> RunFlags {
        RunFlags {
            pool: pool(models, browsers),
            iterations: 10,
            warmup: 2,
            load_timeout: Duration::from_secs(300),
            run_timeout: Duration::from_secs(120),
            sync_interval: None,
            test_state_management: true,
            sharding: None,
            routed: RoutedFlags {
                concurrent_models: false,
                concurrency: 4,
                duration: None,
                rate: None,
                min_connections: None,
                max_connections: 4,
                idle_timeout: Duration::from_secs(30),
                cooldown: Duration::ZERO,
                routing_profile: None,
                adaptive: false,
            },
        }
    }

    fn migrated_to(run: &RunFlags) -> Option<BrowserKind> {
        let s = run.to_scenario();
        s.state?.migrations.first().map(|m| m.to)
    }

    #[test]
    fn stress_pool_has_one_spare_and_tight_heartbeats() {
        let s = stress(None).to_scenario();
        assert_eq!((s.pool.min_connections, s.pool.max_connections), (2, 3));
        assert_eq!(s.pool.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(s.pool.heartbeat_timeout, Duration::from_secs(5));
        assert!(s.faults.is_empty());
        assert!(s.validate().is_ok());
        assert_eq!(s.thresholds.recovery_failures, None);
    }

    #[test]
    fn one_fault_kind_drops_what_it_does_not_use() {
        let faults = FaultFlags {
            every: Duration::from_secs(15),
            rate: None,
            kinds: vec![Kind::KillBrowser],
            duration: Duration::from_secs(20),
            slow_delay: Duration::from_secs(1),
        };
        let flags = stress(Some(faults));
        let s = flags.to_scenario();
        let f = &s.faults[0];
        assert_eq!(f.kind, FaultChoice::One(Kind::KillBrowser));
        assert!(f.kinds.is_empty() && f.duration.is_none() && f.delay.is_none());
        assert_eq!((f.every, f.seed), (Some(Duration::from_secs(15)), Some(42)));
        // Under faults, a pool that recovers may fail no request while a live copy existed;
        // one that does not recover is not held to it.
        assert_eq!(s.thresholds.recovery_failures, Some(0));
        let none = StressFlags {
            recovery: RecoveryStrategy::None,
            ..flags
        };
        assert_eq!(none.to_scenario().thresholds.recovery_failures, None);
    }

    #[test]
    fn migration_moves_away_from_the_routers_choice() {
        // audio prefers firefox, vision chromium.
        assert_eq!(
            migrated_to(&state_run(&["whisper"], &[Chromium, Firefox])),
            Some(Chromium)
        );
        assert_eq!(
            migrated_to(&state_run(&["vit"], &[Chromium, Firefox])),
            Some(Firefox)
        );
        // text_embedding prefers chromium-shell; absent, it goes to another Chromium-family browser.
        assert_eq!(
            migrated_to(&state_run(&["bert"], &[Chromium, Firefox])),
            Some(Firefox)
        );
        assert_eq!(
            migrated_to(&state_run(&["bert"], &[Firefox, Edge])),
            Some(Firefox)
        );
        assert_eq!(migrated_to(&state_run(&["bert"], &[Chromium])), None);
    }

    #[test]
    fn errors_name_the_flag() {
        assert_eq!(flag_for("models[0].name"), "--models");
        assert_eq!(flag_for("faults[0].kinds[1]"), "--fault-kinds");
        assert_eq!(flag_for("workload.rate"), "--rate");
        assert_eq!(flag_for("sharding.shards"), "--shards");
        assert_eq!(flag_for("generation"), "--models");
        assert_eq!(flag_for("sharding.strategy"), "--strategy");
    }
}
