//! A placement's first answer, judged before the placement serves: the first run after a load
//! (a request of the ledger), a page's models after its reset (`reload_check`), and the one
//! judgement both and a standby's check use (`judge_answer`): against native onnxruntime over
//! every value, or the first placement's output for a model without one, then the digests of
//! the answer verified for that browser kind and backend. Must not import `report`, `cli` or
//! terminal crates.

use std::sync::Arc;
use std::time::Instant;

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::metrics::Phase;

use super::correctness::{self, cell_output, CellOutput};
use super::events::{PlacementRecord, PoolEvent};
use super::ledger::{Ran, RequestEnd, Ticket};
use super::placements::{ModelEntry, Placements};
use super::placing::backend_at;
use super::worker::{Loaded, OutputMode, Probe, RunFor, RunReply, Worker};
use super::{ErrorClass, Pool, PoolError};

/// The first run after a load, as a request of the ledger (phase `first`, every output value
/// returned), judged against native onnxruntime over every value before the placement may
/// serve. A first answer that matches completes the placement record (emitted as `Placed`,
/// which journals it) and its digests are what every later answer there must equal; one that
/// does not is a `wrong_answer` request, the model is unloaded from the worker, and the
/// placement is rejected (`PlacementRejected`) with an error.
pub(super) async fn first_run(
    pool: &Pool,
    entry: &Arc<ModelEntry>,
    worker: &Arc<Worker>,
    loaded: &Loaded,
) -> Result<(), PoolError> {
    let model = &entry.prepared;
    let backend = loaded.reply.backend;
    let mut ticket = FirstRun {
        pool,
        ticket: Some(pool.ledger().issue(&model.name, Phase::First)),
        model: &model.name,
        worker,
        backend,
        issued: Instant::now(),
    };
    // The first run returns every value: the checks (finite, oracle, cross) see it all.
    let first = match worker
        .run(&model.name, OutputMode::Full, RunFor::Request)
        .await
    {
        Ok(first) => first,
        Err(e) => {
            ticket.end(Err(ErrorClass::of(&e)));
            return Err(e.into());
        }
    };
    let registry = pool.placements();
    let (output, rejected) = judge_answer(registry, entry, worker.kind, backend, &first);
    if let Some(rejected) = rejected {
        ticket.end(Err(ErrorClass::WrongAnswer));
        registry.note_judged(entry, worker.kind, backend, false);
        let unloaded = match worker.unload(&model.name).await {
            Ok(()) => String::new(),
            Err(e) => {
                // It must not stay loaded where it computes wrong: a reset clears the page.
                worker.mark_unhealthy(format!("unloading a rejected {}: {e}", model.name));
                format!("; unloading it failed ({e}), so the page is reset")
            }
        };
        let detail = format!("{rejected}{unloaded}");
        pool.emit(PoolEvent::PlacementRejected {
            model: model.name.clone(),
            worker: worker.id.clone(),
            browser: worker.kind,
            backend,
            detail: detail.clone(),
        });
        return Err(PoolError::WrongAnswer {
            model: model.name.clone(),
            worker: worker.id.clone(),
            detail: format!("first answer, placement rejected: {detail}"),
        });
    }
    ticket.end(Ok(first.run_ms));
    registry.note_judged(entry, worker.kind, backend, true);
    if let Some(c) = output
        .as_ref()
        .filter(|c| entry.oracle.is_none() && !c.full.is_empty())
    {
        registry.set_reference(entry, &c.full);
    }
    registry.set_verified(entry, worker.kind, backend, &first.digests);
    pool.emit(PoolEvent::Placed(Arc::new(PlacementRecord {
        model: model.name.clone(),
        worker: worker.id.clone(),
        browser: worker.kind,
        load: loaded.reply.clone(),
        memory_added_kib: loaded.memory_added_kib,
        first_run_ms: first.run_ms,
        output,
    })));
    Ok(())
}

