//! Background upkeep, once a second: memory samples, a dead-process check, heartbeats on idle
//! workers, warm spares, a recovery episode for each unhealthy worker (when the pool recovers),
//! closing unhealthy or idle workers beyond the minimum, and launching back up to the minimum.
//! Must not import `report`, `cli` or terminal crates.

use std::time::{Duration, Instant};

use crate::browser::BrowserKind;

use super::attribution::Cause;
use super::attribution::Detection;
use super::events::{CloseReason, LaunchReason, PoolEvent, Process};
use super::recover::recover;
use super::worker::{Lifecycle, Worker};
use super::{standby, Pool};

/// How often the fast checks run: process and driver liveness, and page heartbeats.
const WATCH_TICK: Duration = Duration::from_millis(50);

/// Runs until the pool is cancelled: the fast checks every [`WATCH_TICK`], the rest once a
/// second.
pub(super) async fn run(pool: Pool) {
    let c = pool.config().clone();
    let tolerant = c.recovery.enabled();
    let mut tick = tokio::time::interval(WATCH_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_beat = Instant::now();
    let mut last_slow: Option<Instant> = None;
    let mut last_tick = Instant::now();
    let mut awake_since = Instant::now();
    // The idle echoes wait up to `heartbeat_timeout` for a page that does not answer: in a
    // task of their own, so the fast checks go on meanwhile (awaited here, an echo to a page
    // that had just hung held them up for seconds, and the hang was found by a run's bound
    // instead of by the page's silence).
    let mut echoes: Option<tokio::task::JoinHandle<()>> = None;
    // Memory samples read every process's smaps, a few hundred ms on a busy machine: on a
    // blocking thread of their own, so this task is never held up by its own work and a
    // hold-up it sees (which restarts the silence clock) is the machine's.
    let mut sampling: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = pool.cancel().cancelled() => {
                if let Some(e) = echoes {
                    e.abort();
                }
                return;
            }
        }
        // This task itself was held up (the machine or the harness was stalled): beats may be
        // waiting to be read too, so silence counts only from when it is running again.
        if last_tick.elapsed() > WATCH_TICK * 4 {
            awake_since = Instant::now();
        }
        last_tick = Instant::now();
        pool.record_coverage();
        let workers = pool.members().live();
        let silent = silent_pages(&workers, awake_since.elapsed(), c.hang_after);
        for w in &workers {
            watch(
                &pool,
                c.hang_after,
                w,
                silent.iter().find(|(id, _)| *id == w.id).map(|s| s.1),
            );
        }
        // Unhealthy workers nobody is recovering yet get a recovery episode, at once.
        if tolerant {
            start_episodes(&pool, &workers);
        }
        if last_slow.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            continue;
        }
        last_slow = Some(Instant::now());
        if sampling
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
        {
            let workers = workers.clone();
            sampling = Some(tokio::task::spawn_blocking(move || {
                for w in &workers {
                    w.sample_memory();
                }
            }));
        }
        if last_beat.elapsed() >= c.heartbeat_interval
            && echoes
                .as_ref()
                .is_none_or(tokio::task::JoinHandle::is_finished)
        {
            last_beat = Instant::now();
            let (pool, timeout) = (pool.clone(), c.heartbeat_timeout);
            echoes = Some(tokio::spawn(
                async move { heartbeats(&pool, timeout).await },
            ));
        }
        if c.standbys.copies > 0 && !pool.cancel().is_cancelled() {
            standby::ensure(&pool);
        }
        reap(&pool, tolerant).await;
        keep_minimum(&pool);
    }
}

/// The fast checks of one worker: a browser or driver process that exited (a kill is found
/// within a tick, not at the next request), and a page whose heartbeat went silent (a hung or
/// crashed page, found while a run is in flight).
fn watch(pool: &Pool, hang_after: Duration, w: &Worker, silent: Option<Duration>) {
    let exited = |process: Process, why: &str| {
        if w.mark_noticed(why.into(), Detection::ProcessExit) {
            pool.emit(PoolEvent::ProcessExit {
                worker: w.id.clone(),
                process,
            });
        }
    };
    if w.browser_alive() {
        w.seen_alive();
    } else {
        exited(Process::Browser, "the browser process exited");
        return;
    }
    if !w.driver_alive() {
        exited(Process::Driver, "the driver process exited");
        return;
    }
    if let Some(silent) = silent {
        let why = format!(
            "the page's heartbeat has been silent for {} ms (limit {} ms)",
            silent.as_millis(),
            hang_after.as_millis()
        );
        if w.is_routable() && w.mark_noticed(why.clone(), Detection::Heartbeat) {
            pool.emit(PoolEvent::Unhealthy {
                worker: w.id.clone(),
                why,
            });
        }
    }
}

