//! The placement registry: the one index of which workers serve which model, which hold a hot
//! standby copy of it, and what its verified answers are (the digests every later answer must
//! equal, per browser kind and backend, each from a first run judged against native
//! onnxruntime over every value), with how many placements were verified or rejected and how
//! many answers were digest-checked in each cell. A
//! [`ModelEntry`] is a model as the pool holds it (the prepared model, where it should run, and
//! the locks that serialise placing it); everything about where it is lives here, behind one
//! lock, and the pool asks. Must not import `report`, `cli` or terminal crates.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::backend::Backend;
use crate::browser::BrowserKind;
use crate::models::PreparedModel;
use crate::oracle::NativeResult;

use super::lock;
use super::router::HardwarePreferences;
use super::worker::Worker;

/// The digest of every output of one answer, by output name.
pub(super) type Digests = BTreeMap<String, String>;

/// A model in the pool.
#[derive(Debug)]
pub(super) struct ModelEntry {
    /// Its key in the registry: the name and the browser it is pinned to.
    key: String,
    /// The model.
    pub prepared: Arc<PreparedModel>,
    /// The same model run by native onnxruntime: every placement's first answer is judged
    /// against it before the placement serves. `None` for a pipeline's shards, whose every
    /// answer is judged against the unsharded model's native output instead.
    pub oracle: Option<Arc<NativeResult>>,
    /// Where it should run: a pin, its backend order, its measured best (adaptive routing
    /// rewrites it when it moves the model).
    hardware: Mutex<HardwarePreferences>,
    /// Serialises (re)placement so a burst of requests places a model once.
    pub placing: tokio::sync::Mutex<()>,
    /// A scale-up for this model is in flight.
    pub scaling: AtomicBool,
}

impl ModelEntry {
    /// The model's name.
    pub fn name(&self) -> &str {
        &self.prepared.name
    }

    /// Its key: the name and the browser it is pinned to.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Where it should run, now.
    pub fn hardware(&self) -> HardwarePreferences {
        lock(&self.hardware).clone()
    }

    /// Points later placements elsewhere (adaptive routing moved it).
    pub fn set_hardware(&self, hardware: HardwarePreferences) {
        *lock(&self.hardware) = hardware;
    }
}

/// Where one model is.
#[derive(Debug)]
struct Slot {
    entry: Arc<ModelEntry>,
    /// Workers serving the model.
    serving: Vec<Arc<Worker>>,
    /// Warm spares: workers with the model loaded that serve only once promoted.
    standby: Vec<Arc<Worker>>,
    /// The digests of a verified first answer per browser kind and backend: every later
    /// answer there must equal them.
    verified: BTreeMap<(BrowserKind, Backend), Digests>,
    /// Without an oracle (a pipeline's shard): the first placement's output, every value, that
    /// a standby's first answer must match.
    reference: Option<Vec<f32>>,
}

/// The registry.
#[derive(Debug, Default)]
pub(super) struct Placements {
    slots: Mutex<HashMap<String, Slot>>,
    /// Per model, browser kind and backend; kept when a model is released.
    checks: Mutex<BTreeMap<(String, BrowserKind, Backend), CellChecks>>,
}

/// What was proven in one cell (model x browser kind x backend) of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellChecks {
    /// Placements (first, scale-up, standby, recovery, migration, adaptive) whose first answer
    /// matched native onnxruntime over every value before they served.
    pub placements_verified: u64,
    /// Placements whose first answer did not: never served.
    pub placements_rejected: u64,
    /// Warm answers whose digests were compared with a verified first answer's.
    pub answers_digest_checked: u64,
    /// Warm runs that succeeded on WebNN.
    pub webnn_runs: u64,
    /// Of those, the runs whose page saw at least one WebNN graph dispatched.
    pub webnn_runs_dispatched: u64,
}

/// One cell's [`CellChecks`], for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellCheckRecord {
    /// Catalog model name.
    pub model: String,
    /// Browser kind.
    pub browser: BrowserKind,
    /// Backend.
    pub backend: Backend,
    /// The counts.
    pub checks: CellChecks,
}

/// What a verified-answer lookup found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verified {
    /// The answer equals the verified one.
    Same,
    /// It differs: the verified digests.
    Differs(Digests),
    /// No placement on that browser kind and backend had a verified first answer: the answer
    /// cannot be trusted (and never becomes a reference).
    Unverified,
}

