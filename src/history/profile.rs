//! The routing profile: what `recommend --apply` writes and a routed run reads, the measured
//! best browser and backend per model and per model type, taken from the `isolated` answers of
//! [`super::recommend`] (each configuration measured alone, by a matrix run). A routed run
//! measures where the router already put each model, under the others' load, so routing from it
//! would feed routing back into itself; that is why the other load contexts are not used.
//!
//! Inputs: [`Recommendations`]. Output: a [`RoutingProfile`], and its JSON file (read and
//! written atomically). Pure but for the file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::metrics::{LoadContext, LoadKind};

use super::{Confidence, HistoryError, Recommendations};

/// One routing choice in a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileChoice {
    /// Browser kind to route to.
    pub browser: String,
    /// Backend to try first there.
    pub backend: String,
    /// Its measured median, ms.
    pub p50_ms: f64,
    /// Samples behind it.
    pub samples: usize,
    /// How sure.
    pub confidence: Confidence,
    /// One line on why, for `--explain-routing`.
    pub reason: String,
}

/// What `recommend --apply` writes and a routed run reads: the measured best browser and backend
/// per model (first) and per model type (for models with none of their own), from the isolated
/// answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingProfile {
    /// Format version (1).
    pub version: u32,
    /// When it was written (RFC 3339).
    pub created_at: String,
    /// The history it came from.
    pub history: String,
    /// Per model.
    pub models: BTreeMap<String, ProfileChoice>,
    /// Per model type (`text_embedding`, `vision`, `audio`, `text_generation`).
    pub model_types: BTreeMap<String, ProfileChoice>,
}

impl RoutingProfile {
    /// The profile of `recs`: per model and per type, the answer under the isolated load
    /// context (with the fewest clients, when a scenario measured the matrix with more than
    /// one). Answers under other contexts are not used (see the module's documentation).
    pub fn from_recommendations(recs: &Recommendations, history: &str, created_at: String) -> Self {
        let mut p = Self {
            version: 1,
            created_at,
            history: history.to_string(),
            ..Self::default()
        };
        let isolated = |load: &LoadContext| load.context == LoadKind::Isolated;
        // `recs` is sorted by model then load context, and a context sorts by its clients:
        // the first isolated answer of a model is the one with the fewest clients.
        for m in recs.models.iter().filter(|m| isolated(&m.load)) {
            let Some(b) = &m.best else { continue };
            if p.models.contains_key(&m.model) {
                continue;
            }
            let against = match (&m.runner_up, m.speedup) {
                (Some(r), Some(x)) => format!(
                    "; {x:.2}x faster than {} ({:.1} ms), p={}",
                    r.config,
                    r.p50_ms,
                    crate::metrics::compare::format_p(m.p_value)
                ),
                _ => "; the only configuration measured".into(),
            };
            p.models.insert(
                m.model.clone(),
                ProfileChoice {
                    browser: b.config.browser.clone(),
                    backend: b.config.backend.clone(),
                    p50_ms: b.p50_ms,
                    samples: b.samples,
                    confidence: m.confidence,
                    reason: format!(
                        "measured best for {} ({}): {} page run p50 {:.1} ms over {} samples{against}",
                        m.model, m.load, b.config, b.p50_ms, b.samples
                    ),
                },
            );
        }
        for t in recs.model_types.iter().filter(|t| isolated(&t.load)) {
            if p.model_types.contains_key(&t.task) {
                continue;
            }
            p.model_types.insert(
                t.task.clone(),
                ProfileChoice {
                    browser: t.config.browser.clone(),
                    backend: t.config.backend.clone(),
                    p50_ms: t.models.iter().map(|(_, ms)| ms).sum::<f64>() / t.models.len().max(1) as f64,
                    samples: t.min_samples,
                    confidence: t.confidence,
                    reason: format!(
                        "measured best for {} models ({}): {} ({:.2}x the best of each of {} model(s))",
                        t.task,
                        t.load,
                        t.config,
                        t.relative,
                        t.models.len()
                    ),
                },
            );
        }
        p
    }

    /// The choice for `model` of type `task`: its own, else its type's.
    pub fn choice(&self, model: &str, task: &str) -> Option<&ProfileChoice> {
        self.models
            .get(model)
            .or_else(|| self.model_types.get(task))
    }

    /// Reads a profile.
    ///
    /// # Errors
    /// [`HistoryError::Profile`] naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self, HistoryError> {
        let err = |message: String| HistoryError::Profile {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let p: Self = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if p.version != 1 {
            return Err(err(format!("version {} is not 1", p.version)));
        }
        for (name, c) in p.models.iter().chain(&p.model_types) {
            c.browser
                .parse::<crate::browser::BrowserKind>()
                .map_err(|e| err(format!("{name}: browser: {e}")))?;
            c.backend
                .parse::<crate::backend::Backend>()
                .map_err(|e| err(format!("{name}: backend: {e}")))?;
        }
        Ok(p)
    }

    /// Writes the profile (atomically: a temporary file renamed over it).
    ///
    /// # Errors
    /// [`HistoryError::Profile`] naming the file.
    pub fn save(&self, path: &Path) -> Result<(), HistoryError> {
        let err = |e: std::io::Error| HistoryError::Profile {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let text = serde_json::to_string_pretty(self).expect("a profile serializes");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}
