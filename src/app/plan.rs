//! The one config path: a resolved [`RunConfig`] compiled into the engine's [`RunPlan`], with its
//! [`PoolConfig`] built once here (workers share it read-only), plus the scenario's thresholds
//! as metric limits. Model names in the scenario are catalog names by now
//! ([`canonicalize`] ran once in `RunConfig::resolve`), so nothing here resolves an alias.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{LoadContext, LoadKind};
use crate::models::{self, ModelSpec, PreparedModel};
use crate::pool::engine::pipeline::PipelinePlan;
use crate::pool::engine::PlannedModel;
use crate::pool::{
    self, Bound, PageSettings, Placement, PoolConfig, RecoveryConfig, RunPlan, Schedule,
    WorkerTimeouts,
};
use crate::scenario::{self, PlacementMode, RecoveryStrategy, Scenario, WorkloadMode};
use crate::{faults, recovery};

use super::{RunConfig, UsageError};

/// Rewrites every model name in `sc` (its models, migrations, fault targets and threshold keys)
/// to its catalog name, and returns the models' catalog entries in order: the one place an
/// alias is resolved.
///
/// # Errors
/// [`UsageError`] naming the unknown model.
pub(super) fn canonicalize(sc: &mut Scenario) -> Result<Vec<&'static ModelSpec>, UsageError> {
    let specs = sc
        .models
        .iter()
        .map(|m| models::resolve(&m.name).map_err(|e| UsageError(format!("--models: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    for (m, spec) in sc.models.iter_mut().zip(&specs) {
        m.name = spec.name.to_string();
    }
    // Validation named any unknown model in these already; a name it let through stays as is.
    let canonical = |name: &mut String| {
        if let Ok(spec) = models::resolve(name) {
            *name = spec.name.to_string();
        }
    };
    for m in sc.state.iter_mut().flat_map(|st| st.migrations.iter_mut()) {
        canonical(&mut m.model);
    }
    for f in &mut sc.faults {
        if let scenario::FaultTarget::Model(m) = &mut f.target {
            canonical(m);
        }
    }
    for keyed in [&mut sc.thresholds.p95_ms, &mut sc.thresholds.p99_ms] {
        *keyed = std::mem::take(keyed)
            .into_iter()
            .map(|(mut k, v)| {
                canonical(&mut k);
                (k, v)
            })
            .collect();
    }
    Ok(specs)
}

/// How a run of `sc` loads its cells, for its `run.json` and the history: faults injected
/// make it `under_faults` whatever the placement (recoveries and retries share the machine); a
/// sharded run is `sharded`; the matrix `isolated` (one cell at a time); otherwise `routed`.
/// The clients are the workload's concurrency (an open loop's bound on requests in flight),
/// with its rate.
pub(super) fn load_context(sc: &Scenario) -> LoadContext {
    let context = if !sc.faults.is_empty() {
        LoadKind::UnderFaults
    } else if sc.sharding.is_some() {
        LoadKind::Sharded
    } else if sc.pool.placement == PlacementMode::Matrix {
        LoadKind::Isolated
    } else {
        LoadKind::Routed
    };
    let w = &sc.workload;
    LoadContext {
        context,
        clients: w.concurrency.max(1),
        rate_per_s: match w.mode {
            WorkloadMode::Open => w.rate,
            WorkloadMode::Closed => None,
        },
    }
}

/// Compiles the resolved scenario and its prepared models into the engine's plan.
pub(super) fn build_plan(config: &RunConfig, prepared: Vec<Arc<PreparedModel>>) -> RunPlan {
    let sc = &config.scenario;
    let w = &sc.workload;
    let routed = sc.pool.placement == PlacementMode::Routed;
    let recovery = if routed {
        RecoveryConfig {
            strategy: match sc.recovery.strategy {
                RecoveryStrategy::Progressive => recovery::Strategy::Progressive,
                RecoveryStrategy::Immediate => recovery::Strategy::Immediate,
                RecoveryStrategy::None => recovery::Strategy::None,
            },
            timeout: sc.recovery.timeout,
            max_attempts: sc.recovery.max_attempts,
        }
    } else {
        // Matrix cells measure each browser as it is.
        RecoveryConfig::default()
    };
    let mut pool = PoolConfig::fixed(config.launches.clone());
    pool.page = PageSettings {
        backends: sc.backends.clone(),
        allow_fallback_adapter: sc.allow_fallback_adapter,
        wasm_threads: sc.wasm_threads,
        // A pool that recovers watches each page's own heartbeat, which needs the main thread
        // free while a model runs.
        heartbeat: recovery.enabled(),
    };
    pool.preferences = preferences(sc);
    pool.cache = config.cache.clone();
    pool.seed = sc.seed;
    pool.timeouts = timeouts(w, recovery.enabled());
    pool.recovery = recovery;
    if routed {
        pool.min_workers = sc.pool.min_connections as usize;
        pool.max_workers = (sc.pool.max_connections as usize)
            .max(pool.min_workers)
            .max(1);
        pool.idle_timeout = sc.pool.idle_timeout;
        pool.heartbeat_interval = sc.pool.heartbeat_interval;
        pool.heartbeat_timeout = sc.pool.heartbeat_timeout;
        pool.hang_after = sc.pool.hang_after;
        // The room above min_connections is for rebuilding failed workers when faults are
        // injected, not for scaling up on queues.
        pool.scale_up_queue = if sc.faults.is_empty() { 2 } else { usize::MAX };
        let faulted = recovery.enabled() && !sc.faults.is_empty();
        pool.standbys = standbys(sc, faulted, pool.max_workers);
        // Each copy needs a worker of its own beside the one serving the model (validation
        // refuses more copies than max_connections leaves room for).
        pool.min_workers = pool.min_workers.max(pool.standbys.copies + 1);
    }
    let per_model = w.iterations.unwrap_or(10);
    let bound = match (w.duration, routed) {
        (Some(d), _) => Bound::Duration(d),
        (None, false) => Bound::Iterations(per_model),
        // Iterations are per model, as in the matrix.
        (None, true) => Bound::Iterations(per_model * prepared.len() as u64),
    };
    let mut plan = RunPlan::matrix(Vec::new(), pool, 0, w.warmup);
    plan.models = prepared
        .into_iter()
        .zip(&sc.models)
        .map(|(prepared, m)| PlannedModel {
            measured: measured(config, &prepared),
            prepared,
            pin: m.browser,
            weight: m.weight,
            native: None,
        })
        .collect();
    plan.workload.request_timeout = w.request_timeout;
    plan.workload.bound = bound;
    plan.workload.schedule = match (w.mode, w.rate) {
        (WorkloadMode::Open, Some(rate)) => Schedule::Open {
            rate_per_s: rate,
            max_in_flight: w.concurrency.max(1) as usize,
        },
        _ => Schedule::Closed {
            concurrency: w.concurrency.max(1) as usize,
        },
    };
    if routed {
        plan.placement = Placement::Routed;
        plan.cooldown = w.cooldown;
        plan.migrations = sc
            .state
            .iter()
            .flat_map(|st| &st.migrations)
            .map(|m| (m.model.clone(), m.to, m.at))
            .collect();
        plan.workload.pin_clients = !sc.faults.is_empty();
        plan.adaptive = sc.pool.adaptive.then(pool::AdaptSettings::default);
        plan.faults = faults(sc);
    }
    plan
}

/// Compiles a sharded scenario into the engine's plan: a pool whose first workers are the
/// pipeline's, one per shard in shard order, that recovers a failed shard by the pipeline's
/// step of the ladder and never scales (a pipeline's workers serve even when idle), the closed
/// loop of the workload, and every scenario fault (a `shard: N` target hits that shard's
/// worker).
pub(super) fn build_pipeline_plan(config: &RunConfig, pipeline: PipelinePlan) -> RunPlan {
    let sc = &config.scenario;
    let w = &sc.workload;
    let mut pool = PoolConfig::fixed(config.launches.clone());
    let mut backends = sc.backends.clone();
    for b in pipeline.places.iter().filter_map(|p| p.1) {
        if !backends.contains(&b) {
            backends.push(b);
        }
    }
    pool.page = PageSettings {
        backends,
        // Naming webgpu for a shard counts a software adapter, as `--backends webgpu` does.
        allow_fallback_adapter: sc.allow_fallback_adapter
            || pipeline
                .places
                .iter()
                .any(|p| p.1 == Some(crate::backend::Backend::Webgpu)),
        wasm_threads: sc.wasm_threads,
        heartbeat: false,
    };
    pool.initial = Some(pipeline.places.iter().map(|p| p.0).collect());
    pool.min_workers = 0;
    pool.max_workers = (sc.pool.max_connections as usize).max(pipeline.places.len());
    // A pipeline's workers serve even when idle: upkeep never closes one.
    pool.idle_timeout = Duration::from_secs(24 * 3600);
    pool.heartbeat_interval = sc.pool.heartbeat_interval;
    pool.heartbeat_timeout = sc.pool.heartbeat_timeout;
    pool.hang_after = sc.pool.hang_after;
    pool.cache = config.cache.clone();
    pool.seed = sc.seed;
    pool.timeouts = timeouts(w, true);
    pool.recovery = RecoveryConfig {
        strategy: recovery::Strategy::Progressive,
        timeout: sc.recovery.timeout,
        max_attempts: sc.recovery.max_attempts,
    };
    let mut plan = RunPlan::matrix(Vec::new(), pool, 0, w.warmup);
    plan.placement = Placement::Pipeline;
    plan.workload.request_timeout = w.request_timeout;
    plan.workload.bound = match w.duration {
        Some(d) => Bound::Duration(d),
        None => Bound::Iterations(w.iterations.unwrap_or(10)),
    };
    plan.workload.schedule = Schedule::Closed {
        concurrency: w.concurrency.max(1) as usize,
    };
    plan.faults = faults(sc);
    plan.pipeline = Some(pipeline);
    plan
}

/// The bounds on a worker's page calls, the one place they are resolved: a run's is the
/// scenario's, else a quarter of the request timeout in a pool that recovers (a hung page must
/// be noticed with time left to recover and run the request again inside its deadline), else
/// the request timeout.
fn timeouts(w: &scenario::Workload, recovers: bool) -> WorkerTimeouts {
    WorkerTimeouts {
        load: w.load_timeout,
        run: match w.run_timeout {
            Some(run) => run,
            None if recovers => w.request_timeout / 4,
            None => w.request_timeout,
        },
        ..WorkerTimeouts::default()
    }
}

/// The routing profile's choice for `model`, as the router takes it.
fn measured(config: &RunConfig, model: &PreparedModel) -> Option<pool::Measured> {
    let profile = config.profile.as_ref()?;
    let c = profile.choice(&model.name, model.task.as_str())?;
    let file = config
        .scenario
        .pool
        .routing_profile
        .as_deref()
        .unwrap_or("");
    Some(pool::Measured {
        browser: c.browser.parse().ok()?,
        backend: c.backend.parse().ok()?,
        reason: format!("{} (routing profile {file})", c.reason),
    })
}

/// Standby copies (the scenario's; by default 1 when the pool recovers from injected faults and
/// `max_workers` leaves room for a second worker), and their memory budget (the scenario's, or
/// half the memory available now).
fn standbys(sc: &Scenario, faulted: bool, max_workers: usize) -> pool::Standbys {
    let copies = match sc.pool.standbys {
        Some(n) => n as usize,
        None if faulted => max_workers.saturating_sub(1).min(1),
        None => 0,
    };
    if copies == 0 {
        return pool::Standbys::NONE;
    }
    let memory_kib = match sc.pool.standby_memory_mib {
        Some(mib) => mib.saturating_mul(1024),
        None => mem_available_kib().map_or(4 * 1024 * 1024, |kib| kib / 2),
    };
    pool::Standbys { copies, memory_kib }
}

/// `MemAvailable` of `/proc/meminfo`, KiB.
fn mem_available_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The scenario's faults as the injector takes them.
fn faults(sc: &Scenario) -> Vec<faults::FaultSpec> {
    sc.faults
        .iter()
        .enumerate()
        .map(|(i, f)| fault_spec(sc, i, f))
        .collect()
}

/// One scenario fault as the injector takes it, defaults applied (duration 5s, delay 250ms,
/// seed = scenario seed + index).
fn fault_spec(sc: &Scenario, i: usize, f: &scenario::Fault) -> faults::FaultSpec {
    use scenario::{FaultChoice, FaultTarget as T};
    faults::FaultSpec {
        choice: match f.kind {
            FaultChoice::Random => faults::Choice::Random(f.kinds.clone()),
            FaultChoice::One(kind) => faults::Choice::One(kind),
        },
        when: match (f.at, f.every, f.rate) {
            (Some(at), _, _) => faults::When::At(at),
            (_, Some(every), _) => faults::When::Every(every),
            (_, _, Some(rate)) => faults::When::Rate(rate),
            // Validation requires a schedule; an unscheduled fault never fires.
            _ => faults::When::Rate(0.0),
        },
        count: f.count,
        seed: f.seed.unwrap_or(sc.seed.wrapping_add(i as u64)),
        target: match &f.target {
            T::Random => faults::Target::Random,
            T::Browser(b) => faults::Target::Browser(*b),
            T::Worker(w) => faults::Target::Worker(w.clone()),
            T::Model(m) => faults::Target::Model(m.clone()),
            T::Shard(k) => faults::Target::Shard(*k),
        },
        duration: f.duration.unwrap_or(Duration::from_secs(5)),
        delay: f.delay.unwrap_or(Duration::from_millis(250)),
    }
}

/// The scenario's per-type browser preferences over the built-in defaults.
fn preferences(sc: &Scenario) -> pool::Preferences {
    let mut p = pool::Preferences::default();
    let given = [
        (models::Task::Audio, sc.pool.preferences.audio),
        (models::Task::Vision, sc.pool.preferences.vision),
        (
            models::Task::TextEmbedding,
            sc.pool.preferences.text_embedding,
        ),
        (
            models::Task::TextGeneration,
            sc.pool.preferences.text_generation,
        ),
    ];
    for (task, kind) in given {
        if let Some(k) = kind {
            p.0.insert(task, k);
        }
    }
    p
}

/// The scenario's thresholds as metric limits.
pub(super) fn limits(sc: &Scenario) -> crate::metrics::thresholds::Limits {
    crate::metrics::thresholds::Limits {
        lost_requests: sc.thresholds.lost_requests,
        error_rate: sc.thresholds.error_rate,
        recovery_failures: sc.thresholds.recovery_failures,
        p95_ms: sc.thresholds.p95_ms.clone(),
        p99_ms: sc.thresholds.p99_ms.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin(name: &str) -> Scenario {
        scenario::load_str(name, scenario::builtin(name).expect("a built-in scenario"))
            .expect("it parses")
    }

    #[test]
    fn a_run_says_how_it_loaded_its_cells() {
        let context = |name: &str| load_context(&builtin(name)).to_string();
        // The matrix, here with two clients on each cell in turn.
        assert_eq!(context("basic"), "isolated x2");
        assert_eq!(context("concurrent-models"), "routed x6");
        // An open loop keeps its arrival rate.
        assert_eq!(context("stress"), "routed 30/s x16");
        // Faults win over the placement: recoveries share the machine.
        assert_eq!(context("fault-tolerance"), "under_faults x4");
        assert_eq!(context("sharding"), "under_faults x3");
        let mut sharded = builtin("sharding");
        sharded.faults.clear();
        assert_eq!(load_context(&sharded).to_string(), "sharded x3");
        // The flags of a plain `run` compile to a matrix of one client.
        let mut run = builtin("basic");
        run.workload.concurrency = 1;
        assert_eq!(load_context(&run).to_string(), "isolated");
    }
}