impl Placements {
    /// The entry of `prepared` pinned as `hardware` says, added if new.
    pub fn entry(
        &self,
        prepared: Arc<PreparedModel>,
        oracle: Option<Arc<NativeResult>>,
        hardware: HardwarePreferences,
    ) -> Arc<ModelEntry> {
        let key = format!("{}@{:?}", prepared.name, hardware.browser);
        lock(&self.slots)
            .entry(key.clone())
            .or_insert_with(|| Slot {
                entry: Arc::new(ModelEntry {
                    key,
                    prepared,
                    oracle,
                    hardware: Mutex::new(hardware),
                    placing: tokio::sync::Mutex::new(()),
                    scaling: AtomicBool::new(false),
                }),
                serving: Vec::new(),
                standby: Vec::new(),
                verified: BTreeMap::new(),
                reference: None,
            })
            .entry
            .clone()
    }

    /// Every model in the pool.
    pub fn entries(&self) -> Vec<Arc<ModelEntry>> {
        lock(&self.slots)
            .values()
            .map(|s| s.entry.clone())
            .collect()
    }

    /// The entry of the model named `model` (the first, when it is pinned more than once).
    pub fn find(&self, model: &str) -> Option<Arc<ModelEntry>> {
        lock(&self.slots)
            .values()
            .find(|s| s.entry.name() == model)
            .map(|s| s.entry.clone())
    }

    /// Forgets `entry`; returns the workers that served it.
    pub fn remove(&self, entry: &ModelEntry) -> Vec<Arc<Worker>> {
        lock(&self.slots)
            .remove(&entry.key)
            .map(|s| s.serving)
            .unwrap_or_default()
    }

    fn with<T>(&self, entry: &ModelEntry, f: impl FnOnce(&mut Slot) -> T) -> Option<T> {
        lock(&self.slots).get_mut(&entry.key).map(f)
    }

    /// The workers serving `entry` now.
    pub fn serving(&self, entry: &ModelEntry) -> Vec<Arc<Worker>> {
        self.with(entry, |s| s.serving.clone()).unwrap_or_default()
    }

    /// Whether `worker` serves `entry`.
    pub fn serves(&self, entry: &ModelEntry, worker: &Arc<Worker>) -> bool {
        self.with(entry, |s| s.serving.iter().any(|w| Arc::ptr_eq(w, worker)))
            .unwrap_or(false)
    }

    /// Whether `worker` serves `entry` or holds a standby copy of it.
    pub fn holds(&self, entry: &ModelEntry, worker: &Arc<Worker>) -> bool {
        self.with(entry, |s| {
            s.serving
                .iter()
                .chain(&s.standby)
                .any(|w| Arc::ptr_eq(w, worker))
        })
        .unwrap_or(false)
    }

    /// Whether `entry` has no placement at all (routable or not).
    pub fn is_unplaced(&self, entry: &ModelEntry) -> bool {
        self.with(entry, |s| s.serving.is_empty()).unwrap_or(true)
    }

    /// A routable worker serving `entry`, if any.
    pub fn live_placement(&self, entry: &ModelEntry) -> Option<Arc<Worker>> {
        self.with(entry, |s| {
            s.serving.iter().find(|w| w.is_routable()).cloned()
        })
        .flatten()
    }

    /// The least-loaded routable worker serving `entry`, other than `avoid` when there is
    /// another. Only reads the placements: a worker that is unhealthy or being recovered keeps
    /// its placement, because its recovery episode reads it (what to promote, reset or
    /// migrate) and it serves again once repaired. Retiring a worker unplaces it.
    pub fn least_loaded(
        &self,
        entry: &ModelEntry,
        avoid: Option<&Arc<Worker>>,
    ) -> Option<Arc<Worker>> {
        self.with(entry, |s| {
            let routable = || s.serving.iter().filter(|w| w.is_routable());
            let elsewhere = |w: &&Arc<Worker>| avoid.is_none_or(|a| !Arc::ptr_eq(w, a));
            let best = routable().filter(elsewhere).min_by_key(|w| w.queued());
            best.or_else(|| routable().min_by_key(|w| w.queued()))
                .cloned()
        })
        .flatten()
    }

    /// Adds `worker` to the workers serving `entry` (once).
    pub fn place(&self, entry: &ModelEntry, worker: &Arc<Worker>) {
        self.with(entry, |s| {
            if !s.serving.iter().any(|w| Arc::ptr_eq(w, worker)) {
                s.serving.push(worker.clone());
            }
        });
    }

    /// Takes `worker` out of the workers serving `entry`; returns whether it served it.
    pub fn unplace(&self, entry: &ModelEntry, worker: &Arc<Worker>) -> bool {
        self.with(entry, |s| {
            let before = s.serving.len();
            s.serving.retain(|w| !Arc::ptr_eq(w, worker));
            before != s.serving.len()
        })
        .unwrap_or(false)
    }

