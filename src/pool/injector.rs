//! The fault injector: carries out the planned faults (`crate::faults`) against the pool's real
//! browsers, on time, and tells the pool what it did so detection can be timed.
//!
//! Every fault is real: `kill_browser` and `kill_driver` are SIGKILLs by pid, `crash_tab` is
//! a SIGKILL of the page's renderer process(es), `hang` busy-loops the page's
//! main thread, `gpu_device_lost` calls `device.destroy()` in the page, `disconnect` closes the
//! DevTools socket (WebDriver: freezes the driver with SIGSTOP), `slow` delays every run in the
//! page, `page_error` makes every run throw in the page. Must not import `report`, `cli` or
//! terminal crates.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::browser::process::{self, Signal};
use crate::browser::WorkerError;
use crate::faults::{self, FaultSpec, Kind, WorkerView};

use super::attribution::FaultNote;
use super::worker::Worker;
use super::Pool;

/// Why a fault could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InjectError {
    /// The browser's pid is not known.
    #[error("the browser's pid is unknown")]
    NoPid,
    /// The worker has no driver process (it is driven over CDP).
    #[error("no driver process (CDP)")]
    NoDriver,
    /// The signal could not be sent.
    #[error("SIGKILL {pid}: {source}")]
    Signal {
        /// The target pid.
        pid: u32,
        /// Why.
        source: std::io::Error,
    },
    /// The page hook did not answer in time.
    #[error("'{method}' got no answer within 30s")]
    NoAnswer {
        /// The page method.
        method: &'static str,
    },
    /// The page or the browser refused.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// The worker left the pool before the fault could hit it.
    #[error("{0} went away")]
    WentAway(String),
}

/// How long after a lasting fault ends (or after an instant one) an unmatched fault stops
/// waiting for the failure it might cause.
const ABSORB_AFTER: Duration = Duration::from_secs(20);

/// Injects `specs` from now until `horizon` (or cancellation), recording each in the pool. Each
/// fault runs in its own task, so a page fault queued behind a busy worker never delays the
/// next one; the recorded time is when the fault took effect.
pub async fn run(
    pool: Pool,
    specs: Vec<FaultSpec>,
    horizon: Option<Duration>,
    cancel: CancellationToken,
) {
    let start = Instant::now();
    let specs = std::sync::Arc::new(specs);
    let mut inflight = Vec::new();
    for planned in faults::plan(&specs, horizon) {
        tokio::select! {
            () = tokio::time::sleep_until((start + planned.at).into()) => {}
            () = cancel.cancelled() => break,
        }
        let (pool, specs, cancel) = (pool.clone(), specs.clone(), cancel.clone());
        inflight.push(tokio::spawn(async move {
            let spec = &specs[planned.spec];
            let (chosen, waited) = choose_when_routable(&pool, spec, planned.seed, &cancel).await;
            let waited = match waited {
                Some(d) => format!(
                    " (after {:.1} s waiting for a routable target)",
                    d.as_secs_f64()
                ),
                None => String::new(),
            };
            let note = match chosen {
                Err(why) => FaultNote {
                    kind: match &spec.choice {
                        faults::Choice::One(k) => Some(*k),
                        faults::Choice::Random(_) => None,
                    },
                    at_ms: pool.elapsed_ms() as u64,
                    target: String::new(),
                    detail: format!("skipped: {why}{waited}"),
                    injected: false,
                },
                Ok((kind, worker)) => carry_out(&pool, &worker, kind, spec, &waited).await,
            };
            pool.note_fault(note);
        }));
    }
    // Page faults are bounded by their call timeouts; wait so every fault is on record.
    for task in inflight {
        let _ = tokio::time::timeout(Duration::from_secs(40), task).await;
    }
}

