//! YAML scenarios: a pool, the models to run in it, the load, the faults to inject, recovery,
//! sharding, state sync and pass/fail thresholds. The format is documented in `docs/scenario.md`
//! and described for editors by `schemas/scenario.schema.json` ([`json_schema`]).
//!
//! Inputs: a scenario file or text ([`load_file`], [`load_str`]), a built-in name ([`builtin`]),
//! or a [`Scenario`] built in code from CLI flags ([`Scenario::validate`]). Output: a validated
//! [`Scenario`], or every [`ScenarioError`] found, each naming `file:line:col`, the key path and
//! the bad value. Syntax and schema errors stop at the first one; semantic checks report all.
//!
//! Must not import the CLI, the reports, the argument parser or terminal crates: the CLI compiles its flags into a
//! [`Scenario`] and prints the errors.

use std::path::Path;

mod de;
mod de_error;
mod defaults;
pub mod duration;
mod emit;
mod error;
mod fault_types;
pub mod flags;
mod types;
mod validate;
mod validate_faults;
mod validate_generation;
mod validate_remote;
mod validate_standby;
mod yaml;

pub use error::{ScenarioError, TOP_LEVEL};
pub use types::{
    Fault, FaultChoice, FaultTarget, Generation, Migration, ModelEntry, PlacementMode, PoolConfig,
    Preferences, Recovery, RecoveryStrategy, Scenario, ShardRecovery, ShardStrategy, ShardTransfer,
    ShardWorker, Sharding, StateSync, Thresholds, Workload, WorkloadMode,
};
pub use validate::MAX_CONNECTIONS;

/// Names of the built-in scenarios, one per test mode (`scenarios/<name>.yaml`).
pub const BUILTINS: &[&str] = &[
    "basic",
    "concurrent-models",
    "fault-tolerance",
    "recovery",
    "sharding",
    "stress",
    "state-management",
];

/// The text of `scenarios/<name>.yaml`, compiled in; `None` for an unknown name.
pub fn builtin(name: &str) -> Option<&'static str> {
    Some(match name {
        "basic" => include_str!("../../scenarios/basic.yaml"),
        "concurrent-models" => include_str!("../../scenarios/concurrent-models.yaml"),
        "fault-tolerance" => include_str!("../../scenarios/fault-tolerance.yaml"),
        "recovery" => include_str!("../../scenarios/recovery.yaml"),
        "sharding" => include_str!("../../scenarios/sharding.yaml"),
        "stress" => include_str!("../../scenarios/stress.yaml"),
        "state-management" => include_str!("../../scenarios/state-management.yaml"),
        _ => return None,
    })
}

impl Scenario {
    /// Checks a scenario built in code (e.g. from CLI flags). Errors carry the key path
    /// (`workload.concurrency`) and no file location.
    ///
    /// # Errors
    /// Every problem found, as [`ScenarioError::Invalid`].
    pub fn validate(&self) -> Result<(), Vec<ScenarioError>> {
        let issues = validate::check(self);
        if issues.is_empty() {
            Ok(())
        } else {
            Err(issues
                .into_iter()
                .map(|(path, message)| ScenarioError::invalid(path, message))
                .collect())
        }
    }
}

/// Reads, parses and validates a scenario file. Errors name the file as given.
///
/// # Errors
/// [`ScenarioError::Io`] when the file cannot be read; otherwise as [`load_str`].
pub fn load_file(path: &Path) -> Result<Scenario, Vec<ScenarioError>> {
    let name = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| {
        vec![ScenarioError::Io {
            file: Some(name.clone()),
            line: 0,
            col: 0,
            path: String::new(),
            message: format!("cannot read the scenario file: {e}"),
        }]
    })?;
    match String::from_utf8(text) {
        Ok(text) => load_str(&name, &text),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let text = String::from_utf8_lossy(valid);
            let line = text.matches('\n').count() + 1;
            let col = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Err(vec![syntax(
                &name,
                line,
                col,
                TOP_LEVEL,
                "the file is not UTF-8 text".into(),
            )])
        }
    }
}

fn syntax(file: &str, line: usize, col: usize, path: &str, message: String) -> ScenarioError {
    ScenarioError::Syntax {
        file: Some(file.to_owned()),
        line,
        col,
        path: if path.is_empty() { TOP_LEVEL } else { path }.to_owned(),
        message,
    }
}

/// Line `line` (1-based) of `text`, quoted and shortened, for syntax errors.
fn source_line(text: &str, line: usize) -> Option<String> {
    let src = text.lines().nth(line.checked_sub(1)?)?.trim_end();
    if src.trim().is_empty() {
        return None;
    }
    let short: String = src.chars().take(60).collect();
    let more = if short.len() < src.len() { "..." } else { "" };
    Some(format!("{:?}", format!("{short}{more}")))
}

/// Parses and validates scenario text; `name_for_errors` is printed as the file name.
///
/// # Errors
/// The first syntax or schema error, or every semantic error, each with `file:line:col`.
pub fn load_str(name_for_errors: &str, text: &str) -> Result<Scenario, Vec<ScenarioError>> {
    let file = name_for_errors;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = yaml::parse(text).map_err(|f| {
        let message = match source_line(text, f.mark.line) {
            Some(src) => format!("{}; the line reads: {src}", f.message),
            None => f.message,
        };
        vec![syntax(file, f.mark.line, f.mark.col, &f.path, message)]
    })?;
    let Some(root) = root else {
        return Err(vec![syntax(
            file,
            1,
            1,
            TOP_LEVEL,
            "the file holds no scenario; it needs at least `models:` (see docs/scenario.md)".into(),
        )]);
    };
    if !matches!(root, yaml::Node::Map { .. }) {
        let m = root.mark();
        return Err(vec![ScenarioError::Type {
            file: Some(file.to_owned()),
            line: m.line,
            col: m.col,
            path: TOP_LEVEL.into(),
            message: format!(
                "a scenario is a mapping of keys (name:, pool:, models:, ...), found {}",
                root.describe()
            ),
        }]);
    }
    let scenario: Scenario = de::from_root(&root).map_err(|e| {
        let (path, mark) = e.at.unwrap_or_else(|| (String::new(), root.mark()));
        vec![ScenarioError::Type {
            file: Some(file.to_owned()),
            line: mark.line,
            col: mark.col,
            path: if path.is_empty() {
                TOP_LEVEL.into()
            } else {
                path
            },
            message: e.message,
        }]
    })?;
    let issues = validate::check(&scenario);
    if issues.is_empty() {
        return Ok(scenario);
    }
    Err(issues
        .into_iter()
        .map(|(path, message)| {
            let m = yaml::locate(&root, &path);
            ScenarioError::invalid(path, message).located(file, m.line, m.col)
        })
        .collect())
}

/// Renders a scenario as YAML that [`load_str`] reads back to an equal value.
pub fn to_yaml(scenario: &Scenario) -> String {
    emit::to_yaml(scenario)
}

/// A JSON Schema (draft 2020-12) of the scenario format, for editors and YAML language servers.
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Scenario);
    schema.insert("title".into(), "webgpu-pool scenario".into());
    schema.to_value()
}

#[cfg(test)]
mod tests;