    /// Replaces every placement of `entry` that `moved` accepts by `to`; returns those moved.
    pub fn replace_where(
        &self,
        entry: &ModelEntry,
        moved: impl Fn(&Arc<Worker>) -> bool,
        to: &Arc<Worker>,
    ) -> Vec<Arc<Worker>> {
        self.with(entry, |s| {
            let out: Vec<Arc<Worker>> = s.serving.iter().filter(|w| moved(w)).cloned().collect();
            s.serving.retain(|w| !out.iter().any(|m| Arc::ptr_eq(m, w)));
            if !s.serving.iter().any(|w| Arc::ptr_eq(w, to)) {
                s.serving.push(to.clone());
            }
            out
        })
        .unwrap_or_default()
    }

    /// The models `worker` serves.
    pub fn models_on(&self, worker: &Arc<Worker>) -> Vec<Arc<ModelEntry>> {
        lock(&self.slots)
            .values()
            .filter(|s| s.serving.iter().any(|w| Arc::ptr_eq(w, worker)))
            .map(|s| s.entry.clone())
            .collect()
    }

    /// The models left with no routable placement.
    pub fn orphans(&self) -> Vec<Arc<ModelEntry>> {
        lock(&self.slots)
            .values()
            .filter(|s| !s.serving.iter().any(|w| w.is_routable()))
            .map(|s| s.entry.clone())
            .collect()
    }

    /// Takes `worker` out of every placement and standby list; returns the names of the models
    /// it served.
    pub fn unplace_everywhere(&self, worker: &Arc<Worker>) -> Vec<String> {
        let mut held = Vec::new();
        for s in lock(&self.slots).values_mut() {
            if s.serving.iter().any(|w| Arc::ptr_eq(w, worker)) {
                held.push(s.entry.name().to_string());
            }
            s.serving.retain(|w| !Arc::ptr_eq(w, worker));
            s.standby.retain(|w| !Arc::ptr_eq(w, worker));
        }
        held
    }

    /// Whether a worker other than `worker` can serve `entry` at once: another live placement,
    /// or a ready standby.
    pub fn covered_without(&self, entry: &ModelEntry, worker: &Arc<Worker>) -> bool {
        let other = |w: &Arc<Worker>| !Arc::ptr_eq(w, worker) && w.is_routable();
        self.with(entry, |s| {
            s.serving.iter().any(other) || s.standby.iter().any(other)
        })
        .unwrap_or(false)
    }

    /// Per entry key, its model's name and whether it has a live copy: a routable worker
    /// serving it or holding a hot standby of it (both verified before they were held).
    pub fn live_copies(&self) -> BTreeMap<String, (String, bool)> {
        lock(&self.slots)
            .iter()
            .map(|(key, s)| {
                let live = s.serving.iter().chain(&s.standby).any(|w| w.is_routable());
                (key.clone(), (s.entry.name().to_string(), live))
            })
            .collect()
    }

    /// Whether every placed model has a ready standby.
    pub fn spares_ready(&self) -> bool {
        lock(&self.slots)
            .values()
            .all(|s| s.serving.is_empty() || s.standby.iter().any(|w| w.is_routable()))
    }

    /// The standby copies of `entry` whose workers are routable (the others are dropped).
    pub fn standbys(&self, entry: &ModelEntry) -> Vec<Arc<Worker>> {
        self.with(entry, |s| {
            s.standby.retain(|w| w.is_routable());
            s.standby.clone()
        })
        .unwrap_or_default()
    }

    /// Adds a standby copy of `entry` on `worker` (once); returns whether it was added.
    pub fn add_standby(&self, entry: &ModelEntry, worker: &Arc<Worker>) -> bool {
        self.with(entry, |s| {
            let new = !s.standby.iter().any(|w| Arc::ptr_eq(w, worker));
            if new {
                s.standby.push(worker.clone());
            }
            new
        })
        .unwrap_or(false)
    }

    /// Takes `worker` out of `entry`'s standby copies.
    pub fn drop_standby(&self, entry: &ModelEntry, worker: &Arc<Worker>) {
        self.with(entry, |s| s.standby.retain(|w| !Arc::ptr_eq(w, worker)));
    }

