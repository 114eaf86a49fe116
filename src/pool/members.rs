//! Pool membership: the live workers, the retired ones (kept for the report), the per-kind
//! counters that name new workers (`chromium#2`), the launches in progress, the largest number
//! of live workers seen, and the closes of retired workers still running. The pool launches,
//! retires and closes through these methods; nothing else holds membership state. Must not
//! import `report`, `cli` or terminal crates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::browser::BrowserKind;

use super::lock;
use super::worker::Worker;

/// A worker's final numbers.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// Worker id.
    pub id: String,
    /// Browser kind.
    pub kind: BrowserKind,
    /// Final status.
    pub status: super::worker::WorkerStatus,
    /// Busy time over the worker's lifetime.
    pub utilization: f64,
    /// Lifetime.
    pub alive: std::time::Duration,
}

/// Who is in the pool.
#[derive(Debug, Default)]
pub(super) struct Members {
    state: Mutex<State>,
    /// Launches in progress (counted against `max_workers`; shutdown waits for them).
    launching: AtomicUsize,
    /// Largest number of live workers at once.
    peak: AtomicUsize,
    /// Closes of retired workers in flight; shutdown waits for them.
    closing: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct State {
    /// Workers serving or able to serve.
    live: Vec<Arc<Worker>>,
    /// Workers taken out of service (closed or closing), for the report.
    retired: Vec<Arc<Worker>>,
    /// Workers launched so far, per kind (names the next one).
    counters: HashMap<BrowserKind, usize>,
}

impl Members {
    /// Live workers right now.
    pub fn live(&self) -> Vec<Arc<Worker>> {
        lock(&self.state).live.clone()
    }

    /// The live worker named `id`.
    pub fn find(&self, id: &str) -> Option<Arc<Worker>> {
        lock(&self.state).live.iter().find(|w| w.id == id).cloned()
    }

    /// Whether `worker` is live.
    pub fn is_live(&self, worker: &Arc<Worker>) -> bool {
        lock(&self.state)
            .live
            .iter()
            .any(|w| Arc::ptr_eq(w, worker))
    }

    /// Live workers plus launches in progress.
    pub fn counted(&self) -> usize {
        lock(&self.state).live.len() + self.launching()
    }

    /// Launches in progress.
    pub fn launching(&self) -> usize {
        self.launching.load(Ordering::SeqCst)
    }

    /// The largest number of live workers seen.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// The id of the next worker of `kind` (`chromium#3`).
    pub fn next_id(&self, kind: BrowserKind) -> String {
        let mut s = lock(&self.state);
        let k = s.counters.entry(kind).or_insert(0);
        *k += 1;
        format!("{kind}#{k}")
    }

    /// Counts a launch in progress for as long as the guard lives (even if the future holding
    /// it is dropped).
    pub fn launch_started(&self) -> Launching<'_> {
        self.launching.fetch_add(1, Ordering::SeqCst);
        Launching(&self.launching)
    }

    /// Adds a launched worker unless `closed` says the pool is shutting down (checked under the
    /// lock shutdown takes the list with: a launch that finishes after shutdown began must not
    /// add a browser nobody will close). Returns the live count, or `None` when refused.
    pub fn admit(&self, worker: &Arc<Worker>, closed: impl FnOnce() -> bool) -> Option<usize> {
        let live = {
            let mut s = lock(&self.state);
            if closed() {
                return None;
            }
            s.live.push(worker.clone());
            s.live.len()
        };
        self.peak.fetch_max(live, Ordering::SeqCst);
        Some(live)
    }

    /// Takes `worker` out of the live list and keeps it as retired; returns whether it was live.
    pub fn retire(&self, worker: &Arc<Worker>) -> bool {
        let mut s = lock(&self.state);
        let before = s.live.len();
        s.live.retain(|w| !Arc::ptr_eq(w, worker));
        let removed = before != s.live.len();
        if removed {
            s.retired.push(worker.clone());
        }
        removed
    }

    /// Keeps a worker that never joined (or was closed already) for the report.
    pub fn keep_retired(&self, worker: Arc<Worker>) {
        lock(&self.state).retired.push(worker);
    }

    /// Removes from the live list the workers `drop` names a reason for (it sees each worker
    /// and the live count so far, under the lock), and returns them with the reason.
    pub fn take_live<R>(
        &self,
        mut drop: impl FnMut(&Arc<Worker>, usize) -> Option<R>,
    ) -> Vec<(Arc<Worker>, R)> {
        let mut s = lock(&self.state);
        let mut count = s.live.len();
        let mut out = Vec::new();
        s.live.retain(|w| match drop(w, count) {
            Some(why) => {
                count -= 1;
                out.push((w.clone(), why));
                false
            }
            None => true,
        });
        out
    }

    /// Every live worker, taken out of the live list (shutdown, or a failed start).
    pub fn take_all(&self) -> Vec<Arc<Worker>> {
        std::mem::take(&mut lock(&self.state).live)
    }

    /// Remembers a close running in the background (shutdown waits for it).
    pub fn closing(&self, handle: tokio::task::JoinHandle<()>) {
        lock(&self.closing).push(handle);
    }

    /// The closes still running, taken.
    pub fn take_closing(&self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut *lock(&self.closing))
    }

    /// Every worker that ever existed and is retired now, with its final numbers.
    pub fn reports(&self) -> Vec<WorkerReport> {
        let now = Instant::now();
        lock(&self.state)
            .retired
            .iter()
            .map(|s| {
                let status = s.status();
                let alive = now.duration_since(status.created);
                WorkerReport {
                    id: s.id.clone(),
                    kind: s.kind,
                    utilization: status.busy.as_secs_f64() / alive.as_secs_f64().max(1e-9),
                    status,
                    alive,
                }
            })
            .collect()
    }
}

/// Counts a launch in progress for as long as it lives.
#[derive(Debug)]
pub(super) struct Launching<'a>(&'a AtomicUsize);

impl Drop for Launching<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
