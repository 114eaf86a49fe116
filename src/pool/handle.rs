//! [`ModelHandle`]: one model placed in the pool, and the path every request takes through it:
//! pick the least-loaded live placement (placing the model again if it has none), run it on
//! that worker, account for the outcome in the ledger, and — for a fault-tolerant handle —
//! retry only a failure whose [`ErrorClass`] is transient, after a recovery episode. A page
//! error (the page threw) fails at once: the same input throws the same way on every retry.
//! Must not import `report`, `cli` or terminal crates.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::metrics::Phase;
use crate::models::PreparedModel;

use super::attribution::Cause;
use super::attribution::Detection;
use super::events::PoolEvent;
use super::ledger::{Ran, RequestEnd, Ticket};
use super::placements::{ModelEntry, Verified};
use super::placing::{self, backend_at};
use super::recover::recover;
use super::worker::{OutputMode, RunFor, RunReply, Worker};
use super::{ErrorClass, FaultTolerance, Pool, PoolError};

/// What to run a model on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The model's prepared input (the catalog's tokenized sentence, image or log-mel).
    Prepared,
}

/// The result of one inference.
#[derive(Debug, Clone)]
pub struct Inference {
    /// Worker that ran it.
    pub worker: String,
    /// Its browser kind.
    pub browser: BrowserKind,
    /// Backend used.
    pub backend: Backend,
    /// `session.run` in the page, ms.
    pub page_ms: f64,
    /// Harness round trip.
    pub service: Duration,
}

/// How an answer differs from the verified one.
#[derive(Debug, thiserror::Error)]
enum Mismatch {
    /// The page sent no digests to compare.
    #[error("the page sent no digest of its outputs")]
    NoDigest,
    /// Some outputs' digests differ.
    #[error("{outputs} on {browser}/{backend} (run {run})")]
    Digests {
        /// Each differing output, with both digests.
        outputs: String,
        /// Where it ran.
        browser: BrowserKind,
        /// On which backend.
        backend: Backend,
        /// The page's run counter.
        run: u64,
    },
    /// No placement on this browser kind and backend had its first answer verified.
    #[error("no placement of this model on {browser}/{backend} had its first answer verified against native onnxruntime")]
    Unverified {
        /// Where it ran.
        browser: BrowserKind,
        /// On which backend.
        backend: Backend,
    },
}

/// A model placed in the pool. Cheap to clone; `infer` is safe to call concurrently.
#[derive(Debug, Clone)]
pub struct ModelHandle {
    pool: Pool,
    entry: Arc<ModelEntry>,
    tolerance: FaultTolerance,
}

impl ModelHandle {
    pub(super) fn new(pool: Pool, entry: Arc<ModelEntry>, tolerance: FaultTolerance) -> Self {
        Self {
            pool,
            entry,
            tolerance,
        }
    }

    /// The prepared model behind the handle.
    pub fn model(&self) -> &PreparedModel {
        &self.entry.prepared
    }

    /// Runs the model once on its prepared input.
    ///
    /// # Errors
    /// When no worker can run it or the worker running it fails.
    pub async fn infer(&self, input: Input) -> Result<Inference, PoolError> {
        let Input::Prepared = input;
        let ticket = self.ticket(Phase::Measure);
        self.infer_at(ticket, Instant::now(), Phase::Measure).await
    }

    /// Issues the ticket of a request about to be scheduled: the ledger counts it issued now,
    /// and lost until [`ModelHandle::infer_at`] or [`ModelHandle::reject`] closes it.
    pub fn ticket(&self, phase: Phase) -> Ticket {
        self.pool.ledger().issue(self.entry.name(), phase)
    }