    /// Promotes a ready standby of `entry` to serve it: the one whose worker serves the fewest
    /// models (so promotions spread the load).
    pub fn promote(&self, entry: &ModelEntry) -> Option<Arc<Worker>> {
        let mut slots = lock(&self.slots);
        let serving = |w: &Arc<Worker>| {
            slots
                .values()
                .filter(|s| s.serving.iter().any(|x| Arc::ptr_eq(x, w)))
                .count()
        };
        let slot = slots.get(&entry.key)?;
        let spare = slot
            .standby
            .iter()
            .filter(|w| w.is_routable())
            .min_by_key(|w| serving(w))?
            .clone();
        let slot = slots.get_mut(&entry.key)?;
        slot.standby
            .retain(|w| w.is_routable() && !Arc::ptr_eq(w, &spare));
        slot.serving.push(spare.clone());
        Some(spare)
    }

    /// A warm answer's `digests` against the verified first answer of `entry` on
    /// `browser`/`backend`, counted as digest-checked when there is one.
    pub fn verify(
        &self,
        entry: &ModelEntry,
        browser: BrowserKind,
        backend: Backend,
        digests: &Digests,
    ) -> Verified {
        let verdict = self
            .with(entry, |s| match s.verified.get(&(browser, backend)) {
                Some(want) if want == digests => Verified::Same,
                Some(want) => Verified::Differs(want.clone()),
                None => Verified::Unverified,
            })
            .unwrap_or(Verified::Unverified);
        if verdict != Verified::Unverified {
            self.count(entry, browser, backend, |c| c.answers_digest_checked += 1);
        }
        verdict
    }

    /// Whether `digests` equal the verified answer of `entry` on `browser`/`backend`; `None`
    /// when there is none yet.
    pub fn verify_digests(
        &self,
        entry: &ModelEntry,
        browser: BrowserKind,
        backend: Backend,
        digests: &Digests,
    ) -> Option<bool> {
        self.with(entry, |s| {
            s.verified
                .get(&(browser, backend))
                .map(|want| want == digests)
        })
        .flatten()
    }

    /// Counts a placement of `entry` on `browser`/`backend` whose first answer was judged
    /// against native: verified when `passed`, else rejected. A model without an oracle (a
    /// pipeline's shard) is not counted: its answers are judged at the pipeline's end.
    pub fn note_judged(
        &self,
        entry: &ModelEntry,
        browser: BrowserKind,
        backend: Backend,
        passed: bool,
    ) {
        if entry.oracle.is_none() {
            return;
        }
        self.count(entry, browser, backend, |c| {
            if passed {
                c.placements_verified += 1;
            } else {
                c.placements_rejected += 1;
            }
        });
    }

    fn count(
        &self,
        entry: &ModelEntry,
        browser: BrowserKind,
        backend: Backend,
        f: impl FnOnce(&mut CellChecks),
    ) {
        let key = (entry.name().to_string(), browser, backend);
        f(lock(&self.checks).entry(key).or_default());
    }

    /// Counts a warm run of `entry` that succeeded on WebNN, and whether the page saw it
    /// dispatch a WebNN graph (`dispatches` as the page's witness counted them).
    pub fn note_webnn_run(
        &self,
        entry: &ModelEntry,
        browser: BrowserKind,
        dispatches: Option<u64>,
    ) {
        self.count(entry, browser, Backend::Webnn, |c| {
            c.webnn_runs += 1;
            if dispatches.is_some_and(|n| n > 0) {
                c.webnn_runs_dispatched += 1;
            }
        });
    }

    /// Every cell's counts, in model, browser and backend order.
    pub fn checks(&self) -> Vec<CellCheckRecord> {
        lock(&self.checks)
            .iter()
            .map(|((model, browser, backend), checks)| CellCheckRecord {
                model: model.clone(),
                browser: *browser,
                backend: *backend,
                checks: checks.clone(),
            })
            .collect()
    }

    /// Records the verified answer of `entry` on `browser`/`backend` unless it has one.
    pub fn set_verified(
        &self,
        entry: &ModelEntry,
        browser: BrowserKind,
        backend: Backend,
        digests: &Digests,
    ) {
        self.with(entry, |s| {
            s.verified
                .entry((browser, backend))
                .or_insert_with(|| digests.clone());
        });
    }

    /// Without an oracle: the first placement's every output value, if recorded.
    pub fn reference(&self, entry: &ModelEntry) -> Option<Vec<f32>> {
        self.with(entry, |s| s.reference.clone()).flatten()
    }

    /// Without an oracle: records the first placement's every output value unless one is
    /// recorded.
    pub fn set_reference(&self, entry: &ModelEntry, values: &[f32]) {
        self.with(entry, |s| {
            s.reference.get_or_insert_with(|| values.to_vec());
        });
    }
}
