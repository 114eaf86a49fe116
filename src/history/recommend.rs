//! Recommendations: the measured best browser x backend per model and per model type, and the
//! routing profile that carries them to the router.
//!
//! Per model, each browser x backend pair pools the measured samples of its latest runs (at
//! most [`RecommendOptions::window`]). A pair with fewer than
//! [`RecommendOptions::min_samples`] samples is listed but never recommended. The best pair
//! has the lowest median page time; its confidence is the one-sided Mann-Whitney p-value of
//! "the runner-up is slower" (high below 0.001, medium below 0.05, low otherwise). Per model
//! type, the pair measured for every model of that type with the lowest geometric mean of
//! (its median / that model's best median) wins.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::metrics::compare::mann_whitney_greater;

use super::HistoryError;

/// What counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecommendOptions {
    /// Fewest measured samples a pair needs to be recommended.
    pub min_samples: usize,
    /// Latest runs of a pair whose samples are pooled.
    pub window: usize,
}

impl Default for RecommendOptions {
    fn default() -> Self {
        Self {
            min_samples: 10,
            window: 3,
        }
    }
}

/// How sure a recommendation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// The only pair measured: nothing to beat.
    Only,
    /// p >= 0.05 against the runner-up.
    Low,
    /// p < 0.05.
    Medium,
    /// p < 0.001.
    High,
}

impl Confidence {
    fn of(p: f64) -> Self {
        if p < 0.001 {
            Self::High
        } else if p < 0.05 {
            Self::Medium
        } else {
            Self::Low
        }
    }

    /// `high`, `medium`, `low` or `only`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Only => "only",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// One browser x backend pair for one model, as measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    /// Browser kind.
    pub browser: String,
    /// Backend.
    pub backend: String,
    /// Adapter of its latest run.
    pub adapter: String,
    /// Median page time over the pooled samples, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// Mean of the runs' throughput, requests/s.
    pub throughput_per_s: f64,
    /// Pooled samples.
    pub samples: usize,
    /// Runs pooled.
    pub runs: usize,
    /// Latest run pooled.
    pub latest_run: String,
    #[serde(skip)]
    times: Vec<f64>,
}

/// The answer for one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRecommendation {
    /// Model.
    pub model: String,
    /// Model type.
    pub task: String,
    /// The best pair with enough samples (none when no pair has).
    pub best: Option<Choice>,
    /// The second best, what the confidence is against.
    pub runner_up: Option<Choice>,
    /// p-value of "the runner-up is slower than the best" (1 when there is none).
    pub p_value: f64,
    /// How sure.
    pub confidence: Confidence,
    /// Runner-up median over the best's (how much the choice gains).
    pub speedup: Option<f64>,
    /// Every pair with enough samples, fastest first.
    pub candidates: Vec<Choice>,
    /// Pairs with too few samples to count.
    pub too_few: Vec<Choice>,
}

/// The answer for one model type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeRecommendation {
    /// Model type.
    pub task: String,
    /// Browser kind.
    pub browser: String,
    /// Backend.
    pub backend: String,
    /// Geometric mean over the type's models of (this pair's median / the model's best).
    pub relative: f64,
    /// The type's models with this pair's median, ms.
    pub models: Vec<(String, f64)>,
    /// Fewest samples of this pair among those models.
    pub min_samples: usize,
    /// The least confidence among the models' own answers.
    pub confidence: Confidence,
}

/// Everything `recommend` says.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Recommendations {
    /// Per model, by name.
    pub models: Vec<ModelRecommendation>,
    /// Per model type.
    pub model_types: Vec<TypeRecommendation>,
    /// Types with no pair measured (with enough samples) for every model.
    pub types_without_answer: Vec<String>,
}

/// Indices into the cells of each browser x backend's runs, oldest first.
type PairRuns = BTreeMap<(String, String), Vec<usize>>;

