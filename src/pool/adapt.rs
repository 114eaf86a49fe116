//! Adaptive routing: once a model has enough warm samples where the router put it, time it on
//! each other browser x backend the pool can offer (a real load and real `session.run`s on a
//! real worker, outside the request ledger), and move it, as one journaled transaction, to the
//! fastest when that is faster by more than [`AdaptSettings::min_gain`] with a one-sided
//! Mann-Whitney p below [`AdaptSettings::alpha`]. Each model is evaluated once per run, so a
//! noisy probe cannot make it oscillate. Must not import `report`, `cli` or terminal crates.
//!
//! The live times come from the run's own requests (under the run's concurrency) and the probe
//! times from runs on a worker that may also be serving: both are page-measured
//! `session.run` times on the same two cores at the same time, which is as side by side as
//! this machine allows.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::metrics::compare::mann_whitney_greater;
use crate::metrics::{AdaptiveEvaluation, AdaptiveMove, PairTiming, Percentiles, Phase};
use crate::state::Op;

use super::placement::ModelEntry;
use super::router::{HardwarePreferences, Measured};
use super::worker::{OutputMode, Worker};
use super::{lock, Pool};

/// When and how adaptive routing decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptSettings {
    /// Warm samples of a model where it runs before it is evaluated.
    pub after_samples: usize,
    /// Timed runs per probed placement (after one untimed run).
    pub probe_runs: usize,
    /// Smallest gain in median that moves a model (0.10 = 10% faster).
    pub min_gain: f64,
    /// Significance level of the move.
    pub alpha: f64,
}

impl Default for AdaptSettings {
    fn default() -> Self {
        Self {
            after_samples: 5,
            probe_runs: 7,
            min_gain: 0.10,
            alpha: 0.01,
        }
    }
}

/// A placement tried: where, and its times.
struct Probe {
    /// `None` when no worker could be had.
    worker: Option<Arc<Worker>>,
    kind: BrowserKind,
    backend: Backend,
    times: Vec<f64>,
    error: Option<String>,
}

impl Probe {
    fn timing(&self) -> PairTiming {
        let id = self.worker.as_ref().map_or(String::new(), |w| w.id.clone());
        timing(
            &id,
            self.kind,
            self.backend,
            &self.times,
            self.error.clone(),
        )
    }
}

fn timing(
    worker: &str,
    kind: BrowserKind,
    backend: Backend,
    times: &[f64],
    error: Option<String>,
) -> PairTiming {
    PairTiming {
        worker: worker.to_string(),
        browser: kind.to_string(),
        backend: backend.to_string(),
        p50_ms: Percentiles::from_ms(times).map_or(0.0, |p| p.p50),
        samples: times.len(),
        error,
    }
}

