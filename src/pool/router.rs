//! Routing: which worker a model goes to, and why.
//!
//! Pure logic over a snapshot of the pool ([`Candidate`]s), so it is unit-tested without
//! browsers. Order of concerns: what each browser really offers (a requested backend must be
//! available there), then the model type's browser preference (audio -> firefox, vision ->
//! chromium, text_embedding -> chromium-shell, falling back within the Chromium family), then load, then a
//! measured score. Measurements steer it twice: a routing profile (`recommend --apply`, from the
//! history) names the measured best browser and backend per model, which outranks the type's
//! preference; and live samples of this run give each candidate a score (requests per second of
//! the model there), which breaks ties of load. Every step leaves a human-readable reason, which
//! `--explain-routing` prints and `run.json` keeps.

use serde::Serialize;

use crate::browser::preferences::{fit, Fit};
use crate::browser::BrowserKind;
use crate::models::Task;

use crate::backend::Backend;

pub use crate::browser::Preferences;

/// Nothing can run the model: no worker offers its backends and none can be launched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no worker can run {model} (backends [{}]) and none can be launched", join(.backends))]
pub struct NoRoute {
    /// The model routed.
    pub model: String,
    /// The backends it may run on.
    pub backends: Vec<Backend>,
}

/// What the caller asks for a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardwarePreferences {
    /// Run in exactly this browser kind.
    pub browser: Option<BrowserKind>,
    /// Backend priority for this model (the pool's when `None`).
    pub backends: Option<Vec<Backend>>,
    /// The measured best placement (from the history's routing profile): preferred over the
    /// model type's browser, never over `browser`.
    pub measured: Option<Measured>,
}

impl HardwarePreferences {
    /// Preferences for a model pinned to `pin` (if any), steered by `measured` (if any): its
    /// backend goes first in the pool's priority `backends` when the pool has it.
    pub fn steered(
        pin: Option<BrowserKind>,
        measured: Option<Measured>,
        backends: &[Backend],
    ) -> Self {
        let order = measured
            .as_ref()
            .filter(|m| backends.contains(&m.backend) && backends.first() != Some(&m.backend))
            .map(|m| {
                std::iter::once(m.backend)
                    .chain(backends.iter().copied().filter(|b| *b != m.backend))
                    .collect()
            });
        Self {
            browser: pin,
            backends: order,
            measured,
        }
    }
}

/// A placement measured best for a model, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    /// Browser kind.
    pub browser: BrowserKind,
    /// Backend.
    pub backend: Backend,
    /// Where the measurement comes from, for the routing reasons.
    pub reason: String,
}

/// One worker as the router sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Worker id.
    pub id: String,
    /// Browser kind.
    pub kind: BrowserKind,
    /// Backends it can run.
    pub backends: Vec<Backend>,
    /// Jobs queued or running.
    pub queued: usize,
    /// Whether the model is already loaded there.
    pub has_model: bool,
    /// A measured score (higher is better): requests per second this run measured for the
    /// model there, when it has.
    pub score: Option<f64>,
}

/// A routing question.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Model name, for the reasons.
    pub model: &'a str,
    /// Model type.
    pub task: Task,
    /// The caller's wishes.
    pub hardware: &'a HardwarePreferences,
    /// The pool's backend priority.
    pub backends: &'a [Backend],
    /// Per-type browser preferences.
    pub preferences: &'a Preferences,
    /// Browser kinds the pool may launch, in configuration order.
    pub launchable: &'a [BrowserKind],
    /// Whether the pool has room for another worker.
    pub can_launch: bool,
}

/// Where to go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Target {
    /// An existing worker, by id.
    Worker(String),
    /// Launch a new worker of this kind.
    Launch(BrowserKind),
}

/// The answer, with the reasons that led to it.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The model routed.
    pub model: String,
    /// Where it goes.
    pub target: Target,
    /// Why, step by step.
    pub reasons: Vec<String>,
}

