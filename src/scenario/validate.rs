//! Semantic checks: values that parse but do not make sense together.
//!
//! Input: a [`Scenario`]. Output: every problem found, each as a key path (`models[1].name`)
//! and a message naming the bad value. `load_str` places them in the file; scenarios built in
//! code get them without a location.

use std::collections::HashSet;
use std::time::Duration;

use super::types::{FaultChoice, Scenario, WorkloadMode};
use crate::browser::BrowserKind;
use crate::models;

/// One problem: key path and message.
pub(crate) type Issue = (String, String);

/// Longest scenario name.
const MAX_NAME: usize = 64;

/// Most workers a scenario may ask for.
pub const MAX_CONNECTIONS: u32 = 64;

pub(super) fn push(out: &mut Vec<Issue>, path: impl Into<String>, message: impl Into<String>) {
    out.push((path.into(), message.into()));
}

/// Runs every check.
pub(crate) fn check(s: &Scenario) -> Vec<Issue> {
    let mut out = Vec::new();
    check_top(s, &mut out);
    check_pool(s, &mut out);
    let models = check_models(s, &mut out);
    check_workload(s, &mut out);
    for (i, f) in s.faults.iter().enumerate() {
        super::validate_faults::check_fault(s, &models, i, f, &mut out);
    }
    check_recovery_sharding_state(s, &mut out);
    super::validate_generation::generation(s, &mut out);
    check_thresholds(s, &models, &mut out);
    out
}

fn check_top(s: &Scenario, out: &mut Vec<Issue>) {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if s.name.is_empty() || s.name.len() > MAX_NAME || !s.name.chars().all(ok) {
        push(
            out,
            "name",
            format!(
                "'{}' is not a usable name; use 1 to {MAX_NAME} letters, digits, '-', '_' or '.'",
                s.name
            ),
        );
    }
    if s.backends.is_empty() {
        push(
            out,
            "backends",
            "the backend list is empty; list at least one of webgpu, webnn, wasm",
        );
    }
    let mut seen = HashSet::new();
    for (i, b) in s.backends.iter().enumerate() {
        if !seen.insert(*b) {
            push(
                out,
                format!("backends[{i}]"),
                format!("'{b}' is listed twice"),
            );
        }
    }
    if let Some(n) = s.wasm_threads.filter(|n| !(1..=16).contains(n)) {
        push(
            out,
            "wasm_threads",
            format!("'{n}' is out of range; use 1 to 16 threads per page"),
        );
    }
}

fn check_pool(s: &Scenario, out: &mut Vec<Issue>) {
    let p = &s.pool;
    if p.max_connections == 0 || p.max_connections > MAX_CONNECTIONS {
        push(
            out,
            "pool.max_connections",
            format!(
                "'{}' is out of range; use 1 to {MAX_CONNECTIONS}",
                p.max_connections
            ),
        );
    }
    if p.min_connections > p.max_connections {
        push(
            out,
            "pool.min_connections",
            format!(
                "'{}' is more than max_connections ({})",
                p.min_connections, p.max_connections
            ),
        );
    }
    if p.browsers.is_empty() {
        push(
            out,
            "pool.browsers",
            "the browser list is empty; list at least one of chromium, chrome, edge, firefox",
        );
    }
    let mut seen = HashSet::new();
    for (i, b) in p.browsers.iter().enumerate() {
        if !seen.insert(*b) {
            push(
                out,
                format!("pool.browsers[{i}]"),
                format!("'{b}' is listed twice"),
            );
        }
    }
    if !p.browsers.is_empty()
        && (seen.len() as u64) > u64::from(p.max_connections)
        && p.max_connections > 0
    {
        push(
            out,
            "pool.max_connections",
            format!(
                "'{}' is fewer than the {} browsers listed; each browser needs a worker",
                p.max_connections,
                seen.len()
            ),
        );
    }
    // Both steer the router; the matrix and a sharded run place by other rules.
    let routed = p.placement == super::types::PlacementMode::Routed && s.sharding.is_none();
    let not_routed = (!routed).then(|| {
        if s.sharding.is_some() {
            "a sharded run places shards by its plan, not by the router"
        } else {
            "the matrix measures every model in every browser, not where the router would put it; set pool.placement: routed"
        }
    });
    if let Some(why) = not_routed {
        if let Some(path) = &p.routing_profile {
            push(
                out,
                "pool.routing_profile",
                format!("'{path}' is not used: {why}"),
            );
        }
        if p.adaptive {
            push(out, "pool.adaptive", format!("'true' is not used: {why}"));
        }
    }
    super::validate_standby::standbys(out, s, not_routed);
    if p.routing_profile
        .as_deref()
        .is_some_and(|f| f.trim().is_empty())
    {
        push(out, "pool.routing_profile", "the path is empty");
    }
    super::validate_remote::remote(out, p);
    for (key, d) in [
        ("idle_timeout", p.idle_timeout),
        ("heartbeat_interval", p.heartbeat_interval),
        ("heartbeat_timeout", p.heartbeat_timeout),
        ("launch_timeout", p.launch_timeout),
    ] {
        positive(out, &format!("pool.{key}"), d);
    }
    if p.hang_after <= crate::pool::BEAT_INTERVAL {
        push(
            out,
            "pool.hang_after",
            format!(
                "'{}' is too short: a page beats every {} ms, so a silence must last longer \
                 than that to mean a hang (default {} ms)",
                humantime::format_duration(p.hang_after),
                crate::pool::BEAT_INTERVAL.as_millis(),
                crate::pool::HANG_AFTER.as_millis()
            ),
        );
    }
}