/// Carries out `kind` on the worker `worker` names now (`waited` says how long it waited for
/// it), tells the pool's recovery so detection can be timed, and returns the note to record.
/// A generation's planned kill comes here too, outside any schedule.
pub async fn carry_out(
    pool: &Pool,
    worker: &str,
    kind: Kind,
    spec: &FaultSpec,
    waited: &str,
) -> FaultNote {
    let target = pool.members().find(worker);
    pool.recovery().fault_starting(worker, kind);
    let done = match &target {
        Some(s) => inject(s, kind, spec).await,
        None => Err(InjectError::WentAway(worker.to_string())),
    };
    if done.is_ok()
        && matches!(
            kind,
            Kind::Hang | Kind::Slow | Kind::GpuDeviceLost | Kind::PageError | Kind::CorruptAnswer
        )
    {
        pool.recovery().fault_effective(worker, kind);
    }
    if let (Ok(_), Some(s)) = (&done, &target) {
        absorb_later(pool, s, kind, spec);
    }
    FaultNote {
        kind: Some(kind),
        at_ms: pool.elapsed_ms() as u64,
        target: worker.to_string(),
        injected: done.is_ok(),
        detail: match done {
            Ok(d) => format!("{d}{waited}"),
            Err(e) => format!("failed: {e}{waited}"),
        },
    }
}

/// How long a fault whose target is between lives (launching, unhealthy, recovering, its
/// breaker open) waits for a routable one before it is skipped.
const WAIT_FOR_TARGET: Duration = Duration::from_secs(30);

/// Chooses the kind and worker for one occurrence among the routable workers. When none matches
/// the target right now, waits for one that is back in service: routable, serving a model or
/// holding a verified standby copy, no load in flight (a fault planned for Firefox while
/// Firefox recovers from the last one hits it once it serves again, rather than being skipped
/// for a timing accident or cutting the recovery's own load and first run short), up to
/// [`WAIT_FOR_TARGET`] or the end of the injection; returns how long it waited, if it did.
async fn choose_when_routable(
    pool: &Pool,
    spec: &FaultSpec,
    seed: u64,
    cancel: &CancellationToken,
) -> (Result<(Kind, String), faults::FaultError>, Option<Duration>) {
    let start = Instant::now();
    let mut waited = None;
    loop {
        let chosen = faults::choose(spec, seed, &views(pool, waited.is_some()));
        if !matches!(chosen, Err(faults::FaultError::NoTarget { .. }))
            || start.elapsed() >= WAIT_FOR_TARGET
        {
            return (chosen, waited);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = cancel.cancelled() => return (chosen, Some(start.elapsed())),
        }
        waited = Some(start.elapsed());
    }
}

