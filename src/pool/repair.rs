//! Repair aside: a failed worker whose every model went to hot standbys is not closed when its
//! browser lives on (a hung page, a frozen or dropped driver connection, a crashed tab). It
//! serves nothing and takes no faults while a background task waits for the page to answer
//! again (a hang or a frozen driver ends by itself; a connection left unusable is taken up
//! again, see `Browser::reconnect`) or resets it, then takes its loaded models back as
//! standbys. That spares the machine a browser launch and, for most faults, every model load:
//! on 2 cores, the loads a storm of faults asks for are what starves the requests. Must not
//! import `report`, `cli` or terminal crates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::attribution::Cause;
use super::events::{PoolEvent, RetireReason};
use super::worker::Worker;
use super::{standby, ErrorClass, Pool};

/// Why a worker set aside was not repaired.
#[derive(Debug, thiserror::Error)]
enum NotRepaired {
    /// The pool began to shut down.
    #[error("the pool is shutting down")]
    ShuttingDown,
    /// Its browser or driver process exited.
    #[error("its browser or driver exited")]
    Gone,
    /// The reset or the run after it failed.
    #[error(transparent)]
    Worker(#[from] crate::browser::WorkerError),
    /// A model it reloaded answered wrong, or its verifying run failed.
    #[error(transparent)]
    Pool(#[from] super::PoolError),
}

/// How long one echo waits while the page is still busy.
const ECHO_BOUND: Duration = Duration::from_secs(2);

/// Takes `worker` out of every placement and standby list, keeping it a member so upkeep
/// neither launches a replacement nor closes it. Returns false (nothing done) when its
/// browser or driver is gone: then only a retire makes sense.
pub(super) fn set_aside(pool: &Pool, worker: &Arc<Worker>) -> bool {
    if !worker.browser_alive() || !worker.driver_alive() || pool.cancel().is_cancelled() {
        return false;
    }
    pool.placements().unplace_everywhere(worker);
    // Calls still waiting on it end now and run again on the standbys.
    worker.abandon_calls();
    true
}

/// Repairs a worker set aside, within twice the recovery timeout: waits for the page to
/// answer (unless the answer says its session is lost for good), else resets it; either way
/// a real run of a model it holds must answer. Then it serves again, as a standby of what
/// it holds; if not, it is retired.
pub(super) async fn repair_aside(pool: &Pool, worker: &Arc<Worker>, cause: &Cause) {
    let started = Instant::now();
    let repaired = tokio::select! {
        r = repair_in_place(pool, worker, cause) => r,
        () = pool.cancel().cancelled() => Err(NotRepaired::ShuttingDown),
    };
    match repaired {
        Ok(how) => {
            worker.breaker_outcome(true);
            worker.repaired();
            let held = standby::rejoin(pool, worker);
            pool.emit(PoolEvent::Rejoined {
                worker: worker.id.clone(),
                how,
                after_ms: started.elapsed().as_millis() as u64,
                standby_of: held,
            });
        }
        Err(why) => pool.retire(worker, RetireReason::NotRepaired(why.to_string())),
    }
}

async fn repair_in_place(
    pool: &Pool,
    worker: &Arc<Worker>,
    cause: &Cause,
) -> Result<String, NotRepaired> {
    let bound = pool.config().recovery.timeout;
    let gone = || !worker.browser_alive() || !worker.driver_alive();
    // A hung page and a frozen driver come back by themselves: wait for an answer first.
    if answers_within(worker, bound).await && worker.probe(cause.model.as_deref()).await.is_ok() {
        return Ok("the page answered again".into());
    }
    if gone() {
        return Err(NotRepaired::Gone);
    }
    let reset = Instant::now();
    worker.reset(bound).await?;
    // What it reloaded serves again only once its answers are verified.
    super::first_answer::verify_reloaded(pool, worker).await?;
    Ok(format!(
        "page reopened and models reloaded in {} ms",
        reset.elapsed().as_millis()
    ))
}

/// Echoes the page until it answers, for up to `bound`. A connection that a timed-out call
/// or a dropped socket left unusable is taken up again on the way (the page keeps its
/// models). False at once on an error that waiting does not mend (a crashed tab, a session
/// lost for good).
async fn answers_within(worker: &Worker, bound: Duration) -> bool {
    let until = Instant::now() + bound;
    let browser = worker.browser();
    while Instant::now() < until {
        let echo = worker.call_within("echo", json!({"probe": true}), ECHO_BOUND);
        match tokio::time::timeout(ECHO_BOUND + Duration::from_secs(1), echo).await {
            Ok(Ok(_)) => return true,
            Ok(Err(e)) => match ErrorClass::of(&e) {
                // Still busy: a hung page, a frozen driver.
                ErrorClass::Timeout | ErrorClass::Driver => {}
                // Unusable or dropped: worth another try only if it can be taken up again
                // (connecting to a tab whose main thread is still busy waits: bounded).
                ErrorClass::SessionLost | ErrorClass::Disconnect => {
                    let resumed = tokio::time::timeout(ECHO_BOUND, browser.reconnect()).await;
                    if matches!(resumed, Ok(Ok(false))) {
                        return false;
                    }
                }
                _ => return false,
            },
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}
