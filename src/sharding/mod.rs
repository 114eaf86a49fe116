//! What is only about sharding: the shard planner ([`plan`]: which layers go to which worker,
//! by parameters, by measured speed or within a memory budget) and how activations travel
//! between shards ([`transfer`]: raw float32 bytes, in the page-API calls or through the asset
//! server's relay).
//!
//! Running a sharded model is the pool's: a pipeline placement whose workers launch through
//! the pool's membership and whose requests are scheduled, ticketed, verified and recovered by
//! the same code as any other (`pool::pipeline`, `pool::engine::pipeline`). Rust API:
//! `models::prepare_shards(spec, &cache, seed, &plan(&request)?.ranges)` writes the shard
//! graphs; `pool::execute` runs a `RunPlan` with `Placement::Pipeline`. Must not import `cli`
//! or `report`.

pub mod plan;
pub mod transfer;

pub use crate::scenario::ShardStrategy;
pub use plan::{plan, Plan, PlanError, PlanRequest};
