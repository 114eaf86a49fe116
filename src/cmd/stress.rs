//! `webgpu-pool stress`: models concurrently under load for a while, with real faults injected
//! and recovered. The flags compile into a `Scenario` (`scenario::flags`), the same one engine
//! path as a YAML file.

use anyhow::Result;

use webgpu_pool::scenario::flags::{FaultFlags, PoolFlags, StressFlags};

use super::common::{flags_valid, history_file, print_scenario, run_scenario, AfterRun};
use super::{Context, Outcome};
use crate::cli::StressArgs;

/// Runs the scenario the flags compile into, or prints it (`--print-scenario`).
///
/// # Errors
/// A flag's value is invalid (naming the flag), or the run cannot start.
pub async fn execute(args: StressArgs, ctx: &Context) -> Result<Outcome> {
    let mut scenario = to_flags(&args).to_scenario();
    args.grid.apply(&mut scenario.pool);
    args.standby.apply(&mut scenario.pool);
    if args.print_scenario {
        return print_scenario(&scenario);
    }
    flags_valid(&scenario)?;
    let after = AfterRun {
        explain_routing: args.explain_routing,
        save_baseline: None,
        save_outputs: args.save_outputs,
        history: history_file(&args.history, &args.results_dir),
        default_profile: !args.routing.no_routing_profile,
    };
    run_scenario(scenario, args.results_dir, &after, ctx).await
}

/// The values `stress`'s flags carry, for the library to compile.
fn to_flags(args: &StressArgs) -> StressFlags {
    StressFlags {
        pool: PoolFlags {
            seed: args.seed,
            models: args.models.clone(),
            browsers: args.browsers.clone(),
            driver: args.driver.into(),
            backends: args.backends.clone(),
            wasm_threads: args.wasm_threads,
        },
        duration: args.duration,
        concurrency: args.concurrency,
        faults: args.fault_injection.then(|| FaultFlags {
            every: args.fault_every,
            rate: args.fault_rate,
            kinds: args.fault_kinds.clone(),
            duration: args.fault_duration,
            slow_delay: args.slow_delay,
        }),
        recovery: args.recovery.into(),
        recovery_timeout: args.recovery_timeout,
        max_attempts: args.max_attempts,
        request_timeout: args.request_timeout,
        routing_profile: args.routing.profile(),
        adaptive: args.routing.adaptive,
    }
}