pub(super) fn positive(out: &mut Vec<Issue>, path: &str, d: Duration) {
    if d.is_zero() {
        push(
            out,
            path,
            "'0s' is too short; give a positive duration like 5s",
        );
    }
}

/// Checks `models` and returns the canonical names that resolved.
fn check_models(s: &Scenario, out: &mut Vec<Issue>) -> Vec<&'static models::ModelSpec> {
    if s.models.is_empty() && s.generation.is_none() {
        push(
            out,
            "models",
            "the model list is empty; list at least one, e.g. models: [{name: bert}]",
        );
    }
    let mut specs: Vec<&'static models::ModelSpec> = Vec::new();
    for (i, m) in s.models.iter().enumerate() {
        match models::resolve(&m.name) {
            Ok(spec) => {
                if specs.iter().any(|s| s.name == spec.name) {
                    push(
                        out,
                        format!("models[{i}].name"),
                        format!("'{}' is listed twice (as {})", m.name, spec.name),
                    );
                } else {
                    specs.push(spec);
                }
            }
            Err(e) => push(out, format!("models[{i}].name"), e.to_string()),
        }
        if let Some(b) = m.browser {
            if !s.pool.browsers.contains(&b) {
                push(
                    out,
                    format!("models[{i}].browser"),
                    not_in_pool(b, &s.pool.browsers),
                );
            }
        }
        if m.weight == 0 {
            push(
                out,
                format!("models[{i}].weight"),
                "'0' never sends a request; use 1 or more",
            );
        }
    }
    specs
}

pub(super) fn not_in_pool(b: BrowserKind, pool: &[BrowserKind]) -> String {
    let names: Vec<&str> = pool.iter().map(|b| b.as_str()).collect();
    format!("'{b}' is not in pool.browsers ({})", names.join(", "))
}

fn check_workload(s: &Scenario, out: &mut Vec<Issue>) {
    let w = &s.workload;
    if w.concurrency == 0 {
        push(
            out,
            "workload.concurrency",
            "'0' runs nothing; use 1 or more",
        );
    }
    match (w.duration, w.iterations) {
        (Some(_), Some(_)) => push(
            out,
            "workload.iterations",
            "give either duration or iterations, not both",
        ),
        (None, None) => push(
            out,
            "workload.duration",
            "say how long to run: give duration (e.g. 60s) or iterations (e.g. 100)",
        ),
        (Some(d), None) => positive(out, "workload.duration", d),
        (None, Some(0)) => push(
            out,
            "workload.iterations",
            "'0' runs nothing; use 1 or more",
        ),
        (None, Some(_)) => {}
    }
    match (w.mode, w.rate) {
        (WorkloadMode::Closed, Some(r)) => push(out, "workload.rate", format!(
            "'{r}' is a request rate, which needs mode: open (closed loops are paced by concurrency)"
        )),
        (WorkloadMode::Open, None) => push(out, "workload.mode",
            "mode open needs rate (requests per second), e.g. rate: 20"),
        (WorkloadMode::Open, Some(r)) if !(r.is_finite() && r > 0.0) => push(out, "workload.rate",
            format!("'{r}' is not a usable rate; give requests per second above 0")),
        _ => {}
    }
    positive(out, "workload.request_timeout", w.request_timeout);
    positive(out, "workload.load_timeout", w.load_timeout);
    if let Some(run) = w.run_timeout {
        positive(out, "workload.run_timeout", run);
        if run > w.request_timeout {
            push(
                out,
                "workload.run_timeout",
                format!(
                    "'{}' is longer than request_timeout ({}): a request would pass its deadline \
                     before a hung run is noticed",
                    humantime::format_duration(run),
                    humantime::format_duration(w.request_timeout)
                ),
            );
        }
    }
}

