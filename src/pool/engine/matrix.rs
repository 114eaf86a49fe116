//! Matrix placement: every model in every browser, one cell at a time, each cell measured as
//! the browser is (no recovery: a failing browser shows in its cell). Must not import `report`,
//! `cli` or terminal crates.

use tokio_util::sync::CancellationToken;

use super::super::router::HardwarePreferences;
use super::super::scheduler;
use super::super::{FaultTolerance, Pool};
use super::{PlacementError, RunEvent, RunObserver, RunPlan};

/// Measures each model x browser cell in turn; returns the models that could not be placed.
pub(super) async fn run(
    plan: &RunPlan,
    pool: &Pool,
    cancel: &CancellationToken,
    observer: &dyn RunObserver,
) -> Vec<PlacementError> {
    let mut errors = Vec::new();
    for kind in plan.kinds() {
        for m in &plan.models {
            if cancel.is_cancelled() {
                return errors;
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
                h = pool.place_model(m.prepared.clone(), hw, FaultTolerance::None) => h,
                () = cancel.cancelled() => return errors,
            };
            match placed {
                Ok(h) => {
                    observer.on_event(&RunEvent::Driving {
                        what: format!("{name} on {kind}"),
                    });
                    scheduler::drive(std::slice::from_ref(&h), &plan.workload, cancel).await;
                    h.release().await;
                }
                Err(e) => {
                    observer.on_event(&RunEvent::Warning {
                        message: format!("{name} on {kind}: {e}"),
                    });
                    errors.push((name.clone(), Some(kind), e));
                }
            }
        }
    }
    errors
}
