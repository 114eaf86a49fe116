//! Routed placement: the router places each model, and one workload drives them all at once,
//! with the planned faults and migrations alongside and live progress (journaled as each
//! request ends, counted for the terminal twice a second). Must not import `report`, `cli` or
//! terminal crates.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::super::router::HardwarePreferences;
use super::super::scheduler::{self, Bound};
use super::super::{injector, FaultTolerance, Journal, ModelHandle, Pool};
use super::{with_earlier, PlacementError, RunEvent, RunObserver, RunPlan};
use crate::metrics::AdaptiveEvaluation;

/// Places every model, then drives the workload over all of them (adapting placements when the
/// plan asks); returns the models that could not be placed and the adaptive evaluations.
pub(super) async fn run(
    plan: &RunPlan,
    pool: &Pool,
    cancel: &CancellationToken,
    observer: &dyn RunObserver,
) -> (Vec<PlacementError>, Option<Vec<AdaptiveEvaluation>>) {
    // Routed runs hide worker failures when the pool recovers them.
    let tolerance = if plan.pool.recovery.enabled() {
        FaultTolerance::Recover
    } else {
        FaultTolerance::None
    };
    let mut errors = Vec::new();
    let mut handles: Vec<ModelHandle> = Vec::new();
    for m in &plan.models {
        if cancel.is_cancelled() {
            return (errors, None);
        }
        let name = &m.prepared.name;
        observer.on_event(&RunEvent::Loading {
            browser: m.pin,
            model: name,
        });
        let hw = HardwarePreferences::steered(m.pin, m.measured.clone(), &plan.pool.page.backends);
        let placed = tokio::select! {
            h = pool.place_model(m.prepared.clone(), hw, tolerance) => h,
            () = cancel.cancelled() => return (errors, None),
        };
        match placed {
            // A model's share of the round-robin is its weight.
            Ok(h) => handles.extend(std::iter::repeat_n(h, m.weight.max(1) as usize)),
            Err(e) => {
                observer.on_event(&RunEvent::Warning {
                    message: format!("{name}: {e}"),
                });
                errors.push((name.clone(), None, e));
            }
        }
    }
    if cancel.is_cancelled() {
        return (errors, None);
    }
    let copies = plan.pool.standbys.copies;
    if copies > 0 && !handles.is_empty() {
        // The workload starts with its standbys loaded: a fault in the first seconds finds
        // them ready (bounded by the load timeout; a copy the budget refuses is not waited for).
        let started = Instant::now();
        let ready = tokio::select! {
            r = pool.standbys_ready(plan.pool.timeouts.load) => r,
            () = cancel.cancelled() => return (errors, None),
        };
        observer.on_event(&RunEvent::Incident {
            line: format!(
                "hot standbys: {ready} in {:.1} s (up to {copies} per model)",
                started.elapsed().as_secs_f64()
            ),
        });
    }
    let mut names: Vec<_> = handles.iter().map(|h| h.model().name.clone()).collect();
    names.dedup();
    observer.on_event(&RunEvent::Driving {
        what: names.join(", "),
    });
    let injector = (!plan.faults.is_empty()).then(|| {
        let horizon = match plan.workload.bound {
            Bound::Duration(d) => Some(d),
            Bound::Iterations(_) => None,
        };
        let stop = cancel.child_token();
        let task = tokio::spawn(injector::run(
            pool.clone(),
            plan.faults.clone(),
            horizon,
            stop.clone(),
        ));
        (task, stop)
    });
    let stop_migrations = cancel.child_token();
    let migrations: Vec<_> = plan
        .migrations
        .iter()
        .cloned()
        .map(|(model, to, at)| {
            let (pool, stop) = (pool.clone(), stop_migrations.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(at) => {}
                    () = stop.cancelled() => return None,
                }
                Some(pool.migrate(&model, to).await)
            })
        })
        .collect();
    let adapting = plan.adaptive.map(|settings| {
        let stop = cancel.child_token();
        let task = tokio::spawn({
            let (pool, stop) = (pool.clone(), stop.clone());
            async move { pool.adapt(settings, stop).await }
        });
        (task, stop)
    });
    drive_with_progress(plan, pool, &handles, cancel, observer).await;
    stop_migrations.cancel();
    let evaluations = match adapting {
        Some((task, stop)) => {
            stop.cancel();
            let evals = task.await.unwrap_or_default();
            for e in &evals {
                observer.on_event(&RunEvent::Incident {
                    line: format!("adaptive: {}: {}", e.model, e.decision),
                });
            }
            Some(evals)
        }
        None => None,
    };
    for m in migrations {
        let line = match m.await {
            Ok(Some(Err(why))) => format!("migration rolled back: {why}"),
            Ok(Some(Ok(done))) => format!("migrated {done}"),
            _ => continue,
        };
        observer.on_event(&RunEvent::Incident { line });
    }
    if let Some((task, stop)) = injector {
        stop.cancel();
        let _ = task.await;
    }
    if !plan.cooldown.is_zero() {
        observer.on_event(&RunEvent::Driving {
            what: format!("nothing: cooling down for {:?}", plan.cooldown),
        });
        tokio::select! {
            () = tokio::time::sleep(plan.cooldown) => {}
            () = cancel.cancelled() => {}
        }
    }
    (errors, evaluations)
}

/// Drives the workload; meanwhile journals progress as requests end and reports live counts,
/// faults and recoveries twice a second.
async fn drive_with_progress(
    plan: &RunPlan,
    pool: &Pool,
    handles: &[ModelHandle],
    cancel: &CancellationToken,
    observer: &dyn RunObserver,
) {
    let drive = scheduler::drive(handles, &plan.workload, cancel);
    tokio::pin!(drive);
    let driving = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let (mut seen_faults, mut seen_recoveries) = (0, 0);
    let journal = pool.journal_handle();
    let commit_progress = |j: &Journal| {
        j.commit(with_earlier(
            pool.progress(driving.elapsed()),
            plan.resumed.as_ref(),
        ));
    };
    loop {
        tokio::select! {
            _ = &mut drive => break,
            () = pool.request_ended(), if journal.is_some() => {
                // Each ended request reaches the log (and the OS) at once, so a harness
                // killed between ticks loses no finished request's count.
                if let Some(j) = journal {
                    commit_progress(j);
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        if let Some(j) = journal {
            commit_progress(j);
            j.tick();
        }
        let live = pool.live(seen_faults, seen_recoveries);
        seen_faults += live.faults.len();
        seen_recoveries += live.recoveries.len();
        for f in live.faults {
            observer.on_event(&RunEvent::Incident {
                line: format!(
                    "fault at {:.1}s: {} on {}: {}",
                    f.at_ms as f64 / 1e3,
                    f.kind_name(),
                    if f.target.is_empty() { "-" } else { &f.target },
                    f.detail
                ),
            });
        }
        for r in live.recoveries {
            observer.on_event(&RunEvent::Incident {
                line: format!(
                    "recovery of {} ({}, seen as {}): {} at level {} after {} ms detection + {} ms",
                    r.worker,
                    r.fault_name(),
                    r.detected_by,
                    if r.succeeded { "recovered" } else { "FAILED" },
                    r.level.map_or("none", |l| l.as_str()),
                    r.detection_ms,
                    r.recovery_ms
                ),
            });
        }
        observer.on_event(&RunEvent::Counts {
            ok: live.succeeded,
            failed: live.failed,
            recovering: live.recovering,
            faults: seen_faults,
        });
    }
}
