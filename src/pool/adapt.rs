//! Adaptive routing: once a model has enough warm samples where the router put it, time it on
//! each other browser x backend the pool can offer (a real load and real `session.run`s on a
//! real worker, outside the request ledger), and move it, as one journaled transaction, to the
//! fastest when that is faster by more than [`AdaptSettings::min_gain`] with a one-sided
//! Mann-Whitney p at or under its Holm level (family-wise [`AdaptSettings::alpha`] over every
//! placement probed). Each model is evaluated once per run, so a noisy probe cannot make it
//! oscillate. Must not import `report`, `cli` or terminal crates.
//!
//! Like for like: each probe's runs alternate with runs of the current placement (the order
//! flips every round), both page-measured `session.run` times under the same load at the same
//! time. The run's own live times only start the evaluation; they are never compared with a
//! probe's.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::metrics::compare::{holm, mann_whitney_greater};
use crate::metrics::{AdaptiveEvaluation, AdaptiveMove, PairTiming, Percentiles};
use crate::state::Op;

use super::events::{LaunchReason, PoolEvent};
use super::journal::Tx;
use super::placements::ModelEntry;
use super::router::{HardwarePreferences, Measured};
use super::worker::{self, OutputMode, RunFor, Worker};
use super::Pool;

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

/// Why a probe or a move could not be made.
#[derive(Debug, thiserror::Error)]
enum AdaptError {
    /// No worker of that kind is free and there is no room for one.
    #[error("no {kind} worker free of {model} and the pool is at its maximum")]
    NoRoom { kind: BrowserKind, model: String },
    /// The worker timed on is gone.
    #[error("the probed worker is gone")]
    ProbedGone,
    /// The load chose another backend.
    #[error("{worker} loaded it on {backend}")]
    OtherBackend { worker: String, backend: Backend },
    /// A launch, load or first run failed.
    #[error(transparent)]
    Pool(#[from] super::PoolError),
    /// A worker call failed.
    #[error(transparent)]
    Worker(crate::browser::WorkerError),
    /// The move failed part way and was rolled back.
    #[error("load on {worker} failed: {why}; rolled back")]
    RolledBack {
        worker: String,
        why: Box<AdaptError>,
    },
}

/// A placement tried: where, its times, and the current placement's times beside them.
struct Probe {
    /// `None` when no worker could be had.
    worker: Option<Arc<Worker>>,
    kind: BrowserKind,
    backend: Backend,
    times: Vec<f64>,
    /// The current placement, timed in alternation with `times`.
    current: Vec<f64>,
    error: Option<String>,
    /// Its p-value and Holm level, once every probe was timed.
    tested: Option<(f64, f64)>,
}

impl Probe {
    fn new(worker: Option<Arc<Worker>>, kind: BrowserKind, backend: Backend) -> Self {
        Self {
            worker,
            kind,
            backend,
            times: Vec::new(),
            current: Vec::new(),
            error: None,
            tested: None,
        }
    }

    fn timing(&self) -> PairTiming {
        let id = self.worker.as_ref().map_or(String::new(), |w| w.id.clone());
        PairTiming {
            current_p50_ms: median(&self.current),
            p_value: self.tested.map(|t| t.0),
            holm_level: self.tested.map(|t| t.1),
            ..timing(
                &id,
                self.kind,
                self.backend,
                &self.times,
                self.error.clone(),
            )
        }
    }

    /// Timed, with the current placement beside it.
    fn timed(&self) -> bool {
        self.error.is_none() && !self.times.is_empty() && !self.current.is_empty()
    }

    /// How much faster than the current placement timed beside it (0.1 = 10%).
    fn gain(&self) -> f64 {
        match (median(&self.times), median(&self.current)) {
            (Some(t), Some(c)) if c > 0.0 => 1.0 - t / c,
            _ => f64::NEG_INFINITY,
        }
    }
}

fn median(times: &[f64]) -> Option<f64> {
    Percentiles::from_ms(times).map(|p| p.p50)
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
        current_p50_ms: None,
        p_value: None,
        holm_level: None,
    }
}

/// Evaluates every model once it has enough warm samples, until `stop`. Returns the
/// evaluations in time order.
pub(super) async fn adapt(
    pool: &Pool,
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
        let entries = pool.placements().entries();
        for entry in entries {
            if done.iter().any(|d| d == entry.name()) {
                continue;
            }
            // A model pinned to a browser stays there.
            if entry.hardware().browser.is_some() {
                done.push(entry.name().to_string());
                continue;
            }
            let Some(source) = pool.placements().live_placement(&entry) else {
                continue;
            };
            let Some(backend) = source.backend_of(entry.name()) else {
                continue;
            };
            let live = pool.ledger().live_times(entry.name(), &source.id, backend);
            if live.len() < settings.after_samples {
                continue;
            }
            done.push(entry.name().to_string());
            // Not cancelled mid-way (a half-made move would leave a transaction open): it
            // checks `stop` between its steps instead.
            out.push(evaluate(pool, &entry, &source, backend, live, &settings, &stop).await);
        }
    }
}