fn check_sharding(s: &Scenario, sh: &super::types::Sharding, out: &mut Vec<Issue>) {
    use super::types::ShardStrategy;
    match models::resolve(&sh.model) {
        Err(e) => push(out, "sharding.model", e.to_string()),
        Ok(spec) => match models::layer_parameters(spec) {
            None => push(
                out,
                "sharding.model",
                format!(
                    "'{}' is a {} model with no layer stack to split; shardable: llama-tiny, bert-base-uncased, whisper-tiny and their test variants",
                    sh.model,
                    spec.task.as_str()
                ),
            ),
            Some(p) => {
                if let Some(n) = sh.shards {
                    if n as usize > p.per_layer.len() {
                        push(
                            out,
                            "sharding.shards",
                            format!(
                                "'{n}' is more shards than {} has layers ({})",
                                spec.name,
                                p.per_layer.len()
                            ),
                        );
                    }
                }
                let others: Vec<&str> = s
                    .models
                    .iter()
                    .map(|m| m.name.as_str())
                    .filter(|m| models::resolve(m).map_or(true, |o| o.name != spec.name))
                    .collect();
                if !others.is_empty() || s.models.is_empty() {
                    push(
                        out,
                        "models",
                        format!(
                            "a sharded run runs one model, the sharded one: list only '{}' (found {}); run other models in another scenario",
                            sh.model,
                            if others.is_empty() { "none".to_string() } else { others.join(", ") }
                        ),
                    );
                }
            }
        },
    }
    match sh.shards {
        None if sh.strategy != ShardStrategy::MemoryAware => push(
            out,
            "sharding.shards",
            format!(
                "{} needs a shard count; only memory_aware picks one itself",
                sh.strategy.as_str()
            ),
        ),
        Some(n) if n < 2 => push(
            out,
            "sharding.shards",
            format!("'{n}' is not a split; use 2 or more"),
        ),
        Some(n) if n > s.pool.max_connections => push(
            out,
            "sharding.shards",
            format!(
                "'{n}' is more shards than workers (pool.max_connections {})",
                s.pool.max_connections
            ),
        ),
        _ => {}
    }
    // What a sharded run does not act on is refused, never quietly skipped.
    let unused = |path: &str, why: &str, out: &mut Vec<Issue>| {
        push(
            out,
            path,
            format!("{why}; a sharded run does not act on it"),
        );
    };
    if s.workload.mode != super::types::WorkloadMode::Closed || s.workload.rate.is_some() {
        unused(
            "workload.mode",
            "a sharded run is a closed loop of `concurrency` requests",
            out,
        );
    }
    if s.state.as_ref().is_some_and(|st| !st.migrations.is_empty()) {
        unused(
            "state.migrations",
            "shards move only by `sharding.recovery`",
            out,
        );
    }
    if !s.thresholds.p95_ms.is_empty() || !s.thresholds.p99_ms.is_empty() {
        unused(
            "thresholds",
            "per-model p95_ms/p99_ms apply to unsharded rows",
            out,
        );
    }
    if s.pool.preferences != Default::default() {
        unused(
            "pool.preferences",
            "shards go to the pool's browsers in turn or to sharding.workers",
            out,
        );
    }
    if s.pool.idle_timeout != super::defaults::idle_timeout() {
        unused(
            "pool.idle_timeout",
            "a pipeline's workers serve even when idle: none is closed",
            out,
        );
    }
    if s.models.iter().any(|m| m.browser.is_some()) {
        unused(
            "models[0].browser",
            "shards go to the pool's browsers in turn",
            out,
        );
    }
    if s.recovery.strategy != super::types::RecoveryStrategy::Progressive {
        unused(
            "recovery.strategy",
            "`sharding.recovery` says what a failed shard's worker gets (recovery.timeout bounds the episode, recovery.max_attempts the recoveries one request waits for)",
            out,
        );
    }
    if sh.strategy == ShardStrategy::MemoryAware && sh.memory_budget_mib.is_none() {
        push(
            out,
            "sharding.memory_budget_mib",
            "memory_aware needs a per-worker budget, e.g. memory_budget_mib: 64",
        );
    }
    if !sh.workers.is_empty() {
        let count = sh.shards.map(|n| n as usize);
        if count != Some(sh.workers.len()) {
            push(
                out,
                "sharding.workers",
                format!(
                    "{} entries, but there are {} shards; give one per shard, in order",
                    sh.workers.len(),
                    count.map_or_else(|| "no fixed number of".to_string(), |n| n.to_string())
                ),
            );
        }
        for (i, w) in sh.workers.iter().enumerate() {
            if !s.pool.browsers.contains(&w.browser) {
                push(
                    out,
                    format!("sharding.workers[{i}].browser"),
                    format!("'{}' is not in pool.browsers", w.browser),
                );
            }
        }
    }
    if sh.memory_budget_mib == Some(0) {
        push(
            out,
            "sharding.memory_budget_mib",
            "'0' holds nothing; use 1 or more",
        );
    }
    for (i, f) in s.faults.iter().enumerate() {
        use crate::faults::Kind;
        if !matches!(
            f.kind,
            FaultChoice::One(Kind::KillBrowser | Kind::CrashTab | Kind::Hang)
        ) {
            push(
                out,
                format!("faults[{i}].kind"),
                format!(
                    "'{}' is not injected in a sharded run yet; a sharded run injects kill_browser, crash_tab and hang",
                    f.kind.as_str()
                ),
            );
        }
        if f.at.is_none() {
            push(
                out,
                format!("faults[{i}].at"),
                "a sharded run injects faults once, at a time: give `at`, not `every` or `rate`",
            );
        }
        if matches!(
            f.target,
            super::types::FaultTarget::Random | super::types::FaultTarget::Model(_)
        ) {
            push(
                out,
                format!("faults[{i}].target"),
                "in a sharded run, target a shard ({shard: 1}), a worker or a browser",
            );
        }
    }
}

