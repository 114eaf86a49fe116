//! `bench recovery`: time to recover after a real `kill_browser`, with a warm spare worker and
//! without, measured side by side in one run.
//!
//! Two pools of the same browser, alternating rounds: one keeps a warm spare (a second worker
//! with the model loaded, serving nothing until a failure promotes it), the other does not. A
//! client runs the model in a closed loop through a fault-tolerant handle; each round SIGKILLs
//! the browser serving it and times the first successful answer, from another worker, that
//! completes after the kill. With a spare, recovery migrates by promoting it (no load); without,
//! it rebuilds (a browser launch plus a load). Between rounds each pool gets back to its shape
//! (a new worker launched, a new spare loaded).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::browser::process::{self, Signal};
use crate::browser::{self, BrowserKind, DriverKind};
use crate::metrics::Percentiles;
use crate::models::{self, Cache};
use crate::pool::{
    Backend, FaultTolerance, HardwarePreferences, Input, ModelHandle, Pool, RecoveryConfig,
    Standbys,
};
use crate::recovery::Strategy;
use crate::server::AssetServer;

use super::{pool_config, BenchError};

/// What `bench recovery` runs.
#[derive(Debug, Clone)]
pub struct RecoveryOptions {
    /// The browser killed.
    pub browser: BrowserKind,
    /// Kills per leg.
    pub rounds: u32,
    /// The model served.
    pub model: String,
    /// The `web/` folder served to the page.
    pub web_dir: std::path::PathBuf,
}

/// One leg: with or without a spare.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryLeg {
    /// Whether the pool kept a warm spare worker.
    pub spare: bool,
    /// Kill to the first successful answer after it, ms, per round.
    pub time_to_recover_ms: Vec<f64>,
    /// Its percentiles.
    pub percentiles: Percentiles,
    /// Ladder level of each round's recovery.
    pub levels: Vec<String>,
    /// Detection ms of each round (the pool's own measure).
    pub detection_ms: Vec<u64>,
    /// Detection to serving again, ms, per round (the pool's own measure).
    pub recovery_ms: Vec<u64>,
}

/// The benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryReport {
    /// Browser and model.
    pub browser: String,
    /// Model served.
    pub model: String,
    /// With a spare.
    pub with_spare: RecoveryLeg,
    /// Without.
    pub without_spare: RecoveryLeg,
    /// p50 without / p50 with.
    pub p50_ratio: f64,
    /// Target for the p50 with a spare, ms.
    pub target_p50_ms: f64,
}

/// Runs the benchmark.
///
/// # Errors
/// Setup failures (browser missing, server, pool start).
pub async fn recovery(
    o: &RecoveryOptions,
    cancel: CancellationToken,
    progress: &dyn Fn(&str),
) -> Result<RecoveryReport, BenchError> {
    let spec = browser::discover()
        .launch_spec(
            o.browser,
            DriverKind::Cdp,
            "",
            false,
            Duration::from_secs(60),
        )
        .or_else(|_| {
            browser::discover().launch_spec(
                o.browser,
                DriverKind::WebDriver,
                "",
                false,
                Duration::from_secs(60),
            )
        })
        .map_err(|e| BenchError::Setup(format!("--browser: {e}")))?;
    let model =
        models::resolve(&o.model).map_err(|e| BenchError::Setup(format!("--model: {e}")))?;
    let cache = Cache::from_env();
    let server = Arc::new(AssetServer::start(o.web_dir.clone(), cache.models_dir()).await?);
    let mut pools: Vec<(Pool, ModelHandle)> = Vec::new();
    for spare in [true, false] {
        let mut config = pool_config(&spec, if spare { 2 } else { 1 }, 3, Duration::from_secs(1));
        config.standbys = if spare {
            Standbys {
                copies: 1,
                memory_kib: u64::MAX,
            }
        } else {
            Standbys::NONE
        };
        // Back to the exact shape between rounds: a worker beyond the minimum (a rebuild's
        // replacement racing the minimum's) is closed, so a pool without a spare never has one.
        config.idle_timeout = Duration::from_secs(1);
        config.recovery = RecoveryConfig {
            strategy: Strategy::Progressive,
            timeout: Duration::from_secs(30),
            max_attempts: 4,
        };
        progress(&format!(
            "starting a {} pool {} a spare ...",
            o.browser,
            if spare { "with" } else { "without" }
        ));
        let pool = match Pool::start(config, server.clone(), None, cancel.clone()).await {
            Ok(p) => p,
            Err(e) => {
                for (p, _) in pools {
                    p.shutdown().await;
                }
                return Err(e.into());
            }
        };
        let hw = HardwarePreferences {
            browser: Some(o.browser),
            backends: Some(vec![Backend::Wasm]),
            measured: None,
        };
        match pool
            .get_model(model.task, model.name, hw, FaultTolerance::Recover)
            .await
        {
            Ok(h) => pools.push((pool, h)),
            Err(e) => {
                pool.shutdown().await;
                for (p, _) in pools {
                    p.shutdown().await;
                }
                return Err(e.into());
            }
        }
    }
    let mut ttr: Vec<Vec<f64>> = vec![Vec::new(), Vec::new()];
    for round in 0..o.rounds {
        for (leg, (pool, handle)) in pools.iter().enumerate() {
            if cancel.is_cancelled() {
                break;
            }
            match kill_once(handle).await {
                Some(ms) => {
                    progress(&format!(
                        "round {}/{}, {} spare: recovered in {ms:.0} ms",
                        round + 1,
                        o.rounds,
                        if leg == 0 { "with" } else { "without" }
                    ));
                    ttr[leg].push(ms);
                }
                None => progress("round skipped: no placement to kill"),
            }
            // Let the pool get back to its shape (the spare replaced) before the next kill.
            settle(pool).await;
        }
    }
    let mut legs = Vec::new();
    for (i, (pool, _)) in pools.into_iter().enumerate() {
        let report = pool.shutdown().await;
        let mine = std::mem::take(&mut ttr[i]);
        legs.push(RecoveryLeg {
            spare: i == 0,
            percentiles: Percentiles::from_ms(&mine).unwrap_or_default(),
            time_to_recover_ms: mine,
            levels: report
                .recoveries
                .iter()
                .map(|r| r.level.map_or("none", |l| l.as_str()).to_string())
                .collect(),
            detection_ms: report.recoveries.iter().map(|r| r.detection_ms).collect(),
            recovery_ms: report.recoveries.iter().map(|r| r.recovery_ms).collect(),
        });
    }
    if let Ok(server) = Arc::try_unwrap(server) {
        server.shutdown().await;
    }
    let without = legs.pop().unwrap_or_else(|| empty(false));
    let with = legs.pop().unwrap_or_else(|| empty(true));
    Ok(RecoveryReport {
        browser: o.browser.to_string(),
        model: model.name.to_string(),
        p50_ratio: without.percentiles.p50 / with.percentiles.p50.max(1e-9),
        with_spare: with,
        without_spare: without,
        target_p50_ms: 1500.0,
    })
}

