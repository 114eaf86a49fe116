//! Matrix placement: every model in every browser, one cell at a time, each cell measured as
//! the browser is (no recovery: a failing browser shows in its cell), then the language
//! model's generation cell, if any ([`super::generation`]). While a cell's measured
//! runs go, nothing else computes in its browser, so the CPU time its browser processes spend
//! then is the cell's: [`CellCores`]. Must not import `report`, `cli` or terminal crates.

use tokio_util::sync::CancellationToken;

use crate::browser::{process, BrowserKind};

use super::super::router::HardwarePreferences;
use super::super::scheduler::{self, Bound, Workload};
use super::super::{Backend, FaultTolerance, Pool};
use super::{PlacementError, RunEvent, RunObserver, RunPlan};

/// The cores one cell's browser processes kept busy during its measured runs: their CPU time
/// (from `/proc`) over the runs' wall time.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CellCores {
    /// Catalog model name.
    pub model: String,
    /// Browser kind.
    pub browser: BrowserKind,
    /// The backend the cell ran on.
    pub backend: Backend,
    /// Average cores busy.
    pub cores: f64,
}

/// What the matrix measured beside the samples: the models that could not be placed and each
/// cell's cores.
pub(super) struct Measured {
    /// Placement failures.
    pub errors: Vec<PlacementError>,
    /// One entry per cell measured on a local browser (a Grid node's processes are not ours
    /// to read).
    pub cores: Vec<CellCores>,
    /// The generation cells' generations.
    pub generations: Vec<super::generation::GenerationRun>,
}

/// Measures each model x browser cell in turn.
pub(super) async fn run(
    plan: &RunPlan,
    pool: &Pool,
    cancel: &CancellationToken,
    observer: &dyn RunObserver,
) -> Measured {
    let mut out = Measured {
        errors: Vec::new(),
        cores: Vec::new(),
        generations: Vec::new(),
    };
    for kind in plan.kinds() {
        for m in &plan.models {
            if cancel.is_cancelled() {
                return out;
            }
            // A model pinned to a browser is measured there only.
            if m.pin.is_some_and(|pin| pin != kind) {
                continue;
            }
            let name = &m.prepared.name;
            observer.on_event(&RunEvent::Loading {
                browser: Some(kind),
                model: name,
            });
            let hw = HardwarePreferences {
                browser: Some(kind),
                ..HardwarePreferences::default()
            };
            let placed = tokio::select! {
                h = pool.place_model(m.prepared.clone(), m.native.clone(), hw, FaultTolerance::None) => h,
                () = cancel.cancelled() => return out,
            };
            match placed {
                Ok(h) => {
                    observer.on_event(&RunEvent::Driving {
                        what: format!("{name} on {kind}"),
                    });
                    let one = std::slice::from_ref(&h);
                    // Warm-up first, on its own, so the CPU reading covers the measured runs only.
                    let warm = Workload {
                        bound: Bound::Iterations(0),
                        ..plan.workload
                    };
                    scheduler::drive(one, &warm, cancel).await;
                    let measure = Workload {
                        warmup: 0,
                        ..plan.workload
                    };
                    let (backend, pids) = hosts(pool, name);
                    let before = process::trees_cpu_s(&pids);
                    let drove = scheduler::drive(one, &measure, cancel).await;
                    let busy = process::trees_cpu_s(&pids) - before;
                    let wall = drove.measured.as_secs_f64();
                    match backend {
                        Some(backend) if !pids.is_empty() && wall > 0.0 && drove.issued > 0 => {
                            out.cores.push(CellCores {
                                model: name.clone(),
                                browser: kind,
                                backend,
                                cores: busy.max(0.0) / wall,
                            });
                        }
                        _ => {}
                    }
                    h.release().await;
                }
                Err(e) => {
                    observer.on_event(&RunEvent::Warning {
                        message: format!("{name} on {kind}: {e}"),
                    });
                    out.errors.push((name.clone(), Some(kind), e));
                }
            }
        }
        // The language model last: its decoder stays loaded on the worker after its cell.
        if let Some(g) = &plan.generation {
            if cancel.is_cancelled() {
                return out;
            }
            let runs = super::generation::cell(g, kind, pool, cancel, observer).await;
            out.generations.extend(runs);
        }
    }
    out
}

/// The backend `model` runs on and the browser pids of the workers holding it.
fn hosts(pool: &Pool, model: &str) -> (Option<Backend>, Vec<u32>) {
    let mut backend = None;
    let mut pids = Vec::new();
    for w in pool.workers() {
        if let Some(b) = w.backend_of(model) {
            backend.get_or_insert(b);
            pids.extend(w.status().pid);
        }
    }
    (backend, pids)
}