    /// Runs the model once for `ticket`, accounting latency from `scheduled` (the scheduler's
    /// intended start, so queueing behind a slow request counts: no coordinated omission).
    ///
    /// # Errors
    /// As [`ModelHandle::infer`].
    pub async fn infer_at(
        &self,
        ticket: Ticket,
        scheduled: Instant,
        phase: Phase,
    ) -> Result<Inference, PoolError> {
        let pool = &self.pool;
        pool.ledger().start();
        let recovery = pool.config().recovery;
        let tolerant = self.tolerant();
        let max_attempts = if tolerant {
            recovery.max_attempts.max(1)
        } else {
            1
        };
        let name = &self.entry.prepared.name;
        let mut attempt = 1;
        // Since when there has been nowhere to run it (that wait takes no attempt).
        let mut homeless: Option<Instant> = None;
        // The worker the last attempt failed on: the next one goes elsewhere when it can.
        let mut avoid: Option<Arc<Worker>> = None;
        loop {
            let may_retry = tolerant && attempt < max_attempts;
            if pool.cancel().is_cancelled() {
                self.never_ran(ticket, scheduled, phase, attempt, ErrorClass::Interrupted);
                return Err(PoolError::ShuttingDown);
            }
            let worker = match self.pick(avoid.as_ref()).await {
                Ok(w) => w,
                Err(_)
                    if tolerant
                        && homeless.get_or_insert_with(Instant::now).elapsed()
                            < recovery.timeout =>
                {
                    // Nowhere to run right now (every placement is being recovered): wait for
                    // the episode in flight, then look again. A request's deadline still ends
                    // the wait; this bound is for a caller without one.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => {
                    self.never_ran(ticket, scheduled, phase, attempt, e.class());
                    return Err(e);
                }
            };
            placing::scale_up(pool, &self.entry, &worker);
            let backend = backend_at(&worker, name);
            let generation = worker.generation();
            let issued = Instant::now();
            let result = worker.run(name, OutputMode::None, RunFor::Request).await;
            let service = issued.elapsed();
            let class = result.as_ref().err().map(ErrorClass::of);
            let wrong = match &result {
                Ok(reply) => self.check_answer(&worker, backend, reply).err(),
                Err(_) => None,
            };
            if let Some(class) = class.filter(|c| c.is_transient()) {
                // The worker failed, not the request. Its breaker counts the failure once: in
                // the recovery episode when there is one (requests in flight on the same fault
                // all land here, and one fault must not open the breaker), else here.
                if may_retry && !pool.cancel().is_cancelled() {
                    let cause = Cause {
                        seen: Detection::Request(class),
                        model: Some(name.clone()),
                        in_flight: service,
                        seen_at: issued + service,
                    };
                    self.after_failure(recover(pool, &worker, generation, cause), &worker)
                        .await;
                    homeless = None;
                    avoid = Some(worker);
                    attempt += 1;
                    continue;
                }
                worker.breaker_outcome(false);
            } else if class.is_none() {
                worker.breaker_outcome(true);
            }
            if let (Ok(reply), None, Backend::Webnn) = (&result, &wrong, backend) {
                pool.placements()
                    .note_webnn_run(&self.entry, worker.kind, reply.webnn_dispatches);
            }
            if let Some(detail) = &wrong {
                pool.emit(PoolEvent::WrongAnswer {
                    model: name.clone(),
                    worker: worker.id.clone(),
                    detail: detail.to_string(),
                });
            }
            let outcome = match &wrong {
                Some(_) => Err(ErrorClass::WrongAnswer),
                None => result.as_ref().map(|r| r.run_ms).map_err(ErrorClass::of),
            };
            pool.request_ended(RequestEnd {
                ticket,
                model: name,
                ran: Some(Ran {
                    worker: &worker.id,
                    browser: worker.kind,
                    backend,
                }),
                phase,
                scheduled,
                issued,
                attempt,
                outcome,
            });
            if let Some(detail) = wrong {
                return Err(PoolError::WrongAnswer {
                    model: name.clone(),
                    worker: worker.id.clone(),
                    detail: detail.to_string(),
                });
            }
            let reply = result?;
            return Ok(Inference {
                worker: worker.id.clone(),
                browser: worker.kind,
                backend,
                page_ms: reply.run_ms,
                service,
            });
        }
    }

    /// The model's first placement. In a pool that recovers, a load or first run that a
    /// worker failure cut short (a crash, a lost session, a page taken for hung while it was
    /// starved) waits for that worker's recovery and places the model again, up to the request
    /// attempts: one transient failure at start must not leave a model out of the whole run.
    /// The failed first run stays in the ledger as a failed request.
    pub(super) async fn place_first(&self) -> Result<(), PoolError> {
        let pool = &self.pool;
        let max_attempts = pool.config().recovery.max_attempts;
        let mut attempt = 1;
        loop {
            let issued = Instant::now();
            let (e, worker) = match placing::place_once(pool, &self.entry).await {
                Ok(()) => return Ok(()),
                Err(failed) => failed,
            };
            let class = e.class();
            let retry = self.tolerant()
                && class.is_transient()
                && attempt < max_attempts
                && !pool.cancel().is_cancelled();
            let Some((worker, generation)) = worker.filter(|_| retry) else {
                return Err(e);
            };
            let name = self.entry.name().to_string();
            pool.emit(PoolEvent::PlacementRetried {
                model: name.clone(),
                worker: worker.id.clone(),
                error: e.to_string(),
            });
            let cause = Cause {
                seen: Detection::Request(class),
                model: Some(name),
                in_flight: issued.elapsed(),
                seen_at: Instant::now(),
            };
            recover(pool, &worker, generation, cause).await;
            attempt += 1;
        }
    }

