//! The workload driver: one loop for every mode, parameterised by a [`Schedule`] (closed loop:
//! N clients back to back; open loop: a fixed arrival rate) and a [`Bound`] (iterations or
//! duration). Requests go through a [`Serve`] (a routed model's [`ModelHandle`], or a sharded
//! model's pipeline) with their *scheduled* start, so a request that waits behind a slow one is
//! charged for the wait (no coordinated omission).

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metrics::Phase;

use super::ledger::Ticket;
use super::ErrorClass;

/// What the driver sends requests to: a model served by the pool.
pub trait Serve: Clone + Send + Sync + 'static {
    /// Issues the ticket of a request about to be scheduled (the ledger counts it issued).
    fn ticket(&self, phase: Phase) -> Ticket;

    /// Runs one request for `ticket`, latency counted from `scheduled`; true when it succeeded.
    /// Every outcome closes the ticket.
    fn serve(
        &self,
        ticket: Ticket,
        scheduled: Instant,
        phase: Phase,
    ) -> impl Future<Output = bool> + Send;

    /// Closes `ticket` for a request that never ran (or whose run was abandoned).
    fn reject(&self, ticket: Ticket, scheduled: Instant, phase: Phase, class: ErrorClass);
}

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// `concurrency` clients, each issuing its next request when the previous one ends.
    Closed {
        /// Clients.
        concurrency: usize,
    },
    /// Requests start at a fixed rate whatever the latency.
    Open {
        /// Requests per second.
        rate_per_s: f64,
        /// Requests allowed in flight; beyond it an arrival fails as `rejected` (backpressure).
        max_in_flight: usize,
    },
}

/// When the measured part ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// After this many requests in total.
    Iterations(u64),
    /// After this long.
    Duration(Duration),
}

/// A workload over one or more model handles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// Arrivals.
    pub schedule: Schedule,
    /// End.
    pub bound: Bound,
    /// Unmeasured runs per model before the clock starts.
    pub warmup: u32,
    /// Per-request deadline (from the scheduled start).
    pub request_timeout: Duration,
    /// Closed loop: client `i` always drives `handles[i % len]` instead of taking the next
    /// handle round-robin, so a worker stuck on one model (a hung page) holds only that model's
    /// clients. Used when faults are injected.
    pub pin_clients: bool,
}

/// What a drive took.
#[derive(Debug, Clone, Copy)]
pub struct DriveReport {
    /// Wall time of the measured part.
    pub measured: Duration,
    /// Requests issued in the measured part.
    pub issued: u64,
}

/// Runs `workload` over `handles` (models taken round-robin) until its bound or `cancel`.
/// Every request is accounted for by the pool (succeeded, failed, or rejected).
pub async fn drive<H: Serve>(
    handles: &[H],
    workload: &Workload,
    cancel: &CancellationToken,
) -> DriveReport {
    if handles.is_empty() {
        return DriveReport {
            measured: Duration::ZERO,
            issued: 0,
        };
    }
    for h in handles {
        for _ in 0..workload.warmup {
            if cancel.is_cancelled() {
                break;
            }
            let _ = with_deadline(h, Instant::now(), Phase::Warmup, workload.request_timeout).await;
        }
    }
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let deadline = match workload.bound {
        Bound::Duration(d) => Some(started + d),
        Bound::Iterations(_) => None,
    };
    let limit = match workload.bound {
        Bound::Iterations(n) => n,
        Bound::Duration(_) => u64::MAX,
    };
    // Takes the next request number, or None when the bound is reached.
    let take = {
        let next = next.clone();
        move || {
            if cancel.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            let n = next.fetch_add(1, Ordering::SeqCst);
            (n < limit).then_some(n as usize)
        }
    };
    match workload.schedule {
        Schedule::Closed { concurrency } => {
            // Pinning needs a client for every handle, or some would never run.
            let pin = workload.pin_clients && concurrency >= handles.len();
            let take = &take;
            let clients = (0..concurrency.max(1)).map(|i| async move {
                while let Some(n) = take() {
                    let h = if pin {
                        &handles[i % handles.len()]
                    } else {
                        &handles[n % handles.len()]
                    };
                    let _ =
                        with_deadline(h, Instant::now(), Phase::Measure, workload.request_timeout)
                            .await;
                }
            });
            futures::future::join_all(clients).await;
        }
        Schedule::Open {
            rate_per_s,
            max_in_flight,
        } => {
            let period = Duration::from_secs_f64(1.0 / rate_per_s.max(1e-6));
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let in_flight = Arc::new(AtomicUsize::new(0));
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let scheduled = tokio::select! {
                    t = tick.tick() => t.into_std(),
                    () = cancel.cancelled() => break,
                };
                let Some(n) = take() else { break };
                let h = handles[n % handles.len()].clone();
                if in_flight.load(Ordering::SeqCst) >= max_in_flight {
                    let ticket = h.ticket(Phase::Measure);
                    h.reject(ticket, scheduled, Phase::Measure, ErrorClass::Rejected);
                    continue;
                }
                in_flight.fetch_add(1, Ordering::SeqCst);
                let in_flight = in_flight.clone();
                let timeout = workload.request_timeout;
                tasks.spawn(async move {
                    let _ = with_deadline(&h, scheduled, Phase::Measure, timeout).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    DriveReport {
        measured: started.elapsed(),
        issued: next.load(Ordering::SeqCst).min(limit),
    }
}

/// One request with its deadline measured from the scheduled start. Its ticket is issued
/// first; a request past its deadline closes it as failed `deadline`.
async fn with_deadline<H: Serve>(
    h: &H,
    scheduled: Instant,
    phase: Phase,
    timeout: Duration,
) -> bool {
    let ticket = h.ticket(phase);
    let left = timeout.saturating_sub(scheduled.elapsed());
    match tokio::time::timeout(left, h.serve(ticket, scheduled, phase)).await {
        Ok(ok) => ok,
        Err(_) => {
            h.reject(ticket, scheduled, phase, ErrorClass::Deadline);
            false
        }
    }
}
