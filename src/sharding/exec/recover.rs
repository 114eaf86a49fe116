//! Shard recovery: after a shard call failed, one episode at a time repairs the placement by
//! `retry_failed_shards` (relaunch, reload its shards), `reassign_shards` (move them to live
//! workers, one journaled transaction) or `full_retry` (relaunch, reload everything).

use std::sync::Arc;
use std::time::Instant;

use super::{lock, ShardedModelExecution};
use crate::metrics::sharding::ShardEvent;
use crate::pool::{Journal, Worker};
use crate::scenario::ShardRecovery;
use crate::state::Op;

impl ShardedModelExecution {
    pub(super) fn generation(&self) -> u64 {
        lock(&self.place).generation
    }

    /// Repairs the placement after shard `shard` failed on the placement of `seen`.
    pub(super) async fn recover(
        &self,
        shard: usize,
        seen: u64,
        failed_at: Instant,
        cause: String,
    ) -> Result<(), String> {
        let _one = self.recovering.lock().await;
        if self.generation() != seen {
            return Ok(()); // another request's recovery already repaired it
        }
        let started = failed_at;
        let (slot, failed, held) = {
            let p = lock(&self.place);
            let at = p.assign[shard];
            let held: Vec<usize> = (0..self.shards.len())
                .filter(|&s| p.assign[s] == at)
                .collect();
            (at, p.workers[at].clone(), held)
        };
        self.retire(&failed);
        let strategy = self.setup.recovery;
        let outcome = match strategy {
            ShardRecovery::RetryFailedShards => self.relaunch(slot, &failed, &held).await,
            ShardRecovery::ReassignShards => self.reassign(slot, &failed, &held).await,
            ShardRecovery::FullRetry => {
                let all: Vec<usize> = (0..self.shards.len()).collect();
                self.relaunch(slot, &failed, &all).await
            }
        };
        let (to, reloaded, result) = match outcome {
            Ok((to, reloaded)) => (to, reloaded, Ok(())),
            Err(e) => (Vec::new(), Vec::new(), Err(e)),
        };
        lock(&self.place).generation += 1;
        let injected = lock(&self.injected).remove(&failed.id);
        lock(&self.rec).events.push(ShardEvent {
            at_ms: self.ms(started) as u64,
            detection_ms: injected
                .map(|(at, _)| failed_at.saturating_duration_since(at).as_secs_f64() * 1e3),
            fault_kind: injected.map(|(_, kind)| kind.to_string()),
            strategy: strategy.as_str().to_string(),
            shard,
            from: failed.id.clone(),
            to,
            reloaded,
            cause: match &result {
                Ok(()) => cause,
                Err(e) => format!("{cause}; recovery failed: {e}"),
            },
            recovery_ms: started.elapsed().as_secs_f64() * 1e3,
            succeeded: result.is_ok(),
        });
        result
    }

    /// Closes `worker` in the background (a dead browser's close is quick, a hung one's is not).
    fn retire(&self, worker: &Arc<Worker>) {
        worker.mark_unhealthy("its shard failed".into());
        lock(&self.place).retired.push(worker.clone());
        let w = worker.clone();
        lock(&self.closing).push(tokio::spawn(async move { w.close().await }));
    }

    /// A new browser of the failed one's kind in its place; `reload` shards loaded again (the
    /// failed worker's for `retry_failed_shards`, every shard for `full_retry`).
    async fn relaunch(
        &self,
        at: usize,
        failed: &Arc<Worker>,
        reload: &[usize],
    ) -> Result<(Vec<String>, Vec<usize>), String> {
        let backend = lock(&self.place).backends.get(at).copied().flatten();
        let fresh = self
            .launch(failed.kind, backend)
            .await
            .map_err(|e| e.message)?;
        {
            let mut p = lock(&self.place);
            p.workers[at] = fresh.clone();
            for s in 0..self.shards.len() {
                if p.assign[s] == at {
                    p.earlier[s].push(failed.id.clone());
                }
            }
        }
        let mut to = vec![fresh.id.clone()];
        for &s in reload {
            let w = self.worker_of(s);
            if !Arc::ptr_eq(&w, &fresh) {
                // full_retry: every other shard is loaded again where it is.
                let _ = w.unload(&self.shards[s].name).await;
                if !to.contains(&w.id) {
                    to.push(w.id.clone());
                }
            }
            self.load(s, &w).await.map_err(|e| e.message)?;
        }
        if let Some(j) = &self.setup.journal {
            if let Some(tx) = j.begin() {
                for s in 0..self.shards.len() {
                    if lock(&self.place).assign[s] == at {
                        j.op(
                            tx,
                            Op::ShardAssigned {
                                model: self.sharded.whole.name.clone(),
                                shard: s as u32,
                                worker: fresh.id.clone(),
                            },
                        );
                    }
                }
                j.op(
                    tx,
                    Op::WorkerRemoved {
                        id: failed.id.clone(),
                    },
                );
                j.commit_tx(tx);
            }
        }
        Ok((to, reload.to_vec()))
    }

    /// The failed worker's shards onto the live workers, the one holding the fewest
    /// parameters first; journaled as one transaction, aborted if a load fails.
    async fn reassign(
        &self,
        at: usize,
        failed: &Arc<Worker>,
        held: &[usize],
    ) -> Result<(Vec<String>, Vec<usize>), String> {
        let tx = self.setup.journal.as_ref().and_then(Journal::begin);
        let mut to = Vec::new();
        for &s in held {
            let target = {
                let p = lock(&self.place);
                let mut best: Option<(usize, u64)> = None;
                for (wi, w) in p.workers.iter().enumerate() {
                    if wi == at || !w.is_routable() || !w.browser_alive() {
                        continue;
                    }
                    let held_params: u64 = (0..self.shards.len())
                        .filter(|&x| p.assign[x] == wi)
                        .map(|x| self.shards[x].parameters)
                        .sum();
                    if best.is_none_or(|(_, b)| held_params < b) {
                        best = Some((wi, held_params));
                    }
                }
                best.map(|(wi, _)| (wi, p.workers[wi].clone()))
            };
            let Some((wi, worker)) = target else {
                let why = "no live worker is left to take the shard".to_string();
                if let (Some(j), Some(tx)) = (&self.setup.journal, tx) {
                    j.abort(tx, &why);
                }
                return Err(why);
            };
            if let Err(e) = self.load(s, &worker).await {
                if let (Some(j), Some(tx)) = (&self.setup.journal, tx) {
                    j.abort(
                        tx,
                        &format!("loading shard {s} on {}: {}", worker.id, e.message),
                    );
                }
                return Err(e.message);
            }
            {
                let mut p = lock(&self.place);
                p.assign[s] = wi;
                p.earlier[s].push(failed.id.clone());
            }
            if let (Some(j), Some(tx)) = (&self.setup.journal, tx) {
                j.op(
                    tx,
                    Op::ShardAssigned {
                        model: self.sharded.whole.name.clone(),
                        shard: s as u32,
                        worker: worker.id.clone(),
                    },
                );
            }
            if !to.contains(&worker.id) {
                to.push(worker.id.clone());
            }
        }
        if let (Some(j), Some(tx)) = (&self.setup.journal, tx) {
            j.op(
                tx,
                Op::WorkerRemoved {
                    id: failed.id.clone(),
                },
            );
            j.commit_tx(tx);
        }
        Ok((to, held.to_vec()))
    }
}
