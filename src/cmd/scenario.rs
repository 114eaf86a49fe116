//! `webgpu-pool scenario FILE`: run a scenario file, or a built-in scenario by name.

use anyhow::Result;

use super::common::{load_scenario, print_scenario, run_scenario, AfterRun};
use super::{Context, Outcome};
use crate::cli::ScenarioArgs;

/// Loads and runs the scenario, or prints it (`--print-scenario`).
///
/// # Errors
/// The file is missing or invalid (every error, each naming file:line:col), or the run cannot
/// start.
pub async fn execute(args: ScenarioArgs, ctx: &Context) -> Result<Outcome> {
    let scenario = load_scenario(&args.file)?;
    if args.print_scenario {
        return print_scenario(&scenario);
    }
    let after = AfterRun {
        explain_routing: args.explain_routing,
        save_baseline: None,
        save_outputs: args.save_outputs,
    };
    run_scenario(scenario, args.results_dir, &after, ctx).await
}
