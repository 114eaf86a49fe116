//! `webgpu-pool run`: each model in each browser for a number of warm runs, or every model at
//! once over a routed pool (`--concurrent-models`, `--test-state-management`). The flags compile
//! into a `Scenario` (`scenario::flags`), the same one engine path as a YAML file.

use anyhow::Result;

use webgpu_pool::app;
use webgpu_pool::browser::{self, BrowserKind};
use webgpu_pool::report;
use webgpu_pool::scenario::flags::{RoutedFlags, RunFlags, ShardFlags};
use webgpu_pool::scenario::{ShardRecovery, ShardStrategy, ShardTransfer};

use super::common::{flags_valid, history_file, print_scenario, run_scenario, AfterRun};
use super::{state, Context, Outcome};
use crate::cli::RunArgs;

/// Runs the scenario the flags compile into, or prints it (`--print-scenario`).
///
/// # Errors
/// A flag's value is invalid (naming the flag), the baseline name is unusable, or the run
/// cannot start.
pub async fn execute(args: RunArgs, ctx: &Context) -> Result<Outcome> {
    let (defaults, not_installed) = match args.pool.browsers {
        Some(_) => (Vec::new(), Vec::new()),
        None => default_browsers(!args.grid.grid.is_empty()),
    };
    let mut scenario = to_flags(&args, defaults).to_scenario();
    args.grid.apply(&mut scenario.pool);
    if args.print_scenario {
        return print_scenario(&scenario);
    }
    flags_valid(&scenario)?;
    // Refused before the run, not after it has spent minutes.
    if let Some(name) = &args.save_baseline {
        report::store::baseline_dir(&args.results_dir, name)
            .map_err(|e| app::UsageError(format!("--save-baseline: {e}")))?;
    }
    let after = AfterRun {
        explain_routing: args.concurrency.explain_routing,
        save_baseline: args.save_baseline,
        save_outputs: args.save_outputs,
        history: history_file(&args.history, &args.results_dir),
        default_profile: !args.routing.no_routing_profile,
        not_installed,
    };
    let outcome = run_scenario(scenario, args.results_dir.clone(), &after, ctx).await?;
    if args.test_state_management {
        state::verify_latest(&args.results_dir)?;
    }
    Ok(outcome)
}

/// The browsers of a `run` without `--browsers`, and the kinds not installed (named under the
/// table): every kind installed here, so the first command shows chromium-shell's WebNN beside
/// the wasm rows. With a Grid, Chromium and Firefox, and nothing is named missing (the Grid may
/// have it); with nothing installed, Chromium and Firefox (the run then fails naming the package).
fn default_browsers(grid: bool) -> (Vec<BrowserKind>, Vec<BrowserKind>) {
    let fallback = vec![BrowserKind::Chromium, BrowserKind::Firefox];
    if grid {
        return (fallback, Vec::new());
    }
    let kinds = browser::discover().kinds();
    let missing = BrowserKind::ALL
        .into_iter()
        .filter(|k| !kinds.contains(k))
        .collect();
    (if kinds.is_empty() { fallback } else { kinds }, missing)
}

/// The values `run`'s flags carry, for the library to compile.
fn to_flags(args: &RunArgs, default_browsers: Vec<BrowserKind>) -> RunFlags {
    let c = &args.concurrency;
    RunFlags {
        pool: args.pool.to_flags(
            args.models.clone(),
            args.wasm.wasm_threads,
            default_browsers,
        ),
        iterations: args.iterations,
        warmup: args.warmup,
        load_timeout: args.load_timeout,
        run_timeout: args.run_timeout,
        sync_interval: args.sync_interval,
        test_state_management: args.test_state_management,
        routed: RoutedFlags {
            concurrent_models: c.concurrent_models,
            concurrency: c.concurrency,
            duration: c.duration,
            rate: c.rate,
            min_connections: c.min_connections,
            max_connections: c.max_connections,
            idle_timeout: c.idle_timeout,
            cooldown: c.cooldown,
            routing_profile: args.routing.profile(),
            adaptive: args.routing.adaptive,
        },
        sharding: args.test_sharding.then_some(ShardFlags {
            shards: Some(args.shards),
            strategy: ShardStrategy::LayerBalanced,
            recovery: ShardRecovery::RetryFailedShards,
            memory_budget_mib: None,
            concurrency: c.concurrency,
            kill_shard: None,
            kill_at: std::time::Duration::ZERO,
            workers: Vec::new(),
            transfer: ShardTransfer::Auto,
            max_connections: None,
        }),
    }
}
