//! Part 2 of `bench overhead`: a tiny wasm model under a closed loop through the pool and the
//! scheduler, with one worker and then two.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::browser::{process, LaunchSpec};
use crate::metrics::Phase;
use crate::models;
use crate::pool::scheduler::{self, Bound, Schedule, Workload};
use crate::pool::{Backend, FaultTolerance, HardwarePreferences, Pool, WorkerTimeouts};
use crate::server::AssetServer;

use super::{pool_config, BenchError, CpuUse, Leg, OverheadOptions, Series, Throughput};

/// Part 2: 1 worker, then up to 2, each under the same closed loop for `o.duration`.
pub(super) async fn throughput(
    o: &OverheadOptions,
    spec: &LaunchSpec,
    server: &Arc<AssetServer>,
    cancel: &CancellationToken,
    progress: &dyn Fn(&str),
) -> Result<Option<Throughput>, BenchError> {
    let model =
        models::resolve(&o.model).map_err(|e| BenchError::Setup(format!("--model: {e}")))?;
    let mut legs = Vec::new();
    let mut backend = Backend::Wasm;
    for workers in [1, 2] {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        progress(&format!(
            "throughput: {} on {workers} {} worker(s), {} clients, {:?} ...",
            model.name, spec.kind, o.concurrency, o.duration
        ));
        let (leg, b) = leg(o, model, spec, workers, server, cancel).await?;
        progress(&format!(
            "throughput: {workers} worker(s): {:.1} requests/s",
            leg.requests_per_s
        ));
        backend = b;
        legs.push(leg);
    }
    let (Some(two), Some(one)) = (legs.pop(), legs.pop()) else {
        return Ok(None);
    };
    if cancel.is_cancelled() {
        return Ok(None);
    }
    Ok(Some(Throughput {
        model: model.name.to_string(),
        backend,
        concurrency: o.concurrency,
        ratio: two.requests_per_s / one.requests_per_s.max(f64::MIN_POSITIVE),
        one,
        two,
    }))
}

/// One throughput leg: start a pool allowing `workers`, place the model, warm up until it is
/// placed on every worker the pool may have (the pool only places a second copy by scaling up
/// under queued demand), then drive the measured window and count from the pool's samples.
async fn leg(
    o: &OverheadOptions,
    model: &models::ModelSpec,
    spec: &LaunchSpec,
    workers: usize,
    server: &Arc<AssetServer>,
    cancel: &CancellationToken,
) -> Result<(Leg, Backend), BenchError> {
    let config = pool_config(spec, 1, workers, Duration::from_secs(5));
    let pool = Pool::start(config, server.clone(), None, cancel.clone()).await?;
    let hw = HardwarePreferences {
        browser: Some(spec.kind),
        backends: Some(vec![Backend::Wasm]),
        measured: None,
    };
    let handle = match pool
        .get_model(model.task, model.name, hw, FaultTolerance::None)
        .await
    {
        Ok(h) => h,
        Err(e) => {
            pool.shutdown().await;
            return Err(e.into());
        }
    };
    let workload = |bound| Workload {
        schedule: Schedule::Closed {
            concurrency: o.concurrency,
        },
        bound,
        warmup: 0,
        request_timeout: WorkerTimeouts::default().run,
        pin_clients: false,
    };
    let h = std::slice::from_ref(&handle);
    let placed = || {
        pool.workers()
            .iter()
            .filter(|s| s.backend_of(model.name).is_some())
            .count()
    };
    let prime_until = Instant::now() + Duration::from_secs(120);
    while placed() < workers && Instant::now() < prime_until && !cancel.is_cancelled() {
        scheduler::drive(
            h,
            &workload(Bound::Duration(Duration::from_secs(1))),
            cancel,
        )
        .await;
    }
    // Equal warm time for every leg once placed (JIT tiers, caches).
    scheduler::drive(
        h,
        &workload(Bound::Duration(Duration::from_secs(2))),
        cancel,
    )
    .await;
    let placed_on = placed();
    let slots = pool.workers();
    let backend = slots
        .iter()
        .find_map(|s| s.backend_of(model.name))
        .unwrap_or(Backend::Wasm);
    let wasm_threads = slots
        .iter()
        .map(|s| {
            let env = s.status().env;
            let n = env.and_then(|e| e.wasm["num_threads"].as_u64());
            (s.id.clone(), n.unwrap_or(0))
        })
        .collect();
    let pids: Vec<u32> = slots.iter().filter_map(|s| s.status().pid).collect();
    let before = CpuTimes::now(&pids);
    let from_ms = pool.elapsed_ms();
    let drove = scheduler::drive(h, &workload(Bound::Duration(o.duration)), cancel).await;
    let cpu = CpuTimes::now(&pids).since(&before);
    let report = pool.shutdown().await;
    let mut ok = Vec::new();
    let mut page = Vec::new();
    let (mut succeeded, mut failed) = (0, 0);
    let mut per_worker = BTreeMap::new();
    for s in report
        .samples
        .iter()
        .filter(|s| s.phase == Phase::Measure && s.scheduled_ms >= from_ms && s.model == model.name)
    {
        if s.ok {
            succeeded += 1;
            ok.push(Duration::from_secs_f64(s.latency_ms / 1e3));
            page.push(Duration::from_secs_f64(s.page_ms / 1e3));
            *per_worker.entry(s.worker.clone()).or_insert(0) += 1;
        } else {
            failed += 1;
        }
    }
    let measured_s = drove.measured.as_secs_f64();
    let leg = Leg {
        workers,
        placed_on,
        succeeded,
        failed,
        measured_s,
        requests_per_s: succeeded as f64 / measured_s.max(1e-9),
        latency: Series::of(&ok),
        page: Series::of(&page),
        per_worker,
        wasm_threads,
        cpu,
    };
    Ok((leg, backend))
}

/// CPU time counters, in seconds, read from `/proc` (Linux; zero elsewhere).
#[derive(Debug, Clone, Copy, Default)]
struct CpuTimes {
    wall: Option<Instant>,
    harness: f64,
    browsers: f64,
    machine_busy: f64,
}

impl CpuTimes {
    /// Reads this process, the process trees of `pids` (the workers' browsers) and the machine.
    fn now(pids: &[u32]) -> Self {
        Self {
            wall: Some(Instant::now()),
            harness: process::cpu_s("self").unwrap_or(0.0),
            browsers: process::trees_cpu_s(pids),
            machine_busy: machine_busy_s().unwrap_or(0.0),
        }
    }

    /// Average CPUs kept busy between `before` and now.
    fn since(&self, before: &Self) -> CpuUse {
        let wall = match (self.wall, before.wall) {
            (Some(a), Some(b)) => a.duration_since(b).as_secs_f64().max(1e-9),
            _ => 1.0,
        };
        let per = |a: f64, b: f64| ((a - b) / wall).max(0.0);
        CpuUse {
            harness_cpus: per(self.harness, before.harness),
            browsers_cpus: per(self.browsers, before.browsers),
            machine_cpus: per(self.machine_busy, before.machine_busy),
        }
    }
}

/// Busy time of every CPU of the machine (everything but idle and iowait), s.
fn machine_busy_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<f64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: f64 = v.iter().take(8).sum::<f64>() - v.get(3)? - v.get(4)?;
    Some(busy / process::clock_ticks())
}
