//! Recommendations: per model and load context, the measured best configuration (browser,
//! backend, adapter, wasm threads, browser build), and per model type the same.
//!
//! What is pooled and what is compared: a candidate is one whole [`CellKey`] but the model (its
//! configuration and its load context); the samples of its latest runs (at most
//! [`RecommendOptions::window`]) are pooled, and only candidates of the same model measured
//! under the same load context are compared. Earlier this pooled every run of a browser x
//! backend, so an adapter, a thread count and a run alone or beside three other models were one
//! candidate. Cells of an unknown load context (recorded before it was) are left out and
//! counted. A candidate with fewer than [`RecommendOptions::min_samples`] samples is listed but
//! never recommended. The best has the lowest median page run time (the page's `session.run`:
//! what the browser and backend do, which is what routing chooses between); its confidence is
//! the one-sided Mann-Whitney p-value of "the runner-up is slower" (high below 0.001, medium
//! below 0.05, low otherwise). Per model type and load context, the configuration measured for
//! every model of that type with the lowest geometric mean of (its median / that model's best)
//! wins.
//!
//! The routing profile (`profile.rs`) is made from the `isolated` answers only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics::compare::mann_whitney_greater;
use crate::metrics::LoadContext;

use super::CellKey;

/// What counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecommendOptions {
    /// Fewest measured samples a configuration needs to be recommended.
    pub min_samples: usize,
    /// Latest runs of a configuration whose samples are pooled.
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
    /// The only configuration measured: nothing to beat.
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

/// A configuration: what a candidate is, beside its model and load context.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Config {
    /// Browser kind.
    pub browser: String,
    /// Backend.
    pub backend: String,
    /// Adapter (`cpu` for wasm).
    pub adapter: String,
    /// wasm threads.
    pub threads: u32,
    /// Browser build.
    pub build: String,
}

impl Config {
    fn of(key: &CellKey) -> Self {
        Self {
            browser: key.browser.clone(),
            backend: key.backend.clone(),
            adapter: key.adapter.clone(),
            threads: key.threads,
            build: key.build.clone(),
        }
    }
}

/// `firefox/wasm (cpu x1, 153.8.0)`.
impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} ({} x{}, {})",
            self.browser, self.backend, self.adapter, self.threads, self.build
        )
    }
}

/// One configuration of one model under one load context, as measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    /// The configuration.
    #[serde(flatten)]
    pub config: Config,
    /// Median page run time over the pooled samples, ms.
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

/// The answer for one model under one load context.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRecommendation {
    /// Model.
    pub model: String,
    /// Model type.
    pub task: String,
    /// The load context every candidate was measured under.
    pub load: LoadContext,
    /// The best configuration with enough samples (none when no configuration has).
    pub best: Option<Choice>,
    /// The second best, what the confidence is against.
    pub runner_up: Option<Choice>,
    /// p-value of "the runner-up is slower than the best" (1 when there is none).
    pub p_value: f64,
    /// How sure.
    pub confidence: Confidence,
    /// Runner-up median over the best's (how much the choice gains).
    pub speedup: Option<f64>,
    /// Every configuration with enough samples, fastest first.
    pub candidates: Vec<Choice>,
    /// Configurations with too few samples to count.
    pub too_few: Vec<Choice>,
}

/// The answer for one model type under one load context.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeRecommendation {
    /// Model type.
    pub task: String,
    /// The load context.
    pub load: LoadContext,
    /// The configuration.
    #[serde(flatten)]
    pub config: Config,
    /// Geometric mean over the type's models of (this configuration's median / the model's
    /// best).
    pub relative: f64,
    /// The type's models with this configuration's median, ms.
    pub models: Vec<(String, f64)>,
    /// Fewest samples of this configuration among those models.
    pub min_samples: usize,
    /// The least confidence among the models' own answers.
    pub confidence: Confidence,
}

/// A model type with no configuration measured (with enough samples) for all its models under
/// one load context.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unanswered {
    /// Model type.
    pub task: String,
    /// The load context.
    pub load: LoadContext,
}

/// Everything `recommend` says.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Recommendations {
    /// Per model and load context, by name then context.
    pub models: Vec<ModelRecommendation>,
    /// Per model type and load context.
    pub model_types: Vec<TypeRecommendation>,
    /// Types with no configuration measured (with enough samples) for every model.
    pub types_without_answer: Vec<Unanswered>,
    /// Recorded cell runs left out: their load context is unknown (recorded before it was).
    pub unknown_load: usize,
}

/// Indices into the cells of each configuration's runs, oldest first.
type ConfigRuns = BTreeMap<Config, Vec<usize>>;

/// Recommends from `cells` (each with its samples, oldest first).
pub fn recommend(cells: &[super::Recorded], options: &RecommendOptions) -> Recommendations {
    let mut out = Recommendations::default();
    // (model, load) -> (its type, configuration -> indices of its runs, oldest first).
    let mut groups: BTreeMap<(&str, LoadContext), (String, ConfigRuns)> = BTreeMap::new();
    for (i, (c, _)) in cells.iter().enumerate() {
        if !c.key.load.is_known() {
            out.unknown_load += 1;
            continue;
        }
        groups
            .entry((&c.key.model, c.key.load))
            .or_insert_with(|| (c.task.clone(), BTreeMap::new()))
            .1
            .entry(Config::of(&c.key))
            .or_default()
            .push(i);
    }
    for ((model, load), (task, configs)) in groups {
        let mut candidates = Vec::new();
        let mut too_few = Vec::new();
        for (config, runs) in configs {
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
            let choice = Choice {
                config,
                p50_ms,
                p95_ms,
                throughput_per_s: latest
                    .iter()
                    .map(|&i| cells[i].0.throughput_per_s)
                    .sum::<f64>()
                    / latest.len() as f64,
                samples: times.len(),
                runs: latest.len(),
                latest_run: cells[latest[0]].0.run_id.clone(),
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
            load,
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

/// Fills the per-type answers from the per-model ones, per load context.
fn by_type(out: &mut Recommendations) {
    let mut groups: Vec<(String, LoadContext)> = out
        .models
        .iter()
        .map(|m| (m.task.clone(), m.load))
        .collect();
    groups.sort();
    groups.dedup();
    for (task, load) in groups {
        let models: Vec<&ModelRecommendation> = out
            .models
            .iter()
            .filter(|m| m.task == task && m.load == load && m.best.is_some())
            .collect();
        let Some(first) = models.first() else {
            out.types_without_answer.push(Unanswered { task, load });
            continue;
        };
        let mut best: Option<TypeRecommendation> = None;
        for c in &first.candidates {
            let mut logs = 0.0;
            let mut per_model = Vec::new();
            let mut min_samples = usize::MAX;
            let covered = models.iter().all(|m| {
                let Some(mine) = m.candidates.iter().find(|o| o.config == c.config) else {
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
                    load,
                    config: c.config.clone(),
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
            None => out.types_without_answer.push(Unanswered { task, load }),
        }
    }
}