/// The pages whose heartbeat has been silent past the limit, with how long. Silence counts from
/// `awake` ago at most (this task was not running before). When several pages fall silent at
/// once, the machine is more likely starved than each page hung (a hang or a crash hits one
/// page): then only silence past three times the limit counts.
fn silent_pages(
    workers: &[std::sync::Arc<Worker>],
    awake: Duration,
    limit: Duration,
) -> Vec<(String, Duration)> {
    let silent: Vec<(String, Duration)> = workers
        .iter()
        .filter(|w| w.is_routable())
        .filter_map(|w| Some((w.id.clone(), w.beat_silence()?.min(awake))))
        .filter(|(_, d)| *d > limit)
        .collect();
    if silent.len() < 2 {
        return silent;
    }
    silent.into_iter().filter(|(_, d)| *d > limit * 3).collect()
}

/// Starts a recovery episode for each unhealthy worker nobody is recovering yet.
fn start_episodes(pool: &Pool, workers: &[std::sync::Arc<Worker>]) {
    for w in workers {
        if w.status().lifecycle == Lifecycle::Unhealthy && w.episode.try_lock().is_ok() {
            let seen = if w.browser_alive() && w.driver_alive() {
                Detection::Heartbeat
            } else {
                Detection::ProcessExit
            };
            w.set_lifecycle(Lifecycle::Recovering);
            let (pool, w) = (pool.clone(), w.clone());
            let generation = w.generation();
            tokio::spawn(async move {
                let cause = Cause {
                    seen,
                    model: None,
                    in_flight: w.since_last_good(seen),
                    seen_at: w.status().noticed_at.unwrap_or_else(Instant::now),
                };
                recover(&pool, &w, generation, cause).await;
            });
        }
    }
}

/// Health-checks the idle workers; one that does not answer is marked unhealthy.
async fn heartbeats(pool: &Pool, timeout: Duration) {
    let idle: Vec<_> = pool
        .members()
        .live()
        .into_iter()
        .filter(|w| w.is_routable() && w.queued() == 0)
        .collect();
    let beats = idle.iter().map(|w| async move {
        // Bounded twice: in the queue (the outer timeout) and in the page.
        let r = tokio::time::timeout(
            timeout,
            w.call_within("echo", serde_json::json!({"beat": true}), timeout),
        )
        .await;
        (w.clone(), r)
    });
    for (w, r) in futures::future::join_all(beats).await {
        let why = match r {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no heartbeat answer within {timeout:?}"),
        };
        if w.mark_unhealthy(why.clone()) {
            pool.emit(PoolEvent::Unhealthy {
                worker: w.id.clone(),
                why,
            });
        }
    }
}

/// Closes unhealthy workers (when nothing recovers them), and idle ones beyond the minimum.
async fn reap(pool: &Pool, tolerant: bool) {
    let c = pool.config();
    let now = Instant::now();
    let close = pool.members().take_live(|w, live| {
        let st = w.status();
        let idle = st.queued == 0 && now.duration_since(st.last_active) >= c.idle_timeout;
        match st.lifecycle {
            Lifecycle::Recovering => None,
            Lifecycle::Unhealthy => (!tolerant).then_some(CloseReason::Unhealthy),
            _ => (idle && live > c.min_workers).then_some(CloseReason::Idle),
        }
    });
    pool.close_members(close).await;
}

/// Launches a worker in the background when the pool is below its minimum: of the kind it is
/// short of (a killed Firefox comes back as a Firefox).
fn keep_minimum(pool: &Pool) {
    let c = pool.config();
    if pool.members().counted() >= c.min_workers || pool.cancel().is_cancelled() {
        return;
    }
    let have: Vec<BrowserKind> = pool.members().live().iter().map(|w| w.kind).collect();
    let kinds: Vec<BrowserKind> = c.launches.iter().map(|l| l.kind).collect();
    let wanted: Vec<BrowserKind> = kinds
        .iter()
        .copied()
        .cycle()
        .take(c.min_workers.max(kinds.len()))
        .collect();
    let count = |v: &[BrowserKind], k: BrowserKind| v.iter().filter(|x| **x == k).count();
    let short = wanted
        .iter()
        .copied()
        .find(|&k| count(&wanted, k) > count(&have, k))
        .or_else(|| kinds.first().copied());
    if let Some(kind) = short {
        // In the background: upkeep keeps watching the other workers meanwhile.
        // (launch counts itself in `launching` from its first poll, within the tick.)
        let p = pool.clone();
        tokio::spawn(async move {
            if let Err(e) = p.launch(kind, LaunchReason::Minimum).await {
                p.emit(PoolEvent::LaunchFailed {
                    why: LaunchReason::Minimum,
                    error: e.to_string(),
                });
            }
        });
    }
}