fn empty(spare: bool) -> RecoveryLeg {
    RecoveryLeg {
        spare,
        time_to_recover_ms: Vec::new(),
        percentiles: Percentiles::default(),
        levels: Vec::new(),
        detection_ms: Vec::new(),
        recovery_ms: Vec::new(),
    }
}

/// Kills the browser serving `handle` while a client loops on it; returns the time from the
/// kill to the first answer that completes after it.
async fn kill_once(handle: &ModelHandle) -> Option<f64> {
    let victim = handle.serving().into_iter().find(|s| s.is_routable())?;
    let pid = victim.browser().pid()?;
    // The client: back-to-back requests, as a user would send them.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let h = handle.clone();
    let client = tokio::spawn(async move {
        loop {
            if let Ok(done) = h.infer(Input::Prepared).await {
                if tx.send((Instant::now(), done.worker)).is_err() {
                    return;
                }
            }
        }
    });
    // Let it run, then kill.
    let _ = rx.recv().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = Instant::now();
    let _ = process::kill(pid, Signal::Kill);
    let recovered = loop {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            // An answer already on its way when the browser died does not count.
            Ok(Some((t, worker))) if t > killed && worker != victim.id => {
                break Some(t.duration_since(killed))
            }
            Ok(Some(_)) => continue,
            _ => break None,
        }
    };
    client.abort();
    recovered.map(|d| d.as_secs_f64() * 1e3)
}

/// Waits (up to 30 s) until the pool is back to its shape: exactly its minimum of workers, all
/// routable, none launching, every warm spare loaded.
async fn settle(pool: &Pool) {
    let until = Instant::now() + Duration::from_secs(30);
    tokio::time::sleep(Duration::from_millis(500)).await;
    while Instant::now() < until {
        let ws = pool.workers();
        if ws.iter().all(|s| s.is_routable()) && pool.is_settled() && pool.at_minimum() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The report as text.
pub fn render(r: &RecoveryReport) -> String {
    let line = |l: &RecoveryLeg| {
        let p = &l.percentiles;
        let mut levels = l.levels.clone();
        levels.sort();
        levels.dedup();
        format!(
            "{:<14} {:>6} {:>9.0} {:>9.0} {:>9.0} {:>9.0}   {}\n",
            if l.spare { "warm spare" } else { "no spare" },
            l.time_to_recover_ms.len(),
            p.p50,
            p.p95,
            l.time_to_recover_ms
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min),
            l.time_to_recover_ms.iter().copied().fold(0.0, f64::max),
            levels.join(", ")
        )
    };
    let mut out = format!(
        "time to recover after kill_browser ({} serving {}): SIGKILL to the first answer after it\n\n{:<14} {:>6} {:>9} {:>9} {:>9} {:>9}   ladder level\n",
        r.browser, r.model, "pool", "kills", "p50 ms", "p95 ms", "min ms", "max ms"
    );
    out.push_str(&line(&r.with_spare));
    out.push_str(&line(&r.without_spare));
    out.push_str(&format!(
        "\np50 without a spare / with one: {:.2}x; target p50 with a spare <= {:.0} ms: {}\n",
        r.p50_ratio,
        r.target_p50_ms,
        if r.with_spare.percentiles.p50 <= r.target_p50_ms {
            "met"
        } else {
            "NOT met"
        }
    ));
    out
}
