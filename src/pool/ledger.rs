//! The ledger: request accounting. A request gets a [`Ticket`] when it is scheduled, before it
//! is dispatched, and its outcome closes that ticket exactly once, leaving one [`Sample`].
//! `issued` counts tickets, `lost` counts tickets still open when the books close (a request
//! the harness forgot), and an outcome for a ticket already closed is counted as
//! `closed_twice`. Neither is derived from the other counts, so both can show. Requests
//! started (a ticket that reached a handle) are counted apart from those issued.
//!
//! Owns its state behind one lock; the pool, the handles and the pipeline ask it. Knows
//! nothing of workers or events. Must not import `report`, `cli` or terminal crates.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::metrics::{Phase, Requests, Sample};

use super::coverage::{cause_of, ms_since, Coverage};
use super::error::ErrorClass;
use super::lock;

/// Where a request ran: worker id, browser kind, backend.
#[derive(Debug, Clone, Copy)]
pub struct Ran<'a> {
    /// Worker id.
    pub worker: &'a str,
    /// Its browser kind.
    pub browser: BrowserKind,
    /// The session's backend.
    pub backend: Backend,
}

/// A request's ticket: issued when the request is scheduled, closed once by its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(usize);

/// A ticket's state.
#[derive(Debug, Clone)]
enum TicketState {
    /// Issued; no outcome yet.
    Open {
        /// Catalog model name.
        model: String,
        /// Which part of the run.
        phase: Phase,
    },
    /// Its outcome was recorded.
    Closed,
}

/// How one request ended.
#[derive(Debug, Clone, Copy)]
pub struct RequestEnd<'a> {
    /// The ticket it was issued.
    pub ticket: Ticket,
    /// Catalog model name.
    pub model: &'a str,
    /// Where it ran (`None` when it never reached a worker).
    pub ran: Option<Ran<'a>>,
    /// Which part of the run.
    pub phase: Phase,
    /// Its scheduled start (latency is measured from here: no coordinated omission).
    pub scheduled: Instant,
    /// When it was last issued to a worker.
    pub issued: Instant,
    /// Attempts it took.
    pub attempt: u32,
    /// The page's `session.run` ms, or the class of the failure.
    pub outcome: Result<f64, ErrorClass>,
}

/// The books when they were closed.
#[derive(Debug, Clone, Default)]
pub struct Books {
    /// Request accounting.
    pub requests: Requests,
    /// Every request's sample, in the order they ended.
    pub samples: Vec<Sample>,
    /// Tickets still open: each a request issued and never ended (model, phase).
    pub lost: Vec<(String, Phase)>,
}

/// The pool's request accounting.
#[derive(Debug)]
pub struct Ledger {
    t0: Instant,
    books: Mutex<State>,
    /// When each model had a live copy: a failed request's cause is judged from it.
    coverage: Coverage,
}

#[derive(Debug, Default)]
struct State {
    requests: Requests,
    samples: Vec<Sample>,
    /// Every ticket issued, by number.
    tickets: Vec<TicketState>,
    /// Measured requests finished, per model.
    per_model: BTreeMap<String, u64>,
    /// Requests started (each counted once, whatever its attempts).
    started: u64,
}

impl Ledger {
    /// An empty ledger whose times count from `t0`.
    pub fn new(t0: Instant) -> Self {
        Self {
            t0,
            books: Mutex::default(),
            coverage: Coverage::default(),
        }
    }

    /// Records whether each model has a live copy now.
    pub fn record_coverage(&self, seen: impl IntoIterator<Item = (String, bool)>) {
        self.coverage
            .record(ms_since(self.t0, Instant::now()), seen);
    }

    /// Issues a request's ticket, when it is scheduled (before it is dispatched).
    pub fn issue(&self, model: &str, phase: Phase) -> Ticket {
        let mut b = lock(&self.books);
        b.tickets.push(TicketState::Open {
            model: model.to_string(),
            phase,
        });
        b.requests.issued += 1;
        Ticket(b.tickets.len() - 1)
    }

    /// Counts a request that reached a handle (started running), once whatever its attempts.
    pub fn start(&self) {
        lock(&self.books).started += 1;
    }

    /// Requests started so far (in flight included).
    pub fn started(&self) -> u64 {
        lock(&self.books).started
    }

    /// `t` in ms since the run started (the clock of every sample's `scheduled_ms`).
    pub fn ms_at(&self, t: Instant) -> f64 {
        ms_since(self.t0, t)
    }

    /// Accounts for one request that ended: its ticket is closed, it is counted succeeded or
    /// failed, and it leaves one sample. An outcome for a ticket that is not open (closed
    /// already, or never issued) is counted in `closed_twice` and leaves nothing else.
    pub fn end(&self, end: RequestEnd<'_>) {
        let done = Instant::now();
        let ms = |t: Instant| ms_since(self.t0, t);
        // Judged before the books are locked: the record has a lock of its own.
        let cause = end.outcome.err().map(|class| {
            let waited = self
                .coverage
                .had_copy(end.model, ms(end.scheduled), ms(done));
            cause_of(class, waited)
        });
        let mut b = lock(&self.books);
        match b.tickets.get_mut(end.ticket.0) {
            Some(t @ TicketState::Open { .. }) => *t = TicketState::Closed,
            _ => {
                b.requests.closed_twice += 1;
                return;
            }
        }
        let since = |t: Instant| done.saturating_duration_since(t).as_secs_f64() * 1e3;
        let sample = Sample {
            seq: b.samples.len() as u64,
            model: end.model.to_string(),
            browser: end.ran.map(|r| r.browser.to_string()).unwrap_or_default(),
            worker: end.ran.map(|r| r.worker.to_string()).unwrap_or_default(),
            backend: end.ran.map(|r| r.backend.to_string()).unwrap_or_default(),
            phase: end.phase,
            scheduled_ms: ms(end.scheduled),
            started_ms: ms(end.issued),
            latency_ms: since(end.scheduled),
            service_ms: if end.ran.is_some() {
                since(end.issued)
            } else {
                0.0
            },
            page_ms: *end.outcome.as_ref().unwrap_or(&0.0),
            ok: end.outcome.is_ok(),
            error: end
                .outcome
                .err()
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
            attempt: end.attempt,
            cause,
        };
        if sample.phase == Phase::Measure {
            *b.per_model.entry(sample.model.clone()).or_default() += 1;
        }
        if sample.ok {
            b.requests.succeeded += 1;
        } else {
            b.requests.failed += 1;
        }
        if let Some(c) = cause {
            b.requests.causes.add(c);
        }
        b.samples.push(sample);
    }