/// Times `entry` on every other placement and moves it to the best when that wins.
async fn evaluate(
    pool: &Pool,
    entry: &Arc<ModelEntry>,
    source: &Arc<Worker>,
    backend: Backend,
    live: Vec<f64>,
    settings: &AdaptSettings,
    stop: &CancellationToken,
) -> AdaptiveEvaluation {
    let model = entry.name().to_string();
    let at_ms = pool.elapsed_ms() as u64;
    let current = timing(&source.id, source.kind, backend, &live, None);
    pool.emit(PoolEvent::AdaptProbe {
        model: model.clone(),
        worker: source.id.clone(),
        browser: source.kind,
        backend,
        p50_ms: current.p50_ms,
        samples: current.samples,
    });
    let mut probes: Vec<Probe> = Vec::new();
    for (kind, b) in pairs(pool, source.kind, backend) {
        if stop.is_cancelled() {
            break;
        }
        match probe_worker(pool, entry, kind).await {
            Ok(w) => probes.push(time_on(entry, source, w, b, settings.probe_runs).await),
            Err(why) => {
                let mut p = Probe::new(None, kind, b);
                p.error = Some(why.to_string());
                probes.push(p);
            }
        }
    }
    // Holm over every probe timed: K tries at a move must not find a chance winner.
    let tested: Vec<usize> = (0..probes.len()).filter(|&i| probes[i].timed()).collect();
    let ps: Vec<f64> = tested
        .iter()
        .map(|&i| mann_whitney_greater(&probes[i].current, &probes[i].times))
        .collect();
    for (&i, (&pv, (level, _))) in tested.iter().zip(ps.iter().zip(holm(&ps, settings.alpha))) {
        probes[i].tested = Some((pv, level));
    }
    let best = tested
        .iter()
        .copied()
        .max_by(|&a, &b| probes[a].gain().total_cmp(&probes[b].gain()));
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
        let gain = p.gain();
        let (pv, level) = p.tested.unwrap_or((1.0, settings.alpha));
        if gain > settings.min_gain && pv <= level {
            Some((i, pv, gain))
        } else {
            eval.decision = format!(
                "stays on {}/{backend}: the best other, {}/{} p50 {:.1} ms against {:.1} ms for the current placement timed beside it, is {:+.0}% (p={}, Holm level {}); a move needs more than {:.0}% faster with p at or under its level",
                source.kind,
                t.browser,
                t.backend,
                t.p50_ms,
                t.current_p50_ms.unwrap_or(0.0),
                -gain * 100.0,
                crate::metrics::compare::format_p(pv),
                crate::metrics::compare::format_p(level),
                settings.min_gain * 100.0,
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
        match adopt(pool, entry, source, to, gain, pv).await {
            Ok(()) => {
                let t = to.timing();
                eval.decision = format!(
                    "moved to {}/{}: p50 {:.1} ms against {:.1} ms for the current placement timed beside it ({:.0}% faster, p={}, Holm level {} over {} probe(s))",
                    t.browser,
                    t.backend,
                    t.p50_ms,
                    t.current_p50_ms.unwrap_or(0.0),
                    gain * 100.0,
                    crate::metrics::compare::format_p(pv),
                    crate::metrics::compare::format_p(t.holm_level.unwrap_or(settings.alpha)),
                    tested.len()
                );
                eval.moved = Some(AdaptiveMove {
                    from: current.clone(),
                    to: t,
                    p_value: pv,
                    at_ms: pool.elapsed_ms() as u64,
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
    pool.emit(PoolEvent::AdaptDecided {
        model,
        worker: source.id.clone(),
        decision: eval.decision.clone(),
    });
    eval
}

/// Every browser x backend the pool may offer, but `(kind, backend)`.
fn pairs(pool: &Pool, kind: BrowserKind, backend: Backend) -> Vec<(BrowserKind, Backend)> {
    let c = pool.config();
    let mut out = Vec::new();
    for l in &c.launches {
        // A live worker says what its browser offers; a kind with none is tried with
        // every backend (a load with one that is missing fails, and says so).
        let offered = pool
            .members()
            .live()
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
    pool: &Pool,
    entry: &ModelEntry,
    kind: BrowserKind,
) -> Result<Arc<Worker>, AdaptError> {
    let found = pool
        .members()
        .live()
        .into_iter()
        .filter(|w| w.kind == kind && w.is_routable() && !pool.placements().serves(entry, w))
        .filter(|w| w.backend_of(entry.name()).is_none())
        .min_by_key(|w| w.queued());
    if let Some(w) = found {
        return Ok(w);
    }
    if !pool.has_room() {
        return Err(AdaptError::NoRoom {
            kind,
            model: entry.name().to_string(),
        });
    }
    Ok(pool
        .launch(kind, LaunchReason::Probe(entry.name().to_string()))
        .await?)
}

/// Loads `entry` on `worker` with `backend` only, runs it and the current placement
/// (`source`) once each untimed, then `runs` rounds timing both, the order flipping every
/// round so drift and load hit both alike (stopping after 3 rounds when every probe time is
/// over twice the current's median: it cannot win), and unloads it.
async fn time_on(
    entry: &ModelEntry,
    source: &Arc<Worker>,
    worker: Arc<Worker>,
    backend: Backend,
    runs: usize,
) -> Probe {
    let mut p = Probe::new(Some(worker.clone()), worker.kind, backend);
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
    for round in 0..=runs {
        let (first, second) = if round % 2 == 0 {
            (source, &worker)
        } else {
            (&worker, source)
        };
        let (a, b) = (timed(first, model).await, timed(second, model).await);
        let (current, probe) = if round % 2 == 0 { (a, b) } else { (b, a) };
        match (current, probe) {
            (Ok(c), Ok(t)) if round > 0 => {
                p.current.push(c);
                p.times.push(t);
            }
            (Ok(_), Ok(_)) => {}
            (Err(e), _) => {
                p.error = Some(format!("the current placement's run failed: {e}"));
                break;
            }
            (_, Err(e)) => {
                p.error = Some(format!("run failed: {e}"));
                break;
            }
        }
        let bar = median(&p.current).unwrap_or(f64::MAX);
        if p.times.len() >= 3 && p.times.iter().all(|t| *t > 2.0 * bar) {
            break;
        }
    }
    let _ = worker.unload(model).await;
    p
}

/// One timed run of `model` on `worker` outside the ledger, ms of the page's `session.run`.
async fn timed(worker: &Worker, model: &str) -> Result<f64, crate::browser::WorkerError> {
    worker
        .run(
            model,
            OutputMode::None,
            RunFor::Probe(worker::Probe::AdaptiveProbe),
        )
        .await
        .map(|r| r.run_ms)
}

/// Moves `entry` to `to`'s worker and backend as one transaction of the journal: load
/// there, switch every placement at the slow browser x backend over to it, unload from
/// those, and point later rebuilds there. A failed load rolls back (the target unloads,
/// the model keeps serving where it was, the log records the abort).
async fn adopt(
    pool: &Pool,
    entry: &Arc<ModelEntry>,
    source: &Arc<Worker>,
    to: &Probe,
    gain: f64,
    p: f64,
) -> Result<(), AdaptError> {
    let _placing = entry.placing.lock().await;
    let Some(target) = to.worker.clone().filter(|w| w.is_routable()) else {
        return Err(AdaptError::ProbedGone);
    };
    let model = entry.name().to_string();
    let slow = source.backend_of(&model);
    let order: Vec<Backend> = std::iter::once(to.backend)
        .chain(
            pool.config()
                .page
                .backends
                .iter()
                .copied()
                .filter(|b| *b != to.backend),
        )
        .collect();
    // The transaction: its first run journals the new placement (`Placed`); the old ones
    // are unplaced in one step after it, or the abort is recorded.
    let tx = Tx::begin(pool.journal());
    // Loaded with the new order (a reset reloads it so), then its first run: a placement
    // like any other, with its own row and correctness check.
    let loaded = match target
        .load(entry.prepared.clone(), Some(order.clone()))
        .await
    {
        Ok(l) if l.reply.backend == to.backend => {
            super::first_answer::first_run(pool, entry, &target, &l)
                .await
                .map_err(AdaptError::from)
        }
        Ok(l) => Err(AdaptError::OtherBackend {
            worker: target.id.clone(),
            backend: l.reply.backend,
        }),
        Err(e) => Err(AdaptError::Worker(e)),
    };
    if let Err(why) = loaded {
        let _ = target.unload(&model).await;
        let why = AdaptError::RolledBack {
            worker: target.id.clone(),
            why: Box::new(why),
        };
        tx.abort(&why.to_string());
        pool.emit(PoolEvent::AdaptRolledBack {
            worker: target.id.clone(),
            why: why.to_string(),
        });
        return Err(why);
    }
    // Every placement at the slow browser x backend moves (a scale-up may have added
    // more than the one measured).
    let moved = pool.placements().replace_where(
        entry,
        |w| w.kind == source.kind && w.backend_of(&model) == slow,
        &target,
    );
    entry.set_hardware(HardwarePreferences {
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
    });
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
    pool.emit(PoolEvent::Adapted {
        model,
        from: moved.iter().map(|w| w.id.clone()).collect(),
        to: target.id.clone(),
        browser: target.kind,
        backend: to.backend,
        notes,
    });
    Ok(())
}