/// Recommends from `cells` (each with its samples, oldest first).
pub fn recommend(cells: &[super::Recorded], options: &RecommendOptions) -> Recommendations {
    // model -> (its type, (browser, backend) -> indices of its runs, oldest first).
    let mut by_model: BTreeMap<&str, (String, PairRuns)> = BTreeMap::new();
    for (i, (c, _)) in cells.iter().enumerate() {
        by_model
            .entry(&c.key.model)
            .or_insert_with(|| (c.task.clone(), BTreeMap::new()))
            .1
            .entry((c.key.browser.clone(), c.key.backend.clone()))
            .or_default()
            .push(i);
    }
    let mut out = Recommendations::default();
    for (model, (task, pairs)) in by_model {
        let mut candidates = Vec::new();
        let mut too_few = Vec::new();
        for ((browser, backend), runs) in pairs {
            let latest: Vec<usize> = runs
                .iter()
                .rev()
                .take(options.window.max(1))
                .copied()
                .collect();
            let times: Vec<f64> = latest
                .iter()
                .flat_map(|&i| cells[i].1.iter().map(|s| s.page_ms))
                .collect();
            let (p50_ms, p95_ms) =
                crate::metrics::Percentiles::from_ms(&times).map_or((0.0, 0.0), |p| (p.p50, p.p95));
            let newest = &cells[latest[0]].0;
            let choice = Choice {
                browser,
                backend,
                adapter: newest.key.adapter.clone(),
                p50_ms,
                p95_ms,
                throughput_per_s: latest
                    .iter()
                    .map(|&i| cells[i].0.throughput_per_s)
                    .sum::<f64>()
                    / latest.len() as f64,
                samples: times.len(),
                runs: latest.len(),
                latest_run: newest.run_id.clone(),
                times,
            };
            if choice.samples >= options.min_samples.max(1) {
                candidates.push(choice);
            } else {
                too_few.push(choice);
            }
        }
        candidates.sort_by(|a, b| a.p50_ms.total_cmp(&b.p50_ms));
        let best = candidates.first().cloned();
        let runner_up = candidates.get(1).cloned();
        let (p_value, confidence, speedup) = match (&best, &runner_up) {
            (Some(b), Some(r)) => {
                let p = mann_whitney_greater(&r.times, &b.times);
                (p, Confidence::of(p), Some(r.p50_ms / b.p50_ms))
            }
            _ => (1.0, Confidence::Only, None),
        };
        out.models.push(ModelRecommendation {
            model: model.to_string(),
            task,
            best,
            runner_up,
            p_value,
            confidence,
            speedup,
            candidates,
            too_few,
        });
    }
    by_type(&mut out);
    out
}

/// Fills the per-type answers from the per-model ones.
fn by_type(out: &mut Recommendations) {
    let mut tasks: Vec<String> = out.models.iter().map(|m| m.task.clone()).collect();
    tasks.sort();
    tasks.dedup();
    for task in tasks {
        let models: Vec<&ModelRecommendation> = out
            .models
            .iter()
            .filter(|m| m.task == task && m.best.is_some())
            .collect();
        let Some(first) = models.first() else {
            out.types_without_answer.push(task);
            continue;
        };
        let mut best: Option<TypeRecommendation> = None;
        for c in &first.candidates {
            let mut logs = 0.0;
            let mut per_model = Vec::new();
            let mut min_samples = usize::MAX;
            let covered = models.iter().all(|m| {
                let Some(mine) = m
                    .candidates
                    .iter()
                    .find(|o| o.browser == c.browser && o.backend == c.backend)
                else {
                    return false;
                };
                let top = m.best.as_ref().map_or(mine.p50_ms, |b| b.p50_ms);
                logs += (mine.p50_ms / top).ln();
                per_model.push((m.model.clone(), mine.p50_ms));
                min_samples = min_samples.min(mine.samples);
                true
            });
            if !covered {
                continue;
            }
            let relative = (logs / models.len() as f64).exp();
            if best.as_ref().is_none_or(|b| relative < b.relative) {
                best = Some(TypeRecommendation {
                    task: task.clone(),
                    browser: c.browser.clone(),
                    backend: c.backend.clone(),
                    relative,
                    models: per_model,
                    min_samples,
                    confidence: models
                        .iter()
                        .map(|m| m.confidence)
                        .min()
                        .unwrap_or(Confidence::Low),
                });
            }
        }
        match best {
            Some(b) => out.model_types.push(b),
            None => out.types_without_answer.push(task),
        }
    }
}

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

/// What `recommend --apply` writes and a routed run reads: the measured best pair per model
/// (first) and per model type (for models with none of their own).
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
    /// The profile of `recs`.
    pub fn from_recommendations(recs: &Recommendations, history: &str, created_at: String) -> Self {
        let mut p = Self {
            version: 1,
            created_at,
            history: history.to_string(),
            ..Self::default()
        };
        for m in &recs.models {
            let Some(b) = &m.best else { continue };
            let against = match (&m.runner_up, m.speedup) {
                (Some(r), Some(x)) => format!(
                    "; {x:.2}x faster than {}/{} ({:.1} ms), p={}",
                    r.browser,
                    r.backend,
                    r.p50_ms,
                    crate::metrics::compare::format_p(m.p_value)
                ),
                _ => "; the only pair measured".into(),
            };
            p.models.insert(
                m.model.clone(),
                ProfileChoice {
                    browser: b.browser.clone(),
                    backend: b.backend.clone(),
                    p50_ms: b.p50_ms,
                    samples: b.samples,
                    confidence: m.confidence,
                    reason: format!(
                        "measured best for {}: {}/{} p50 {:.1} ms over {} samples{against}",
                        m.model, b.browser, b.backend, b.p50_ms, b.samples
                    ),
                },
            );
        }
        for t in &recs.model_types {
            p.model_types.insert(
                t.task.clone(),
                ProfileChoice {
                    browser: t.browser.clone(),
                    backend: t.backend.clone(),
                    p50_ms: t.models.iter().map(|(_, ms)| ms).sum::<f64>() / t.models.len().max(1) as f64,
                    samples: t.min_samples,
                    confidence: t.confidence,
                    reason: format!(
                        "measured best for {} models: {}/{} ({:.2}x the best of each of {} model(s))",
                        t.task,
                        t.browser,
                        t.backend,
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