    /// Requests ended so far: `(succeeded, failed)`.
    pub fn ended(&self) -> (u64, u64) {
        let b = lock(&self.books);
        (b.requests.succeeded, b.requests.failed)
    }

    /// Measured requests finished per model.
    pub fn per_model(&self) -> BTreeMap<String, u64> {
        lock(&self.books).per_model.clone()
    }

    /// Warm page times (ms) of `model`'s successful measured requests on `worker` with
    /// `backend`, in the order they ended.
    pub fn live_times(&self, model: &str, worker: &str, backend: Backend) -> Vec<f64> {
        let b = backend.to_string();
        lock(&self.books)
            .samples
            .iter()
            .filter(|s| {
                s.phase == Phase::Measure
                    && s.ok
                    && s.page_ms > 0.0
                    && s.model == model
                    && s.worker == worker
                    && s.backend == b
            })
            .map(|s| s.page_ms)
            .collect()
    }

    /// The router's measured score of `worker` for `model` on `backend`: the requests per
    /// second its page's median warm time allows, from this run's own requests there (at
    /// least 3).
    pub fn live_score(&self, model: &str, worker: &str, backend: Backend) -> Option<f64> {
        let times = self.live_times(model, worker, backend);
        if times.len() < 3 {
            return None;
        }
        crate::metrics::Percentiles::from_ms(&times)
            .map(|p| p.p50)
            .filter(|ms| *ms > 0.0)
            .map(|ms| 1000.0 / ms)
    }

    /// Closes the books: every count and sample, and the tickets still open (`lost`).
    pub fn close(&self) -> Books {
        let mut b = lock(&self.books);
        let state = std::mem::take(&mut *b);
        let lost: Vec<(String, Phase)> = state
            .tickets
            .iter()
            .filter_map(|t| match t {
                TicketState::Open { model, phase } => Some((model.clone(), *phase)),
                TicketState::Closed => None,
            })
            .collect();
        let mut requests = state.requests;
        requests.lost = lost.len() as u64;
        Books {
            requests,
            samples: state.samples,
            lost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran() -> Ran<'static> {
        Ran {
            worker: "chromium#1",
            browser: BrowserKind::Chromium,
            backend: Backend::Wasm,
        }
    }

    fn end(ticket: Ticket, t0: Instant, outcome: Result<f64, ErrorClass>) -> RequestEnd<'static> {
        RequestEnd {
            ticket,
            model: "bert-tiny",
            ran: Some(ran()),
            phase: Phase::Measure,
            scheduled: t0,
            issued: t0,
            attempt: 1,
            outcome,
        }
    }

    #[test]
    fn each_request_leaves_one_sample_and_one_count() {
        let t0 = Instant::now();
        let l = Ledger::new(t0);
        let first = l.issue("bert-tiny", Phase::First);
        l.end(RequestEnd {
            phase: Phase::First,
            ..end(first, t0, Ok(3.0))
        });
        let a = l.issue("bert-tiny", Phase::Measure);
        let b = l.issue("bert-tiny", Phase::Measure);
        l.end(end(a, t0, Ok(2.0)));
        l.end(end(b, t0, Err(ErrorClass::Page)));
        assert_eq!(l.ended(), (2, 1));
        assert_eq!(l.per_model()["bert-tiny"], 2);
        let books = l.close();
        assert_eq!(books.samples.len(), 3);
        assert_eq!(books.samples[2].error, "page");
        assert_eq!(books.samples[2].seq, 2);
        assert_eq!(books.samples[0].backend, "wasm");
        assert_eq!(books.requests.issued, 3);
        assert_eq!((books.requests.lost, books.requests.closed_twice), (0, 0));
    }

    #[test]
    fn a_dropped_outcome_is_lost_and_a_second_outcome_is_counted() {
        let t0 = Instant::now();
        let l = Ledger::new(t0);
        let kept = l.issue("bert-tiny", Phase::Measure);
        let _dropped = l.issue("bert-tiny", Phase::Measure);
        l.end(end(kept, t0, Ok(1.0)));
        l.end(end(kept, t0, Err(ErrorClass::Timeout)));
        let books = l.close();
        let r = books.requests;
        assert_eq!((r.issued, r.succeeded, r.failed), (2, 1, 0));
        assert_eq!(r.lost, 1, "{r:?}");
        assert_eq!(r.closed_twice, 1, "{r:?}");
        assert_eq!(books.samples.len(), 1);
        assert_eq!(books.lost, vec![("bert-tiny".to_string(), Phase::Measure)]);
        // A run carrying these counts fails: metrics::summary's
        // a_run_that_did_not_finish_does_not_pass (lost, closed_twice -> not passed -> exit 1).
    }
}
