//! The built-in defaults of the scenario format, and JSON Schemas for the engine's enums.
//!
//! Input: nothing. Output: the default value of every optional key (shared by serde's
//! `default = ...` attributes and the `Default` impls, so the two cannot drift) and
//! `JsonSchema` impls for [`BrowserKind`], [`Backend`] and [`DriverKind`].

use std::borrow::Cow;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use super::types::{
    PlacementMode, PoolConfig, Preferences, Recovery, RecoveryStrategy, Scenario, ShardRecovery,
    ShardStrategy, StateSync, Thresholds, Workload, WorkloadMode,
};
use crate::backend::Backend;
use crate::browser::{BrowserKind, DriverKind};

pub(super) fn name() -> String {
    "custom".into()
}

pub(super) fn seed() -> u64 {
    42
}

pub(super) fn backends() -> Vec<Backend> {
    Backend::DEFAULT_PRIORITY.to_vec()
}

pub(super) fn min_connections() -> u32 {
    1
}

pub(super) fn max_connections() -> u32 {
    4
}

pub(super) fn browsers() -> Vec<BrowserKind> {
    vec![BrowserKind::Chromium, BrowserKind::Firefox]
}

pub(super) fn driver() -> DriverKind {
    DriverKind::Cdp
}

pub(super) fn idle_timeout() -> Duration {
    Duration::from_secs(30)
}

pub(super) fn heartbeat_interval() -> Duration {
    Duration::from_secs(5)
}

pub(super) fn heartbeat_timeout() -> Duration {
    Duration::from_secs(10)
}

pub(super) fn hang_after() -> Duration {
    crate::pool::HANG_AFTER
}

pub(super) fn launch_timeout() -> Duration {
    Duration::from_secs(60)
}

pub(super) fn pref_audio() -> Option<BrowserKind> {
    Some(BrowserKind::Firefox)
}

pub(super) fn pref_vision() -> Option<BrowserKind> {
    Some(BrowserKind::Chromium)
}

pub(super) fn pref_text() -> Option<BrowserKind> {
    Some(BrowserKind::ChromiumShell)
}

pub(super) fn weight() -> u32 {
    1
}

pub(super) fn mode() -> WorkloadMode {
    WorkloadMode::Closed
}

pub(super) fn concurrency() -> u32 {
    1
}

pub(super) fn warmup() -> u32 {
    2
}

pub(super) fn request_timeout() -> Duration {
    Duration::from_secs(120)
}

pub(super) fn load_timeout() -> Duration {
    Duration::from_secs(300)
}

pub(super) fn strategy() -> RecoveryStrategy {
    RecoveryStrategy::Progressive
}

pub(super) fn recovery_timeout() -> Duration {
    Duration::from_secs(30)
}

pub(super) fn max_attempts() -> u32 {
    3
}

pub(super) fn shard_strategy() -> ShardStrategy {
    ShardStrategy::LayerBalanced
}

pub(super) fn shard_transfer() -> super::types::ShardTransfer {
    super::types::ShardTransfer::Auto
}

pub(super) fn shard_recovery() -> ShardRecovery {
    ShardRecovery::RetryFailedShards
}

pub(super) fn generation_prompts() -> Vec<String> {
    vec![
        "Write a short story about AI".into(),
        "Explain in one paragraph what a web browser does.".into(),
    ]
}

pub(super) fn generation_tokens() -> u32 {
    16
}

pub(super) fn sync_interval() -> Duration {
    Duration::from_secs(5)
}

/// The built-in defaults. `models` is empty: fill it before [`Scenario::validate`].
impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: name(),
            description: None,
            seed: seed(),
            pool: PoolConfig::default(),
            backends: backends(),
            allow_fallback_adapter: false,
            wasm_threads: None,
            models: Vec::new(),
            workload: Workload::default(),
            faults: Vec::new(),
            recovery: Recovery::default(),
            sharding: None,
            generation: None,
            state: None,
            thresholds: Thresholds::default(),
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            min_connections: min_connections(),
            max_connections: max_connections(),
            browsers: browsers(),
            driver: driver(),
            preferences: Preferences::default(),
            idle_timeout: idle_timeout(),
            heartbeat_interval: heartbeat_interval(),
            heartbeat_timeout: heartbeat_timeout(),
            hang_after: hang_after(),
            launch_timeout: launch_timeout(),
            placement: placement(),
            routing_profile: None,
            adaptive: false,
            grid: Vec::new(),
            serve_addr: None,
            tls: false,
            standbys: None,
            standby_memory_mib: None,
        }
    }
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            audio: pref_audio(),
            vision: pref_vision(),
            text_embedding: pref_text(),
            text_generation: None,
        }
    }
}

/// 10 iterations, closed loop, one client. (In a file, `workload` must say how long.)
impl Default for Workload {
    fn default() -> Self {
        Workload {
            mode: mode(),
            concurrency: concurrency(),
            rate: None,
            duration: None,
            iterations: Some(10),
            warmup: warmup(),
            request_timeout: request_timeout(),
            run_timeout: None,
            load_timeout: load_timeout(),
            cooldown: cooldown(),
        }
    }
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            strategy: strategy(),
            timeout: recovery_timeout(),
            max_attempts: max_attempts(),
        }
    }
}

impl Default for StateSync {
    fn default() -> Self {
        StateSync {
            sync_interval: sync_interval(),
            migrations: Vec::new(),
        }
    }
}

fn string_enum(names: impl IntoIterator<Item = &'static str>, description: &str) -> Schema {
    let names: Vec<&str> = names.into_iter().collect();
    json_schema!({ "type": "string", "enum": names, "description": description })
}

impl JsonSchema for BrowserKind {
    fn schema_name() -> Cow<'static, str> {
        "BrowserKind".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        string_enum(
            BrowserKind::ALL.map(BrowserKind::as_str),
            "A browser product.",
        )
    }
}

impl JsonSchema for Backend {
    fn schema_name() -> Cow<'static, str> {
        "Backend".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        string_enum(
            Backend::DEFAULT_PRIORITY.map(Backend::as_str),
            "An onnxruntime-web execution provider.",
        )
    }
}

impl JsonSchema for DriverKind {
    fn schema_name() -> Cow<'static, str> {
        "DriverKind".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        string_enum(
            [DriverKind::Cdp, DriverKind::WebDriver].map(DriverKind::as_str),
            "cdp (Chrome DevTools Protocol) or webdriver.",
        )
    }
}

pub(super) fn placement() -> PlacementMode {
    PlacementMode::Routed
}

pub(super) fn cooldown() -> Duration {
    Duration::ZERO
}
