//! Routed placement: the router places each model, and one workload drives them all at once
//! (a language model's generations among them: `generation.rs`), with the planned faults,
//! migrations and adaptive moves alongside. Progress reaches the journal and the terminal
//! through the pool's event stream (`live.rs`). Must not import `report`, `cli` or terminal
//! crates.

use std::sync::OnceLock;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::super::ledger::Ticket;
use super::super::router::HardwarePreferences;
use super::super::scheduler::{self, Serve};
use super::super::{injector, ErrorClass, FaultTolerance, ModelHandle, Pool};
use super::generation::{GenerationRequests, GenerationRun};
use super::{PlacementError, RunEvent, RunObserver, RunPlan};
use crate::metrics::{AdaptiveEvaluation, Phase};
use crate::models::Task;

/// What a routed run produced: the models that could not be placed, adaptive routing's
/// evaluations, and every generation request's generation.
pub(super) struct Routed {
    pub errors: Vec<PlacementError>,
    pub evaluations: Option<Vec<AdaptiveEvaluation>>,
    pub generations: Vec<GenerationRun>,
}

/// A request of the workload: a routed model's inference, or a language model's generation.
#[derive(Debug, Clone)]
enum Request {
    Model(ModelHandle),
    Generation(GenerationRequests),
}

impl Request {
    fn model(&self) -> &str {
        match self {
            Self::Model(h) => &h.model().name,
            Self::Generation(g) => g.model(),
        }
    }
}

impl Serve for Request {
    fn ticket(&self, phase: Phase) -> Ticket {
        match self {
            Self::Model(h) => Serve::ticket(h, phase),
            Self::Generation(g) => g.ticket(phase),
        }
    }

    async fn serve(&self, ticket: Ticket, scheduled: Instant, phase: Phase) -> bool {
        match self {
            Self::Model(h) => Serve::serve(h, ticket, scheduled, phase).await,
            Self::Generation(g) => g.serve(ticket, scheduled, phase).await,
        }
    }

    fn reject(&self, ticket: Ticket, scheduled: Instant, phase: Phase, class: ErrorClass) {
        match self {
            Self::Model(h) => Serve::reject(h, ticket, scheduled, phase, class),
            Self::Generation(g) => g.reject(ticket, scheduled, phase, class),
        }
    }
}

/// Places every model (and the language model of the generation requests, if any), then
/// drives the workload over all of them (adapting placements when the plan asks).
pub(super) async fn run(
    plan: &RunPlan,
    pool: &Pool,
    cancel: &CancellationToken,
    observer: &dyn RunObserver,
    driving: &OnceLock<Instant>,
) -> Routed {
    let mut routed = Routed {
        errors: Vec::new(),
        evaluations: None,
        generations: Vec::new(),
    };
    let (errors, evaluations, generation) = place_and_drive(
        plan,
        pool,
        cancel,
        observer,
        driving,
        &mut routed.generations,
    )
    .await;
    routed.errors = errors;
    routed.evaluations = evaluations;
    if let Some(g) = generation {
        routed.generations.extend(g.runs());
    }
    routed
}

/// [`run`]'s work: a generation that could not be placed leaves its failed run in `failed`.
async fn place_and_drive(
    plan: &RunPlan,
    pool: &Pool,
    cancel: &CancellationToken,
    observer: &dyn RunObserver,
    driving: &OnceLock<Instant>,
    failed: &mut Vec<GenerationRun>,
) -> (
    Vec<PlacementError>,
    Option<Vec<AdaptiveEvaluation>>,
    Option<GenerationRequests>,
) {
    // Routed runs hide worker failures when the pool recovers them.
    let tolerance = if plan.pool.recovery.enabled() {
        FaultTolerance::Recover
    } else {
        FaultTolerance::None
    };
    let mut errors = Vec::new();
    let mut handles: Vec<Request> = Vec::new();
    for m in &plan.models {
        if cancel.is_cancelled() {
            return (errors, None, None);
        }
        let name = &m.prepared.name;
        observer.on_event(&RunEvent::Loading {
            browser: m.pin,
            model: name,
        });
        let hw = HardwarePreferences::steered(m.pin, m.measured.clone(), &plan.pool.page.backends);
        let placed = tokio::select! {
            h = pool.place_model(m.prepared.clone(), m.native.clone(), hw, tolerance) => h,
            () = cancel.cancelled() => return (errors, None, None),
        };
        match placed {
            // A model's share of the round-robin is its weight.
            Ok(h) => handles.extend(std::iter::repeat_n(
                Request::Model(h),
                m.weight.max(1) as usize,
            )),
            Err(e) => {
                observer.on_event(&RunEvent::Warning {
                    message: format!("{name}: {e}"),
                });
                errors.push((name.clone(), None, e));
            }
        }
    }
    let mut generation = None;
    if let Some(g) = &plan.generation {
        let preferred = plan.pool.preferences.0.get(&Task::TextGeneration).copied();
        match GenerationRequests::place(g, preferred, pool, cancel, observer).await {
            Ok(requests) => {
                handles.push(Request::Generation(requests.clone()));
                generation = Some(requests);
            }
            Err(run) => failed.extend(run),
        }
    }
    if cancel.is_cancelled() {
        return (errors, None, generation);
    }
    let copies = plan.pool.standbys.copies;
    if copies > 0 && !handles.is_empty() {
        // The workload starts with its standbys loaded: a fault in the first seconds finds
        // them ready (bounded by the load timeout; a copy the budget refuses is not waited for).
        let started = Instant::now();
        let ready = tokio::select! {
            r = pool.standbys_ready(plan.pool.timeouts.load) => r,
            () = cancel.cancelled() => return (errors, None, generation),
        };
        observer.on_event(&RunEvent::StandbysReady {
            per_model: &ready,
            took: started.elapsed(),
            copies,
        });
    }
    let mut names: Vec<_> = handles.iter().map(|h| h.model().to_owned()).collect();
    names.dedup();
    observer.on_event(&RunEvent::Driving {
        what: names.join(", "),
    });
    let injector = injector::start(pool, &plan.faults, plan.workload.bound, cancel);
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
    drive_with_progress(plan, &handles, cancel, driving).await;
    stop_migrations.cancel();
    let evaluations = match adapting {
        Some((task, stop)) => {
            stop.cancel();
            Some(task.await.unwrap_or_default())
        }
        None => None,
    };
    // Each migration's outcome is on the event stream (`migrated`, `migration_rolled_back`).
    for m in migrations {
        let _ = m.await;
    }
    if let Some(faults) = injector {
        faults.stop().await;
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
    (errors, evaluations, generation)
}

/// Drives the workload, marking when it started: from then on the engine's event loop
/// journals progress as requests end (`live.rs`).
async fn drive_with_progress(
    plan: &RunPlan,
    handles: &[Request],
    cancel: &CancellationToken,
    driving: &OnceLock<Instant>,
) {
    let _ = driving.set(Instant::now());
    scheduler::drive(handles, &plan.workload, cancel).await;
}