/// After a page reset loaded its models again: each model's first answer on the new page,
/// judged as any placement's is before it serves (a shard's, which has no oracle, against the
/// digests verified for its browser kind and backend). A model whose answer is wrong is
/// unloaded there and taken out of its placements and standbys on this worker, and the error
/// says so: the recovery goes on to its next step.
///
/// # Errors
/// A run failed, or an answer was wrong (`PoolError::WrongAnswer`).
pub(super) async fn verify_reloaded(pool: &Pool, worker: &Arc<Worker>) -> Result<(), PoolError> {
    let registry = pool.placements();
    let loaded = worker.loaded_models();
    for entry in registry
        .entries()
        .into_iter()
        .filter(|e| loaded.iter().any(|m| m == e.name()))
    {
        let name = entry.name().to_string();
        let backend = backend_at(worker, &name);
        let reply = worker
            .run(&name, OutputMode::Full, RunFor::Probe(Probe::ReloadCheck))
            .await?;
        let (_, rejected) = judge_answer(registry, &entry, worker.kind, backend, &reply);
        let Some(detail) = rejected else {
            registry.note_judged(&entry, worker.kind, backend, true);
            continue;
        };
        registry.note_judged(&entry, worker.kind, backend, false);
        registry.unplace(&entry, worker);
        registry.drop_standby(&entry, worker);
        let _ = worker.unload(&name).await;
        let detail = format!("after a page reset: {detail}");
        pool.emit(PoolEvent::PlacementRejected {
            model: name.clone(),
            worker: worker.id.clone(),
            browser: worker.kind,
            backend,
            detail: detail.clone(),
        });
        return Err(PoolError::WrongAnswer {
            model: name,
            worker: worker.id.clone(),
            detail,
        });
    }
    Ok(())
}

/// A placement's first answer (`reply`, every value returned) on a worker of `kind` with
/// `backend`, judged before the placement may serve: against the model's native output over
/// every value, or, for a model without one (a pipeline's shard), against the first
/// placement's output when there is one; then its digests against the answer already verified
/// for that browser kind and backend (same input: the same bits). Returns the answer as a cell
/// output and why it must not serve, if it must not.
pub(super) fn judge_answer(
    registry: &Placements,
    entry: &ModelEntry,
    kind: BrowserKind,
    backend: Backend,
    reply: &RunReply,
) -> (Option<CellOutput>, Option<String>) {
    let cell = cell_output(kind, &entry.prepared, backend, reply);
    let rejected = if entry.oracle.is_some() {
        judge_first(entry, cell.as_ref())
    } else {
        match cell.as_ref().filter(|c| !c.full.is_empty()) {
            None => Some("the answer carries no values to compare".to_string()),
            Some(c) => registry.reference(entry).and_then(|want: Vec<f32>| {
                let (diff, ok) = crate::oracle::allclose(&c.full, &want);
                (!ok)
                    .then(|| format!("its answer differs from the first placement's by {diff:.2e}"))
            }),
        }
    };
    let rejected = rejected.or_else(|| {
        (registry.verify_digests(entry, kind, backend, &reply.digests) == Some(false))
            .then(|| format!("its digests differ from the verified answer on {kind}/{backend}"))
    });
    (cell, rejected)
}

/// Why a placement's first answer must not serve, judged against the model's native output
/// over every value; `None` when it matched or the model has no oracle (a pipeline's shard,
/// whose every answer is judged at the pipeline's end).
fn judge_first(entry: &ModelEntry, output: Option<&CellOutput>) -> Option<String> {
    let oracle = entry.oracle.as_deref()?;
    let Some(cell) = output else {
        return Some(format!(
            "the answer has no output named '{}'",
            entry.prepared.output_name
        ));
    };
    let verdict = correctness::verify_placement(
        cell,
        correctness::Oracle {
            dims: &oracle.dims,
            values: &oracle.output,
        },
    );
    (!verdict.passed).then_some(verdict.detail)
}

/// A first run's ticket, closed once: by its outcome, or as `deadline` when the future running
/// it is dropped first (a recovery episode past its timeout drops the placement it was making;
/// the request must still be accounted for).
struct FirstRun<'a> {
    pool: &'a Pool,
    ticket: Option<Ticket>,
    model: &'a str,
    worker: &'a Worker,
    backend: Backend,
    issued: Instant,
}

impl FirstRun<'_> {
    fn end(&mut self, outcome: Result<f64, ErrorClass>) {
        if let Some(ticket) = self.ticket.take() {
            self.pool.request_ended(RequestEnd {
                ticket,
                model: self.model,
                ran: Some(Ran {
                    worker: &self.worker.id,
                    browser: self.worker.kind,
                    backend: self.backend,
                }),
                phase: Phase::First,
                scheduled: self.issued,
                issued: self.issued,
                attempt: 1,
                outcome,
            });
        }
    }
}

impl Drop for FirstRun<'_> {
    fn drop(&mut self) {
        self.end(Err(ErrorClass::Deadline));
    }
}
