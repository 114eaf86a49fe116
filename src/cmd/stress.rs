//! `webgpu-pool stress`: models concurrently under load for a while, with real faults injected
//! and recovered. The flags compile into a `Scenario` (`scenario::flags`), the same one engine
//! path as a YAML file.

use anyhow::Result;

use webgpu_pool::app::UsageError;
use webgpu_pool::faults::Kind;
use webgpu_pool::scenario::flags::{FaultFlags, StressFlags};
use webgpu_pool::scenario::FaultChoice;

use super::common::{flags_valid, history_file, print_scenario, run_scenario, AfterRun};
use super::{Context, Outcome};
use crate::cli::StressArgs;

/// Runs the scenario the flags compile into, or prints it (`--print-scenario`).
///
/// # Errors
/// A flag's value is invalid (naming the flag), or the run cannot start.
pub async fn execute(args: StressArgs, ctx: &Context) -> Result<Outcome> {
    let mut scenario = to_flags(&args)?.to_scenario();
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
        not_installed: Vec::new(),
    };
    run_scenario(scenario, args.results_dir, &after, ctx).await
}

/// The values `stress`'s flags carry, for the library to compile.
///
/// # Errors
/// `--fault-kinds` names `random` beside other kinds.
fn to_flags(args: &StressArgs) -> Result<StressFlags, UsageError> {
    let faults = if args.fault_injection {
        Some(FaultFlags {
            every: args.fault_every,
            rate: args.fault_rate,
            kinds: fault_kinds(&args.fault_kinds)?,
            duration: args.fault_duration,
            slow_delay: args.slow_delay,
        })
    } else {
        None
    };
    Ok(StressFlags {
        pool: args
            .pool
            .to_flags(args.models.clone(), args.wasm.wasm_threads, Vec::new()),
        duration: args.duration,
        concurrency: args.concurrency,
        faults,
        recovery: args.recovery.into(),
        recovery_timeout: args.recovery_timeout,
        max_attempts: args.max_attempts,
        request_timeout: args.request_timeout,
        routing_profile: args.routing.profile(),
        adaptive: args.routing.adaptive,
    })
}

/// `--fault-kinds` as the kinds the fault stream draws from (empty: every kind that fits a
/// live worker). `random` is not a kind: alone it means every kind, as without the flag; beside
/// named kinds it is refused, in the words scenario validation used for it.
fn fault_kinds(given: &[FaultChoice]) -> Result<Vec<Kind>, UsageError> {
    if given == [FaultChoice::Random] {
        return Ok(Vec::new());
    }
    given
        .iter()
        .enumerate()
        .map(|(j, choice)| match choice {
            FaultChoice::One(kind) => Ok(*kind),
            FaultChoice::Random => Err(UsageError(format!(
                "--fault-kinds: faults[0].kinds[{j}]: 'random' cannot be one of the kinds \
                 random draws from"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_alone_is_every_kind_and_beside_kinds_is_refused() {
        assert_eq!(fault_kinds(&[]).unwrap(), []);
        assert_eq!(fault_kinds(&[FaultChoice::Random]).unwrap(), []);
        let named = [Kind::Hang, Kind::Slow].map(FaultChoice::One);
        assert_eq!(fault_kinds(&named).unwrap(), [Kind::Hang, Kind::Slow]);
        let e = fault_kinds(&[FaultChoice::One(Kind::Hang), FaultChoice::Random]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--fault-kinds: faults[0].kinds[1]: 'random' cannot be one of the kinds random draws \
             from"
        );
    }
}