fn check_recovery_sharding_state(s: &Scenario, out: &mut Vec<Issue>) {
    positive(out, "recovery.timeout", s.recovery.timeout);
    if s.recovery.max_attempts == 0 {
        push(
            out,
            "recovery.max_attempts",
            "'0' never tries; use 1 or more",
        );
    }
    if let Some(sh) = &s.sharding {
        check_sharding(s, sh, out);
    }
    if let Some(st) = &s.state {
        positive(out, "state.sync_interval", st.sync_interval);
        if !st.migrations.is_empty() && s.pool.placement == super::types::PlacementMode::Matrix {
            push(
                out,
                "pool.placement",
                "migrations run in routed runs (the matrix measures each cell undisturbed); \
                 set pool.placement: routed or drop state.migrations",
            );
        }
        for (i, m) in st.migrations.iter().enumerate() {
            let p = format!("state.migrations[{i}]");
            let known = models::resolve(&m.model).ok().is_some_and(|spec| {
                s.models
                    .iter()
                    .any(|x| models::resolve(&x.name).is_ok_and(|y| y.name == spec.name))
            });
            if !known {
                let names: Vec<&str> = s.models.iter().map(|m| m.name.as_str()).collect();
                push(
                    out,
                    format!("{p}.model"),
                    format!(
                        "'{}' is not one of this scenario's models ({})",
                        m.model,
                        names.join(", ")
                    ),
                );
            }
            if !s.pool.browsers.contains(&m.to) {
                push(out, format!("{p}.to"), not_in_pool(m.to, &s.pool.browsers));
            }
            if let Some(end) = s.workload.duration.filter(|end| m.at >= *end) {
                push(
                    out,
                    format!("{p}.at"),
                    format!(
                        "'{}' is not before the end of the run (workload.duration {})",
                        super::duration::format(m.at),
                        super::duration::format(end)
                    ),
                );
            }
        }
    }
}

fn check_thresholds(s: &Scenario, specs: &[&models::ModelSpec], out: &mut Vec<Issue>) {
    let t = &s.thresholds;
    if let Some(r) = t.error_rate {
        if !(0.0..=1.0).contains(&r) {
            push(
                out,
                "thresholds.error_rate",
                format!("'{r}' is not a share; use 0 to 1 (0.01 is 1%)"),
            );
        }
    }
    for (key, map) in [("p95_ms", &t.p95_ms), ("p99_ms", &t.p99_ms)] {
        for (model, ms) in map {
            let path = format!("thresholds.{key}.{model}");
            let known = models::resolve(model)
                .ok()
                .filter(|spec| specs.iter().any(|s| s.name == spec.name));
            if known.is_none() {
                let names: Vec<&str> = s.models.iter().map(|m| m.name.as_str()).collect();
                push(
                    out,
                    &path,
                    format!(
                        "'{model}' is not one of this scenario's models ({})",
                        names.join(", ")
                    ),
                );
            }
            if !(ms.is_finite() && *ms > 0.0) {
                push(
                    out,
                    path,
                    format!("'{ms}' is not a usable latency; give milliseconds above 0"),
                );
            }
        }
    }
}
