//! The engine's event loop: while a run's work goes on, it drains the pool's event stream,
//! hands each event to the observer as it comes (the terminal's progress), and once the
//! workload is driving commits the run's progress to the journal as each request ends (a
//! harness killed between two requests loses no finished request's count). A tick keeps the
//! journal's fsync and snapshots on time. Must not import `report`, `cli` or terminal crates.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::super::events::{PoolEvent, Stamped};
use super::super::Pool;
use super::{with_earlier, RunEvent, RunObserver, RunPlan};

/// How often the journal's fsync and snapshot are looked at.
const JOURNAL_TICK: Duration = Duration::from_millis(500);

/// Runs `work` to its end with the event loop beside it; every event emitted before `work`
/// ended reaches the observer.
pub(super) async fn alongside<T>(
    pool: &Pool,
    plan: &RunPlan,
    observer: &dyn RunObserver,
    driving: &OnceLock<Instant>,
    work: impl Future<Output = T>,
) -> T {
    let Some(mut events) = pool.subscribe() else {
        return work.await;
    };
    let deliver = |e: &Stamped| {
        if let (PoolEvent::RequestEnded { .. }, Some(start)) = (&e.event, driving.get()) {
            commit_progress(pool, plan, *start);
        }
        observer.on_event(&RunEvent::Pool(e));
    };
    let done = tokio_util::sync::CancellationToken::new();
    let forward = async {
        let mut tick = tokio::time::interval(JOURNAL_TICK);
        loop {
            tokio::select! {
                Some(e) = events.recv() => deliver(&e),
                _ = tick.tick() => {
                    if let (Some(j), Some(start)) = (pool.journal(), driving.get()) {
                        commit_progress(pool, plan, *start);
                        j.tick();
                    }
                }
                () = done.cancelled() => break,
            }
        }
        // What the work emitted on its way out.
        while let Ok(e) = events.try_recv() {
            deliver(&e);
        }
    };
    let work = async {
        let out = work.await;
        done.cancel();
        out
    };
    let (out, ()) = tokio::join!(work, forward);
    out
}

/// The run's progress as the journal records it: this part's counts plus an earlier part's.
fn commit_progress(pool: &Pool, plan: &RunPlan, driving: Instant) {
    if let Some(j) = pool.journal() {
        j.commit(with_earlier(
            pool.progress(driving.elapsed()),
            plan.resumed.as_ref(),
        ));
    }
}