impl Pool {
    /// Evaluates every model once it has enough warm samples, until `stop`. Returns the
    /// evaluations in time order.
    pub(super) async fn adapt(
        &self,
        settings: AdaptSettings,
        stop: CancellationToken,
    ) -> Vec<AdaptiveEvaluation> {
        let mut done: Vec<String> = Vec::new();
        let mut out = Vec::new();
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = stop.cancelled() => return out,
            }
            let entries: Vec<Arc<ModelEntry>> =
                lock(&self.inner.models).values().cloned().collect();
            for entry in entries {
                if done.iter().any(|d| d == entry.name()) {
                    continue;
                }
                // A model pinned to a browser stays there.
                if entry.hardware().browser.is_some() {
                    done.push(entry.name().to_string());
                    continue;
                }
                let Some(source) = lock(&entry.placements)
                    .iter()
                    .find(|w| w.is_routable())
                    .cloned()
                else {
                    continue;
                };
                let Some(backend) = source.backend_of(entry.name()) else {
                    continue;
                };
                let live = self.live_times(entry.name(), &source.id, backend);
                if live.len() < settings.after_samples {
                    continue;
                }
                done.push(entry.name().to_string());
                // Not cancelled mid-way (a half-made move would leave a transaction open): it
                // checks `stop` between its steps instead.
                out.push(
                    self.evaluate(&entry, &source, backend, live, &settings, &stop)
                        .await,
                );
            }
        }
    }

    /// The router's measured score of `worker` for `model`: the requests per second its
    /// page's median warm time allows, from this run's own requests there (at least 3).
    pub(super) fn live_score(&self, model: &str, worker: &Worker) -> Option<f64> {
        let backend = worker.backend_of(model)?;
        let times = self.live_times(model, &worker.id, backend);
        if times.len() < 3 {
            return None;
        }
        Percentiles::from_ms(&times)
            .map(|p| p.p50)
            .filter(|ms| *ms > 0.0)
            .map(|ms| 1000.0 / ms)
    }

    /// Warm page times of `model`'s successful requests on `worker` with `backend`.
    fn live_times(&self, model: &str, worker: &str, backend: Backend) -> Vec<f64> {
        let b = backend.to_string();
        lock(&self.inner.ledger)
            .samples()
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

    /// Times `entry` on every other placement and moves it to the best when that wins.
    async fn evaluate(
        &self,
        entry: &Arc<ModelEntry>,
        source: &Arc<Worker>,
        backend: Backend,
        live: Vec<f64>,
        settings: &AdaptSettings,
        stop: &CancellationToken,
    ) -> AdaptiveEvaluation {
        let model = entry.name().to_string();
        let at_ms = self.elapsed_ms() as u64;
        let current = timing(&source.id, source.kind, backend, &live, None);
        self.event(
            "adapt_probe",
            &source.id,
            format!(
                "{model}: {}/{backend} p50 {:.1} ms over {} warm requests; timing the other placements",
                source.kind, current.p50_ms, current.samples
            ),
        );
        let mut probes: Vec<Probe> = Vec::new();
        for (kind, b) in self.pairs(source.kind, backend) {
            if stop.is_cancelled() {
                break;
            }
            let worker = match self.probe_worker(entry, kind).await {
                Ok(w) => w,
                Err(why) => {
                    probes.push(Probe {
                        worker: None,
                        kind,
                        backend: b,
                        times: Vec::new(),
                        error: Some(why),
                    });
                    continue;
                }
            };
            // A probe that is already far behind the best so far stops early.
            let bar = probes
                .iter()
                .filter(|p| p.error.is_none())
                .filter_map(|p| Percentiles::from_ms(&p.times).map(|x| x.p50))
                .fold(current.p50_ms, f64::min);
            probes.push(
                self.time_on(entry, worker, b, settings.probe_runs, bar)
                    .await,
            );
        }
        let best = probes
            .iter()
            .enumerate()
            .filter(|(_, p)| p.error.is_none() && !p.times.is_empty())
            .min_by(|a, b| {
                let m = |p: &Probe| Percentiles::from_ms(&p.times).map_or(f64::MAX, |x| x.p50);
                m(a.1).total_cmp(&m(b.1))
            })
            .map(|(i, _)| i);
        let mut eval = AdaptiveEvaluation {
            model: model.clone(),
            at_ms,
            current: current.clone(),
            probes: probes.iter().map(Probe::timing).collect(),
            decision: String::new(),
            moved: None,
        };
        let winner = best.and_then(|i| {
            let p = &probes[i];
            let t = p.timing();
            let gain = 1.0 - t.p50_ms / current.p50_ms;
            let pv = mann_whitney_greater(&live, &p.times);
            if gain > settings.min_gain && pv < settings.alpha {
                Some((i, pv, gain))
            } else {
                eval.decision = format!(
                    "stays on {}/{backend}: the best other, {}/{} p50 {:.1} ms, is {:+.0}% (p={}); a move needs more than {:.0}% faster with p < {}",
                    source.kind,
                    t.browser,
                    t.backend,
                    t.p50_ms,
                    -gain * 100.0,
                    crate::metrics::compare::format_p(pv),
                    settings.min_gain * 100.0,
                    settings.alpha
                );
                None
            }
        });
        if best.is_none() {
            eval.decision = format!(
                "stays on {}/{backend}: no other placement could be timed",
                source.kind
            );
        }
        if stop.is_cancelled() {
            eval.decision = format!(
                "stays on {}/{backend}: the workload ended before the evaluation did",
                source.kind
            );
        } else if let Some((i, pv, gain)) = winner {
            let to = &probes[i];
            match self.adopt(entry, source, to, gain, pv).await {
                Ok(()) => {
                    let t = to.timing();
                    eval.decision = format!(
                        "moved to {}/{}: p50 {:.1} ms against {:.1} ms ({:.0}% faster, p={})",
                        t.browser,
                        t.backend,
                        t.p50_ms,
                        current.p50_ms,
                        gain * 100.0,
                        crate::metrics::compare::format_p(pv)
                    );
                    eval.moved = Some(AdaptiveMove {
                        from: current.clone(),
                        to: t,
                        p_value: pv,
                        at_ms: self.elapsed_ms() as u64,
                        before_p50_ms: current.p50_ms,
                        before_samples: current.samples,
                        after_p50_ms: None,
                        after_samples: 0,
                    });
                }
                Err(why) => {
                    eval.decision = format!("the move was not made: {why}");
                }
            }
        }
        self.event(
            "adapt_decided",
            &source.id,
            format!("{model}: {}", eval.decision),
        );
        eval
    }

    /// Every browser x backend the pool may offer, but `(kind, backend)`.
    fn pairs(&self, kind: BrowserKind, backend: Backend) -> Vec<(BrowserKind, Backend)> {
        let c = &self.inner.config;
        let mut out = Vec::new();
        for l in &c.launches {
            // A live worker says what its browser offers; a kind with none is tried with
            // every backend (a load with one that is missing fails, and says so).
            let offered = self
                .workers()
                .into_iter()
                .find(|w| w.kind == l.kind && w.is_routable())
                .map(|w| w.status().backends);
            for &b in &c.page.backends {
                if (l.kind, b) != (kind, backend)
                    && offered.as_ref().is_none_or(|o| o.contains(&b))
                    && !out.contains(&(l.kind, b))
                {
                    out.push((l.kind, b));
                }
            }
        }
        out
    }

    /// A routable worker of `kind` that does not serve `entry`: the least loaded, or a new one
    /// when the pool has room.
    async fn probe_worker(
        &self,
        entry: &ModelEntry,
        kind: BrowserKind,
    ) -> Result<Arc<Worker>, String> {
        let found = self
            .workers()
            .into_iter()
            .filter(|w| w.kind == kind && w.is_routable() && !entry.served_by(w))
            .filter(|w| w.backend_of(entry.name()).is_none())
            .min_by_key(|w| w.queued());
        if let Some(w) = found {
            return Ok(w);
        }
        if !self.has_room() {
            return Err(format!(
                "no {kind} worker free of {} and the pool is at its maximum",
                entry.name()
            ));
        }
        self.launch(kind, &format!("adaptive probe of {}", entry.name()))
            .await
            .map_err(|e| e.to_string())
    }

    /// Loads `entry` on `worker` with `backend` only, runs it once untimed, then `runs` timed
    /// (stopping after 3 when every one is over twice `bar`, the best median so far: it cannot
    /// win), and unloads it.
    async fn time_on(
        &self,
        entry: &ModelEntry,
        worker: Arc<Worker>,
        backend: Backend,
        runs: usize,
        bar: f64,
    ) -> Probe {
        let mut p = Probe {
            worker: Some(worker.clone()),
            kind: worker.kind,
            backend,
            times: Vec::new(),
            error: None,
        };
        let model = entry.name();
        match worker
            .load(entry.prepared.clone(), Some(vec![backend]))
            .await
        {
            Ok(l) if l.reply.backend == backend => {}
            Ok(l) => {
                p.error = Some(format!("loaded on {} instead", l.reply.backend));
                let _ = worker.unload(model).await;
                return p;
            }
            Err(e) => {
                p.error = Some(format!("load failed: {e}"));
                let _ = worker.unload(model).await;
                return p;
            }
        }
        for i in 0..=runs {
            match worker.run(model, OutputMode::None).await {
                Ok(r) if i > 0 => p.times.push(r.run_ms),
                Ok(_) => {}
                Err(e) => {
                    p.error = Some(format!("run failed: {e}"));
                    break;
                }
            }
            if p.times.len() >= 3 && p.times.iter().all(|t| *t > 2.0 * bar) {
                break;
            }
        }
        let _ = worker.unload(model).await;
        p
    }

    /// Moves `entry` to `to`'s worker and backend as one transaction of the journal: load
    /// there, switch every placement at the slow browser x backend over to it, unload from
    /// those, and point later rebuilds there. A failed load rolls back (the target unloads,
    /// the model keeps serving where it was, the log records the abort).
    async fn adopt(
        &self,
        entry: &Arc<ModelEntry>,
        source: &Arc<Worker>,
        to: &Probe,
        gain: f64,
        p: f64,
    ) -> Result<(), String> {
        let _placing = entry.placing.lock().await;
        let Some(target) = to.worker.clone().filter(|w| w.is_routable()) else {
            return Err("the probed worker is gone".into());
        };
        let model = entry.name().to_string();
        let slow = source.backend_of(&model);
        let order: Vec<Backend> = std::iter::once(to.backend)
            .chain(
                self.inner
                    .config
                    .page
                    .backends
                    .iter()
                    .copied()
                    .filter(|b| *b != to.backend),
            )
            .collect();
        let tx = super::journal::Tx::begin(self.inner.journal.as_ref());
        tx.op(Op::Placed {
            model: model.clone(),
            worker: target.id.clone(),
        });
        // Loaded with the new order (a reset reloads it so), then its first run: a placement
        // like any other, with its own row and correctness check.
        let loaded = match target
            .load(entry.prepared.clone(), Some(order.clone()))
            .await
        {
            Ok(l) if l.reply.backend == to.backend => self
                .first_run(entry, &target, &l)
                .await
                .map_err(|e| e.to_string()),
            Ok(l) => Err(format!("{} loaded it on {}", target.id, l.reply.backend)),
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = loaded {
            let _ = target.unload(&model).await;
            let why = format!("load on {} failed: {why}; rolled back", target.id);
            tx.abort(&why);
            self.event("adapt_rolled_back", &target.id, why.clone());
            return Err(why);
        }
        // Every placement at the slow browser x backend moves (a scale-up may have added
        // more than the one measured).
        let moved: Vec<Arc<Worker>> = {
            let mut placements = lock(&entry.placements);
            let moved: Vec<Arc<Worker>> = placements
                .iter()
                .filter(|w| w.kind == source.kind && w.backend_of(&model) == slow)
                .cloned()
                .collect();
            placements.retain(|w| !moved.iter().any(|m| Arc::ptr_eq(m, w)));
            placements.push(target.clone());
            moved
        };
        *lock(&entry.hardware) = HardwarePreferences {
            browser: None,
            backends: Some(order),
            measured: Some(Measured {
                browser: target.kind,
                backend: to.backend,
                reason: format!(
                    "adaptive routing measured it {:.0}% faster than on {} (p={})",
                    gain * 100.0,
                    source.id,
                    crate::metrics::compare::format_p(p)
                ),
            }),
        };
        let mut notes = Vec::new();
        for w in &moved {
            tx.op(Op::Unplaced {
                model: model.clone(),
                worker: w.id.clone(),
            });
            if let Err(e) = w.unload(&model).await {
                notes.push(format!("unload from {} failed: {e}", w.id));
            }
        }
        tx.commit();
        let from: Vec<&str> = moved.iter().map(|w| w.id.as_str()).collect();
        self.event(
            "adapted",
            &target.id,
            format!(
                "{model}: {} -> {} ({}/{}){}",
                from.join(", "),
                target.id,
                target.kind,
                to.backend,
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join("; "))
                }
            ),
        );
        Ok(())
    }
}
