//! `webgpu-pool scenario FILE`: run a scenario file, or a built-in scenario by name.

use anyhow::Result;

use super::common::{history_file, load_scenario, print_scenario, run_scenario, AfterRun};
use super::{Context, Outcome};
use crate::cli::ScenarioArgs;

/// Loads and runs the scenario, or prints it (`--print-scenario`).
///
/// # Errors
/// The file is missing or invalid (every error, each naming file:line:col), or the run cannot
/// start.
pub async fn execute(args: ScenarioArgs, ctx: &Context) -> Result<Outcome> {
    let mut scenario = load_scenario(&args.file)?;
    // The flags override the file's keys; RunConfig::resolve validates the result.
    if let Some(p) = args.routing.profile() {
        scenario.pool.routing_profile = Some(p);
    }
    scenario.pool.adaptive |= args.routing.adaptive;
    args.grid.apply(&mut scenario.pool);
    args.standby.apply(&mut scenario.pool);
    if args.print_scenario {
        return print_scenario(&scenario);
    }
    let after = AfterRun {
        explain_routing: args.explain_routing,
        save_baseline: None,
        save_outputs: args.save_outputs,
        history: history_file(&args.history, &args.results_dir),
        default_profile: !args.routing.no_routing_profile,
        not_installed: Vec::new(),
    };
    run_scenario(scenario, args.results_dir, &after, ctx).await
}