/// Picks a worker (or a kind to launch) for `req`.
///
/// # Errors
/// [`NoRoute`] when no worker offers the backends and none can be launched.
pub fn route(req: &Request<'_>, candidates: &[Candidate]) -> Result<Decision, NoRoute> {
    let mut reasons = Vec::new();
    let backends = req.hardware.backends.as_deref().unwrap_or(req.backends);
    let wanted = wanted_kind(req, &mut reasons);

    // 1. Capabilities: only workers offering one of the requested backends.
    let able: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.backends.iter().any(|b| backends.contains(b)))
        .collect();
    if able.len() < candidates.len() {
        reasons.push(format!(
            "{} worker(s) offer none of [{}]",
            candidates.len() - able.len(),
            backends
                .iter()
                .map(|b| b.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    // 2. Preference: workers of the wanted kind.
    let preferred: Vec<&Candidate> = able
        .iter()
        .copied()
        .filter(|c| Some(c.kind) == wanted)
        .collect();
    let pool: Vec<&Candidate> = if !preferred.is_empty() {
        preferred
    } else if let Some(kind) = wanted.filter(|_| req.can_launch) {
        reasons.push(format!("no {kind} worker yet; launching one"));
        return Ok(Decision {
            model: req.model.into(),
            target: Target::Launch(kind),
            reasons,
        });
    } else {
        if let Some(kind) = wanted {
            reasons.push(format!(
                "no {kind} worker and the pool is at its maximum; using any worker"
            ));
        }
        able
    };
    if pool.is_empty() {
        return match req.launchable.first() {
            Some(&kind) if req.can_launch => {
                reasons.push(format!("no worker yet; launching {kind}"));
                Ok(Decision {
                    model: req.model.into(),
                    target: Target::Launch(kind),
                    reasons,
                })
            }
            _ => Err(NoRoute {
                model: req.model.into(),
                backends: backends.to_vec(),
            }),
        };
    }

    // 3. Reuse a loaded session, then least load, then the measured score.
    let best = pool
        .iter()
        .copied()
        .min_by(|a, b| {
            (!a.has_model, a.queued)
                .cmp(&(!b.has_model, b.queued))
                .then_with(|| b.score.unwrap_or(0.0).total_cmp(&a.score.unwrap_or(0.0)))
                .then_with(|| a.id.cmp(&b.id))
        })
        .cloned();
    let Some(best) = best else {
        return Err(NoRoute {
            model: req.model.into(),
            backends: backends.to_vec(),
        });
    };
    if best.has_model {
        reasons.push(format!("{} already has {} loaded", best.id, req.model));
    }
    reasons.push(format!(
        "{} has the least load ({} queued) among {} candidate(s)",
        best.id,
        best.queued,
        pool.len()
    ));
    if let Some(s) = best.score {
        reasons.push(format!("measured score {s:.2}"));
    }
    Ok(Decision {
        model: req.model.into(),
        target: Target::Worker(best.id),
        reasons,
    })
}

/// The browser kind this model should run in, resolving absent kinds within the Chromium family.
fn wanted_kind(req: &Request<'_>, reasons: &mut Vec<String>) -> Option<BrowserKind> {
    if let (None, Some(m)) = (req.hardware.browser, &req.hardware.measured) {
        if req.launchable.contains(&m.browser) {
            reasons.push(format!(
                "{}/{}: {}",
                m.browser,
                m.backend.as_str(),
                m.reason
            ));
            return Some(m.browser);
        }
        reasons.push(format!(
            "the measured best, {}/{}, is not in the pool ({})",
            m.browser,
            m.backend.as_str(),
            m.reason
        ));
    }
    let (kind, source) = match (req.hardware.browser, req.preferences.0.get(&req.task)) {
        (Some(k), _) => (k, "asked for".to_string()),
        (None, Some(&k)) => (k, format!("{} models prefer it", req.task.as_str())),
        (None, None) => {
            reasons.push(format!(
                "no browser preference for {} models",
                req.task.as_str()
            ));
            return None;
        }
    };
    match fit(kind, req.launchable) {
        Fit::Exact(k) => {
            reasons.push(format!("{k}: {source}"));
            Some(k)
        }
        Fit::Sibling(s) => {
            reasons.push(format!(
                "{kind} ({source}) is not in the pool; using {s}, also Chromium family"
            ));
            Some(s)
        }
        Fit::Absent => {
            reasons.push(format!(
                "{kind} ({source}) is not in the pool; no browser preference applies"
            ));
            None
        }
    }
}

fn join(b: &[Backend]) -> String {
    b.iter().map(|b| b.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use BrowserKind::{Chromium, Edge, Firefox};

    fn cand(id: &str, kind: BrowserKind, queued: usize, has_model: bool) -> Candidate {
        Candidate {
            id: id.into(),
            kind,
            backends: vec![Backend::Wasm],
            queued,
            has_model,
            score: None,
        }
    }

    fn ask(
        task: Task,
        hw: &HardwarePreferences,
        launchable: &[BrowserKind],
        can_launch: bool,
        c: &[Candidate],
    ) -> Decision {
        let prefs = Preferences::default();
        let req = Request {
            model: "m",
            task,
            hardware: hw,
            backends: &[Backend::Wasm],
            preferences: &prefs,
            launchable,
            can_launch,
        };
        route(&req, c).unwrap()
    }

    #[test]
    fn audio_goes_to_firefox_and_vision_to_chromium() {
        let c = [
            cand("chromium#1", Chromium, 0, false),
            cand("firefox#1", Firefox, 0, false),
        ];
        let hw = HardwarePreferences::default();
        assert_eq!(
            ask(Task::Audio, &hw, &[Chromium, Firefox], false, &c).target,
            Target::Worker("firefox#1".into())
        );
        assert_eq!(
            ask(Task::Vision, &hw, &[Chromium, Firefox], false, &c).target,
            Target::Worker("chromium#1".into())
        );
    }

    #[test]
    fn text_embedding_falls_back_from_chromium_shell_to_chromium_and_says_so() {
        let c = [
            cand("firefox#1", Firefox, 0, false),
            cand("chromium#1", Chromium, 3, false),
        ];
        let d = ask(
            Task::TextEmbedding,
            &HardwarePreferences::default(),
            &[Chromium, Firefox],
            false,
            &c,
        );
        assert_eq!(d.target, Target::Worker("chromium#1".into()));
        assert!(
            d.reasons[0].contains("chromium-shell") && d.reasons[0].contains("using chromium,"),
            "{:?}",
            d.reasons
        );
    }

    #[test]
    fn missing_preferred_kind_launches_when_there_is_room() {
        let c = [cand("chromium#1", Chromium, 0, false)];
        let d = ask(
            Task::Audio,
            &HardwarePreferences::default(),
            &[Chromium, Firefox],
            true,
            &c,
        );
        assert_eq!(d.target, Target::Launch(Firefox));
        let d = ask(
            Task::Audio,
            &HardwarePreferences::default(),
            &[Chromium, Firefox],
            false,
            &c,
        );
        assert_eq!(d.target, Target::Worker("chromium#1".into()));
    }

    #[test]
    fn preferred_browser_missing_from_pool_falls_back_to_any() {
        // Firefox not installed/configured: audio runs on chromium.
        let c = [cand("chromium#1", Chromium, 0, false)];
        let d = ask(
            Task::Audio,
            &HardwarePreferences::default(),
            &[Chromium],
            true,
            &c,
        );
        assert_eq!(d.target, Target::Worker("chromium#1".into()));
        assert!(
            d.reasons.iter().any(|r| r.contains("not in the pool")),
            "{:?}",
            d.reasons
        );
    }

    #[test]
    fn loaded_session_then_least_load_wins() {
        let c = [
            cand("chromium#1", Chromium, 0, false),
            cand("chromium#2", Chromium, 2, true),
            cand("chromium#3", Chromium, 1, false),
        ];
        let hw = HardwarePreferences::default();
        assert_eq!(
            ask(Task::Vision, &hw, &[Chromium], false, &c).target,
            Target::Worker("chromium#2".into())
        );
        let c = [
            cand("chromium#1", Chromium, 2, false),
            cand("chromium#3", Chromium, 1, false),
        ];
        assert_eq!(
            ask(Task::Vision, &hw, &[Chromium], false, &c).target,
            Target::Worker("chromium#3".into())
        );
    }

    #[test]
    fn explicit_browser_beats_type_preference_and_backends_filter() {
        let mut gpu = cand("chromium#1", Chromium, 0, false);
        gpu.backends = vec![Backend::Webgpu, Backend::Wasm];
        let c = [gpu, cand("firefox#1", Firefox, 0, false)];
        let hw = HardwarePreferences {
            browser: Some(Firefox),
            ..HardwarePreferences::default()
        };
        assert_eq!(
            ask(Task::Vision, &hw, &[Chromium, Firefox], false, &c).target,
            Target::Worker("firefox#1".into())
        );
        let hw = HardwarePreferences {
            backends: Some(vec![Backend::Webgpu]),
            ..HardwarePreferences::default()
        };
        let prefs = Preferences::default();
        let req = Request {
            model: "m",
            task: Task::Audio,
            hardware: &hw,
            backends: &[Backend::Wasm],
            preferences: &prefs,
            launchable: &[Chromium, Firefox],
            can_launch: false,
        };
        assert_eq!(
            route(&req, &c).unwrap().target,
            Target::Worker("chromium#1".into())
        );
        let _ = Edge;
    }
    fn measured(browser: BrowserKind, backend: Backend) -> Option<Measured> {
        Some(Measured {
            browser,
            backend,
            reason: "measured best".into(),
        })
    }

    #[test]
    fn the_measured_best_outranks_the_type_preference_but_not_a_pin() {
        let c = [
            cand("chromium#1", Chromium, 0, false),
            cand("firefox#1", Firefox, 0, false),
        ];
        // Vision prefers chromium; the measured best says firefox.
        let hw =
            HardwarePreferences::steered(None, measured(Firefox, Backend::Wasm), &[Backend::Wasm]);
        let d = ask(Task::Vision, &hw, &[Chromium, Firefox], false, &c);
        assert_eq!(d.target, Target::Worker("firefox#1".into()));
        assert!(d.reasons[0].contains("measured best"), "{:?}", d.reasons);
        let pinned = HardwarePreferences::steered(
            Some(Chromium),
            measured(Firefox, Backend::Wasm),
            &[Backend::Wasm],
        );
        let d = ask(Task::Vision, &pinned, &[Chromium, Firefox], false, &c);
        assert_eq!(d.target, Target::Worker("chromium#1".into()));
    }

    #[test]
    fn a_measured_best_outside_the_pool_falls_back_to_the_preference() {
        let c = [cand("chromium#1", Chromium, 0, false)];
        let hw =
            HardwarePreferences::steered(None, measured(Firefox, Backend::Wasm), &[Backend::Wasm]);
        let d = ask(Task::Vision, &hw, &[Chromium], false, &c);
        assert_eq!(d.target, Target::Worker("chromium#1".into()));
        assert!(
            d.reasons[0].contains("is not in the pool"),
            "{:?}",
            d.reasons
        );
    }

    #[test]
    fn the_measured_backend_goes_first_when_the_pool_has_it() {
        let pool = [Backend::Webgpu, Backend::Webnn, Backend::Wasm];
        let hw = HardwarePreferences::steered(None, measured(Firefox, Backend::Wasm), &pool);
        assert_eq!(
            hw.backends,
            Some(vec![Backend::Wasm, Backend::Webgpu, Backend::Webnn])
        );
        // Not in the pool's list: the pool's order stands.
        let hw =
            HardwarePreferences::steered(None, measured(Firefox, Backend::Webnn), &[Backend::Wasm]);
        assert_eq!(hw.backends, None);
    }
}