/// The injector running beside a workload.
#[derive(Debug)]
pub struct Running {
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

impl Running {
    /// Ends the injection and waits for the faults in flight, so every fault is on record.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Starts injecting `specs` into `pool` beside a workload bounded by `bound` (a duration is the
/// faults' horizon), until [`Running::stop`] or `cancel`; `None` when there are no faults.
pub fn start(
    pool: &Pool,
    specs: &[FaultSpec],
    bound: super::Bound,
    cancel: &CancellationToken,
) -> Option<Running> {
    if specs.is_empty() {
        return None;
    }
    let horizon = match bound {
        super::Bound::Duration(d) => Some(d),
        super::Bound::Iterations(_) => None,
    };
    let stop = cancel.child_token();
    let task = tokio::spawn(run(pool.clone(), specs.to_vec(), horizon, stop.clone()));
    Some(Running { task, stop })
}

/// What the chooser may know about each routable worker with no load in flight (a fault that
/// cut a recovery's own load short would turn one fault into the failed recovery of another:
/// on a busy machine a rebuild's load outlasted the gap to the next fault and the rebuild gave
/// up, its new tab crashed under it); when `settled`, only those back in service: serving a
/// model or holding a hot standby copy of one (a rebuilt worker serves once its first run is
/// verified; a standby copy is held once its first answer is). A worker that took over as a
/// standby after its model moved elsewhere is back in service: waiting for it to serve again
/// would wait on the next fault elsewhere (in CI a crash planned for Chromium, whose model a
/// disconnect had moved to Firefox, waited 30 s for a promotion and was skipped).
fn views(pool: &Pool, settled: bool) -> Vec<WorkerView> {
    let registry = pool.placements();
    let entries = registry.entries();
    pool.members()
        .live()
        .iter()
        .filter(|s| s.is_routable() && !s.status().loading)
        .filter(|s| !settled || entries.iter().any(|e| registry.holds(e, s)))
        .map(|s| {
            WorkerView {
                id: s.id.clone(),
                browser: s.kind,
                has_driver: s.browser().driver_pid().is_some(),
                has_pid: s.browser().pid().is_some(),
                runs_webgpu: s.runs_on(Backend::Webgpu),
                // The models it serves (a hot standby's copy does not make it their host).
                models: pool
                    .placements()
                    .models_on(s)
                    .iter()
                    .map(|e| e.name().to_string())
                    .collect(),
                shards: pool
                    .placements()
                    .models_on(s)
                    .iter()
                    .filter_map(|e| pool.pipelines().locate(e))
                    .map(|(_, k)| k as u32)
                    .collect(),
            }
        })
        .collect()
}

/// Carries out one fault on `worker`; says what was done.
///
/// # Errors
/// [`InjectError`]: why the fault could not be carried out.
pub async fn inject(worker: &Worker, kind: Kind, spec: &FaultSpec) -> Result<String, InjectError> {
    let browser = worker.browser();
    let page = |method: &'static str, args: serde_json::Value| async move {
        let bound = Duration::from_secs(30);
        let answer = tokio::time::timeout(bound, worker.call_within(method, args, bound))
            .await
            .map_err(|_| InjectError::NoAnswer { method })?;
        Ok::<_, InjectError>(answer?)
    };
    let kill = |pid: u32| {
        process::kill(pid, Signal::Kill).map_err(|source| InjectError::Signal { pid, source })
    };
    match kind {
        Kind::KillBrowser => {
            let pid = browser.pid().ok_or(InjectError::NoPid)?;
            kill(pid)?;
            Ok(format!("SIGKILL to browser pid {pid}"))
        }
        Kind::KillDriver => {
            let pid = browser.driver_pid().ok_or(InjectError::NoDriver)?;
            kill(pid)?;
            Ok(format!("SIGKILL to driver pid {pid}"))
        }
        Kind::CrashTab => Ok(browser.crash_tab().await?),
        Kind::Disconnect => Ok(browser.disconnect(spec.duration).await?),
        Kind::Hang => {
            let ms = spec.duration.as_millis() as u64;
            page("hang", json!({"ms": ms, "defer": true})).await?;
            // The page starts spinning 100 ms after it answers.
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(format!("page main thread busy-looping for {ms} ms"))
        }
        Kind::GpuDeviceLost => {
            let v = page("destroy_gpu_device", json!({})).await?;
            Ok(format!(
                "device.destroy(); lost: {}",
                v.get("lost").map(|l| l.to_string()).unwrap_or_default()
            ))
        }
        Kind::Slow => {
            let ms = spec.delay.as_millis() as u64;
            page("slow", json!({"ms": ms})).await?;
            Ok(format!("every run delayed {ms} ms for {:?}", spec.duration))
        }
        Kind::PageError => {
            let ms = spec.duration.as_millis() as u64;
            page("fail_runs", json!({"ms": ms})).await?;
            Ok(format!("every run throws in the page for {ms} ms"))
        }
        Kind::CorruptAnswer => {
            page("corrupt_answer", json!({"runs": 1})).await?;
            Ok("the next answer has the first value of its first output changed".into())
        }
    }
}

/// Ends lasting faults (`slow`), and after a while forgets a fault that caused no failure so a
/// later, unrelated failure on the same worker is not blamed on it.
fn absorb_later(pool: &Pool, worker: &Worker, kind: Kind, spec: &FaultSpec) {
    let lasting = matches!(
        kind,
        Kind::Hang | Kind::Slow | Kind::Disconnect | Kind::PageError
    );
    let wait = if lasting {
        spec.duration
    } else {
        Duration::ZERO
    };
    let pool = pool.clone();
    let id = worker.id.clone();
    let target = pool.members().find(&id);
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        if kind == Kind::Slow {
            if let Some(s) = &target {
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), s.call("slow", json!({"ms": 0})))
                        .await;
            }
        }
        tokio::time::sleep(ABSORB_AFTER).await;
        pool.recovery().fault_absorbed(&id, kind);
    });
}