    /// Whether failures on this handle are recovered from and retried.
    fn tolerant(&self) -> bool {
        self.tolerance == FaultTolerance::Recover && self.pool.config().recovery.enabled()
    }

    /// Compares an answer's digests with the verified first answer of the same model, browser
    /// kind and backend: the first run of a placement there, whose every value matched native
    /// onnxruntime before the placement served. Without one, the answer is not trusted.
    fn check_answer(
        &self,
        worker: &Worker,
        backend: Backend,
        reply: &RunReply,
    ) -> Result<(), Mismatch> {
        if reply.digests.is_empty() {
            return Err(Mismatch::NoDigest);
        }
        let verified =
            self.pool
                .placements()
                .verify(&self.entry, worker.kind, backend, &reply.digests);
        match verified {
            Verified::Same => Ok(()),
            Verified::Differs(want) => {
                let diff: Vec<String> = want
                    .iter()
                    .filter(|(k, v)| reply.digests.get(*k) != Some(*v))
                    .map(|(k, v)| {
                        let got = reply.digests.get(k).map_or("none", String::as_str);
                        format!("output '{k}' digest {got}, verified {v}")
                    })
                    .collect();
                Err(Mismatch::Digests {
                    outputs: diff.join(", "),
                    browser: worker.kind,
                    backend,
                    run: reply.run_index,
                })
            }
            Verified::Unverified => Err(Mismatch::Unverified {
                browser: worker.kind,
                backend,
            }),
        }
    }

    /// The workers serving this model now (warm spares excluded).
    pub fn serving(&self) -> Vec<Arc<Worker>> {
        self.pool.placements().serving(&self.entry)
    }

    /// Unloads the model from every worker holding it.
    pub async fn release(&self) {
        let workers = self.pool.placements().remove(&self.entry);
        let name = self.entry.name().to_string();
        for w in workers {
            let _ = w.unload(&name).await;
            self.pool.emit(PoolEvent::Unloaded {
                model: name.clone(),
                worker: w.id.clone(),
            });
        }
    }

    /// Closes `ticket` for a request that never ran (or whose run was abandoned): `Rejected`
    /// (queue full) or `Deadline` (too late).
    pub fn reject(&self, ticket: Ticket, scheduled: Instant, phase: Phase, class: ErrorClass) {
        self.never_ran(ticket, scheduled, phase, 1, class);
    }

    fn never_ran(
        &self,
        ticket: Ticket,
        scheduled: Instant,
        phase: Phase,
        attempt: u32,
        class: ErrorClass,
    ) {
        self.pool.never_ran(
            (ticket, self.entry.name()),
            scheduled,
            phase,
            attempt,
            class,
        );
    }

    /// The least-loaded live placement (other than `avoid`, when there is another), placing
    /// the model again if it has none.
    async fn pick(&self, avoid: Option<&Arc<Worker>>) -> Result<Arc<Worker>, PoolError> {
        if let Some(s) = self.least_loaded_avoiding(avoid) {
            return Ok(s);
        }
        placing::ensure_placed(&self.pool, &self.entry).await?;
        self.least_loaded().ok_or_else(|| PoolError::NoPlacement {
            model: self.entry.name().to_string(),
            reason: "its workers went away".into(),
        })
    }

    fn least_loaded(&self) -> Option<Arc<Worker>> {
        self.least_loaded_avoiding(None)
    }

    fn least_loaded_avoiding(&self, avoid: Option<&Arc<Worker>>) -> Option<Arc<Worker>> {
        self.pool.placements().least_loaded(&self.entry, avoid)
    }

    /// Waits for the recovery `episode` of `failed`, or less: only until the model has a live
    /// placement on another worker (a standby the episode promoted), so a request does not wait
    /// for a repair it does not need. The episode runs on either way.
    async fn after_failure(
        &self,
        episode: impl std::future::Future<Output = ()>,
        failed: &Arc<Worker>,
    ) {
        tokio::pin!(episode);
        loop {
            tokio::select! {
                () = &mut episode => return,
                () = tokio::time::sleep(Duration::from_millis(50)) => {
                    let next = self.least_loaded_avoiding(Some(failed));
                    if next.is_some_and(|w| !Arc::ptr_eq(&w, failed)) {
                        return;
                    }
                }
            }
        }
    }
}

impl super::scheduler::Serve for ModelHandle {
    fn ticket(&self, phase: Phase) -> Ticket {
        ModelHandle::ticket(self, phase)
    }

    async fn serve(&self, ticket: Ticket, scheduled: Instant, phase: Phase) -> bool {
        self.infer_at(ticket, scheduled, phase).await.is_ok()
    }

    fn reject(&self, ticket: Ticket, scheduled: Instant, phase: Phase, class: ErrorClass) {
        ModelHandle::reject(self, ticket, scheduled, phase, class);
    }
}
