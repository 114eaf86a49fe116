//! Pool membership: the live workers, the retired ones (kept for the report), and the per-kind
//! counters that name new workers (`chromium#2`). Launching, retiring, closing, and the room
//! left under `max_workers`. Every change of membership is journaled. Must not import
//! `report`, `cli` or terminal crates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::state::{Op, WorkerRecord};

use super::ledger::WorkerReport;
use super::worker::{Page, Worker};
use super::{lock, Pool, PoolError};

/// Who is in the pool.
#[derive(Debug, Default)]
pub(super) struct Members {
    /// Workers serving or able to serve.
    pub live: Vec<Arc<Worker>>,
    /// Workers taken out of service (closed or closing), for the report.
    pub retired: Vec<Arc<Worker>>,
    /// Workers launched so far, per kind (names the next one).
    counters: HashMap<BrowserKind, usize>,
}

impl Pool {
    /// Live workers right now.
    pub fn workers(&self) -> Vec<Arc<Worker>> {
        lock(&self.inner.members).live.clone()
    }

    /// Whether exactly `min_workers` are live.
    pub fn at_minimum(&self) -> bool {
        self.workers().len() == self.inner.config.min_workers
    }

    /// Whether one more worker fits under `max_workers`.
    pub(super) fn has_room(&self) -> bool {
        lock(&self.inner.members).live.len() + self.inner.launching.load(Ordering::SeqCst)
            < self.inner.config.max_workers
    }

    /// Launches one worker of `kind` and adds it to the pool.
    pub(super) async fn launch(
        &self,
        kind: BrowserKind,
        why: &str,
    ) -> Result<Arc<Worker>, PoolError> {
        let c = &self.inner.config;
        let Some(mut spec) = c.launch_of(kind).cloned() else {
            return Err(PoolError::NotConfigured { kind });
        };
        spec.page_url = self.inner.ctx.server.page_url();
        let id = {
            let mut m = lock(&self.inner.members);
            let k = m.counters.entry(kind).or_insert(0);
            *k += 1;
            format!("{kind}#{k}")
        };
        // Counted until the new worker is in the list or closed (even if this future is
        // dropped): has_room() and shutdown() read it.
        let _launching = Launching::enter(&self.inner.launching);
        let webnn = c.page.backends.contains(&Backend::Webnn);
        let page = Page::start(id, spec).await?;
        let caps = match page.capabilities(webnn, c.timeouts.call).await {
            Ok(caps) => caps,
            Err(e) => {
                let _ = page.close().await;
                return Err(e.into());
            }
        };
        let launch_ms = page.launch_time.as_millis();
        let worker = Worker::spawn(page, &caps, self.inner.ctx.clone());
        let live = {
            let mut m = lock(&self.inner.members);
            // Checked under the lock shutdown takes the list with: a launch that finishes
            // after shutdown began must not add a browser nobody will close.
            if self.inner.cancel.is_cancelled() {
                None
            } else {
                m.live.push(worker.clone());
                Some(m.live.len())
            }
        };
        let Some(live) = live else {
            worker.close().await;
            lock(&self.inner.members).retired.push(worker);
            return Err(PoolError::ShuttingDown);
        };
        self.inner.peak.fetch_max(live, Ordering::SeqCst);
        let browser = worker.browser();
        self.journal(Op::WorkerAdded {
            worker: WorkerRecord {
                pid: browser.pid(),
                driver_pid: browser.driver_pid(),
                profile_dir: browser.profile_dir().map(|p| p.display().to_string()),
                status: "ready".into(),
                ..WorkerRecord::new(worker.id.clone(), kind.as_str(), browser.driver().as_str())
            },
        });
        self.event(
            "launched",
            &worker.id,
            format!("{why}; ready in {launch_ms} ms; {live} live"),
        );
        Ok(worker)
    }

    /// Takes `worker` out of service: out of the live list and every placement, its browser
    /// closed in the background (shutdown waits for it).
    pub(super) fn retire(&self, worker: &Arc<Worker>, why: &str) {
        let removed = {
            let mut m = lock(&self.inner.members);
            let before = m.live.len();
            m.live.retain(|s| !Arc::ptr_eq(s, worker));
            before != m.live.len()
        };
        let held = self.unplace_everywhere(worker);
        if !removed {
            return;
        }
        worker.mark_unhealthy(why.to_string());
        worker.abandon_calls();
        self.event("retired", &worker.id, why.to_string());
        // The worker stays a member, `closing` and serving nothing, until its browser is gone:
        // a harness killed while the close runs leaves a record for `resume` to reap by.
        if let Some(j) = &self.inner.journal {
            if let Some(tx) = j.begin() {
                j.op(
                    tx,
                    Op::WorkerStatus {
                        id: worker.id.clone(),
                        status: "closing".into(),
                    },
                );
                for model in held {
                    j.op(
                        tx,
                        Op::Unplaced {
                            model,
                            worker: worker.id.clone(),
                        },
                    );
                }
                j.commit_tx(tx);
            }
        }
        let (w, pool) = (worker.clone(), self.clone());
        let handle = tokio::spawn(async move {
            w.close().await;
            pool.journal(Op::WorkerRemoved { id: w.id.clone() });
        });
        lock(&self.inner.closing).push(handle);
        lock(&self.inner.members).retired.push(worker.clone());
    }

    /// Closes the live workers in `close` (idle or unhealthy ones the upkeep chose), with the
    /// event `why`.
    pub(super) async fn close_members(&self, close: Vec<(Arc<Worker>, &'static str)>) {
        for (w, why) in close {
            w.close().await;
            self.event(why, &w.id, format!("{} live", self.workers().len()));
            self.journal(Op::WorkerRemoved { id: w.id.clone() });
            lock(&self.inner.members).retired.push(w);
        }
    }

    /// Closes every live worker (shutdown, or a failed start).
    pub(super) async fn close_all(&self) {
        let live: Vec<_> = std::mem::take(&mut lock(&self.inner.members).live);
        futures::future::join_all(live.iter().map(|s| s.close())).await;
        for s in &live {
            self.journal(Op::WorkerRemoved { id: s.id.clone() });
        }
        lock(&self.inner.members).retired.extend(live);
    }

    /// Removes from the live list the workers `drop` names a reason for (it sees each worker
    /// and the live count so far, under the members lock), and returns them with the reason.
    pub(super) fn take_live(
        &self,
        mut drop: impl FnMut(&Arc<Worker>, usize) -> Option<&'static str>,
    ) -> Vec<(Arc<Worker>, &'static str)> {
        let mut m = lock(&self.inner.members);
        let mut count = m.live.len();
        let mut out = Vec::new();
        m.live.retain(|w| match drop(w, count) {
            Some(why) => {
                count -= 1;
                out.push((w.clone(), why));
                false
            }
            None => true,
        });
        out
    }

    /// Every worker that ever existed, with its final numbers (after `close_all`).
    pub(super) fn worker_reports(&self) -> Vec<WorkerReport> {
        let now = Instant::now();
        lock(&self.inner.members)
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
struct Launching<'a>(&'a AtomicUsize);

impl<'a> Launching<'a> {
    fn enter(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n)
    }
}

impl Drop for Launching<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
