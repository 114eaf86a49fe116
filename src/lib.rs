//! `webgpu-pool`: runs real AI models inside a pool of real headless browsers over WebGPU, WebNN
//! and WASM, and measures them.
//!
//! # Layout
//! - [`models`]: the model catalog, the ONNX writer and graph builders, weights and inputs.
//! - [`server`]: the token-protected asset server that hands the page its files.
//! - [`browser`]: the [`browser::Browser`] trait and its CDP and WebDriver drivers.
//! - [`pool`]: workers (one task owns each browser session) and the run engine.
//! - [`recovery`]: the recovery ladder and circuit breakers (pure decisions).
//! - [`faults`]: fault schedules and target choice (pure); `pool::injector` carries them out.
//! - [`metrics`]: samples and latency statistics.
//! - [`history`]: the SQLite performance history, trends and routing recommendations.
//! - [`sharding`]: one model's layers split across browsers, run as a checked pipeline.
//! - [`state`]: the crash-safe transaction log of pool state, snapshots, replay and verify.
//! - [`report`]: the terminal table and `run.json`; consumes [`metrics`] types only.
//! - `breaks`: a debug build's switch that breaks a guarantee once, for the test that checks it.
//! - [`app`]: wires a resolved [`app::RunConfig`] to the engine and the reports.
//!
//! The engine modules never import `report` or the CLI: reports consume the engine's output.
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod app;
pub mod backend;
pub mod bench;
pub(crate) mod breaks;
pub mod browser;
pub mod faults;
pub mod generate;
pub mod history;
pub mod metrics;
pub mod models;
pub mod oracle;
pub mod pool;
pub mod recovery;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod server;
pub mod sharding;
pub mod state;
pub mod sync;
