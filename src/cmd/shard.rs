//! `webgpu-pool shard`: one model split across browsers, run as a checked pipeline. The flags
//! compile into a `Scenario` with a `sharding:` block, the same engine path as a YAML file.

use anyhow::Result;

use webgpu_pool::scenario::flags::ShardFlags;

use super::common::{flags_valid, history_file, print_scenario, run_scenario, AfterRun};
use super::{Context, Outcome};
use crate::cli::ShardArgs;

/// Runs the scenario the flags compile into, or prints it (`--print-scenario`).
///
/// # Errors
/// A flag's value is invalid (naming the flag), the plan is impossible, or the run cannot start.
pub async fn execute(args: ShardArgs, ctx: &Context) -> Result<Outcome> {
    let pool = args
        .pool
        .to_flags(vec![args.model.clone()], None, Vec::new());
    let mut scenario = pool.to_scenario("shard");
    args.grid.apply(&mut scenario.pool);
    let w = &mut scenario.workload;
    match args.duration {
        Some(d) => {
            w.iterations = None;
            w.duration = Some(d);
        }
        None => {
            w.iterations = Some(u64::from(args.iterations));
            w.duration = None;
        }
    }
    w.warmup = args.warmup;
    w.request_timeout = args.request_timeout;
    ShardFlags {
        shards: args.shards,
        strategy: args.strategy.into(),
        recovery: args.recovery.into(),
        memory_budget_mib: args.memory_budget_mib,
        concurrency: args.concurrency,
        kill_shard: args.kill_shard,
        kill_at: args.kill_at,
        workers: args.placement.clone(),
        transfer: args.transfer.into(),
        max_connections: args.max_connections,
    }
    .apply(&mut scenario);
    if args.print_scenario {
        return print_scenario(&scenario);
    }
    flags_valid(&scenario)?;
    let after = AfterRun {
        history: history_file(&args.history, &args.results_dir),
        ..AfterRun::default()
    };
    run_scenario(scenario, args.results_dir, &after, ctx).await
}
