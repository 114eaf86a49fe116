//! The words for the pool's events: each [`PoolEvent`] as run.json's `pool_events` record
//! (its kind, worker and a sentence), as a line of live progress where it is worth one, and the
//! live counts a progress view shows. The engine emits typed events; only this file says them
//! in English. Depends on the engine's output types only (the printer depends on the
//! searcher, never the reverse).

use std::collections::BTreeSet;

use crate::metrics::PoolEventRecord;
use crate::pool::events::{LaunchReason, Process};
use crate::pool::{PoolEvent, Stamped};

/// The run.json record of `e`, when it is one of run.json's `pool_events`.
pub fn record(e: &Stamped) -> Option<PoolEventRecord> {
    e.event.is_pool_event().then(|| PoolEventRecord {
        at_ms: e.at_ms,
        kind: e.event.kind().to_string(),
        worker: e.event.worker().to_string(),
        detail: detail(&e.event),
    })
}

/// Why a worker was launched, as the `launched` event says it.
fn launch_reason(why: &LaunchReason) -> String {
    match why {
        LaunchReason::Initial => "initial".into(),
        LaunchReason::Place(m) => format!("for {m}"),
        LaunchReason::ScaleUp(m) => format!("scale-up: {m} has a queue"),
        LaunchReason::Rebuild(m) => format!("rebuild for {m}"),
        LaunchReason::Replace => "rebuild after a failure".into(),
        LaunchReason::Minimum => "keeping the minimum".into(),
        LaunchReason::Probe(m) => format!("adaptive probe of {m}"),
        LaunchReason::Shard(n) => format!("shard {n}"),
        LaunchReason::Baseline(m) => format!("{m} unsharded, the baseline"),
    }
}

/// The sentence of `event`'s record.
pub fn detail(event: &PoolEvent) -> String {
    match event {
        PoolEvent::Launched {
            why,
            ready_ms,
            live,
            ..
        } => format!(
            "{}; ready in {ready_ms} ms; {live} live",
            launch_reason(why)
        ),
        PoolEvent::LaunchFailed { why, error } => {
            format!("{}: {error}", launch_reason(why))
        }
        PoolEvent::Retired { why, .. } => why.to_string(),
        PoolEvent::Removed { .. } => "its browser is closed".into(),
        PoolEvent::Closed { live, .. } => format!("{live} live"),
        PoolEvent::ProcessExit { process, .. } => match process {
            Process::Browser => "the browser process exited".into(),
            Process::Driver => "the driver process exited".into(),
        },
        PoolEvent::Unhealthy { why, .. } => why.clone(),
        PoolEvent::Routed(d) => format!("{} -> {:?}", d.model, d.target),
        PoolEvent::Placed(p) => format!("{} on {}", p.model, p.load.backend),
        PoolEvent::ShardsPlanned { model, shards } => {
            let parts: Vec<String> = shards
                .iter()
                .map(|s| {
                    format!(
                        "shard {} (layers {}..{}) on {}",
                        s.shard, s.layer_start, s.layer_end, s.worker
                    )
                })
                .collect();
            format!("{model}: {}", parts.join(", "))
        }
        PoolEvent::ShardsAssigned { model, moves } => {
            let parts: Vec<String> = moves
                .iter()
                .map(|(shard, worker)| format!("shard {shard} -> {worker}"))
                .collect();
            format!("{model}: {}", parts.join(", "))
        }
        PoolEvent::Unloaded { model, .. } | PoolEvent::Unplaced { model, .. } => model.clone(),
        PoolEvent::PlacementRetried { model, error, .. } => {
            format!("{model}: {error}; placing it again after the worker's recovery")
        }
        PoolEvent::ScaleUpFailed { model, error } => format!("{model}: {error}"),
        PoolEvent::WrongAnswer { model, detail, .. } => format!("{model}: {detail}"),
        PoolEvent::PlacementRejected {
            model,
            browser,
            backend,
            detail,
            ..
        } => format!(
            "{model}: the first answer on {browser}/{backend} did not match native onnxruntime, \
             so that placement never served: {detail}"
        ),
        PoolEvent::Promoted { model, .. } => format!("hot standby of {model} now serves"),
        PoolEvent::StandbyLoaded {
            model,
            ms,
            added_mib,
            ..
        } => format!("{model} loaded as a hot standby in {ms} ms (+{added_mib} MiB)"),
        PoolEvent::StandbyFailed { why, .. } => why.clone(),
        PoolEvent::StandbyOverBudget {
            model,
            cost_mib,
            taken_mib,
            budget_mib,
        } => format!(
            "{model}: another standby copy ({cost_mib} MiB) would pass the standby memory \
             budget ({taken_mib} of {budget_mib} MiB taken)"
        ),
        PoolEvent::StandbyNoSpare {
            model,
            copies,
            wanted,
            pin,
        } => format!(
            "{model}: {copies} of {wanted} standby copies; no live worker{} can take another \
             (the pool launches none for a standby)",
            pin.map(|b| format!(" of its pinned browser {b}"))
                .unwrap_or_default()
        ),
        PoolEvent::Recovering {
            seen,
            fault,
            levels,
            ..
        } => {
            let names: Vec<&str> = levels.iter().map(|l| l.as_str()).collect();
            format!(
                "{seen} noticed ({}); trying {}",
                fault.map_or("external", |k| k.as_str()),
                names.join(" -> ")
            )
        }
        PoolEvent::Recovered(r) => format!(
            "{} ({}) -> {} in {} ms: {}",
            r.fault_name(),
            r.detected_by,
            r.level.map_or("none", |l| l.as_str()),
            r.recovery_ms,
            r.steps.join("; ")
        ),
        PoolEvent::Rejoined {
            how,
            after_ms,
            standby_of,
            ..
        } => format!(
            "{how}; back after {after_ms} ms as a standby of [{}]",
            standby_of.join(", ")
        ),
        PoolEvent::Migrating { model, from, to } => format!("{model}: {from} -> {to}"),
        PoolEvent::Migrated {
            model,
            from,
            to,
            unload_error,
        } => format!(
            "{model}: {from} -> {to}{}",
            unload_error
                .as_ref()
                .map(|e| format!(" (unload from the source failed: {e})"))
                .unwrap_or_default()
        ),
        PoolEvent::MigrationRolledBack { detail, .. } => detail.clone(),
        PoolEvent::AdaptProbe {
            model,
            browser,
            backend,
            p50_ms,
            samples,
            ..
        } => format!(
            "{model}: {browser}/{backend} p50 {p50_ms:.1} ms over {samples} warm requests; timing \
             the other placements"
        ),
        PoolEvent::AdaptDecided {
            model, decision, ..
        } => format!("{model}: {decision}"),
        PoolEvent::AdaptRolledBack { why, .. } => why.clone(),
        PoolEvent::Adapted {
            model,
            from,
            to,
            browser,
            backend,
            notes,
        } => format!(
            "{model}: {} -> {to} ({browser}/{backend}){}",
            from.join(", "),
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            }
        ),
        PoolEvent::Fault(f) => f.detail.clone(),
        PoolEvent::RequestEnded { ok } => if *ok { "succeeded" } else { "failed" }.into(),
        PoolEvent::Lost { model, phase } => {
            format!("a {phase:?} request of {model} was issued and never ended")
        }
    }
}

/// The line live progress prints for `e`, for the events worth one: faults, recovery episodes,
/// migrations and adaptive decisions.
pub fn line(e: &Stamped) -> Option<String> {
    Some(match &e.event {
        PoolEvent::Fault(f) => format!(
            "fault at {:.1}s: {} on {}: {}",
            f.at_ms as f64 / 1e3,
            f.kind_name(),
            if f.target.is_empty() { "-" } else { &f.target },
            f.detail
        ),
        PoolEvent::Recovered(r) => format!(
            "recovery of {} ({}, seen as {}): {} at level {} after {} ms detection + {} ms",
            r.worker,
            r.fault_name(),
            r.detected_by,
            if r.succeeded { "recovered" } else { "FAILED" },
            r.level.map_or("none", |l| l.as_str()),
            r.detection_ms,
            r.recovery_ms
        ),
        PoolEvent::Migrated { .. } => format!("migrated {}", detail(&e.event)),
        PoolEvent::MigrationRolledBack { detail, .. } => {
            format!("migration rolled back: {detail}")
        }
        PoolEvent::AdaptDecided { .. } => format!("adaptive: {}", detail(&e.event)),
        _ => return None,
    })
}

/// The line for the hot standbys being ready.
pub fn standbys_line(per_model: &[(String, usize)], took_s: f64, copies: usize) -> String {
    let parts: Vec<String> = per_model.iter().map(|(m, n)| format!("{m} {n}")).collect();
    format!(
        "hot standbys: {} in {took_s:.1} s (up to {copies} per model)",
        parts.join(", ")
    )
}

/// Live counts from the events seen so far.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    ok: u64,
    failed: u64,
    recovering: BTreeSet<String>,
    faults: usize,
}

impl Tally {
    /// Counts `event`.
    pub fn add(&mut self, event: &PoolEvent) {
        match event {
            PoolEvent::RequestEnded { ok: true } => self.ok += 1,
            PoolEvent::RequestEnded { ok: false } => self.failed += 1,
            PoolEvent::Recovering { worker, .. } => {
                self.recovering.insert(worker.clone());
            }
            PoolEvent::Recovered(r) => {
                self.recovering.remove(&r.worker);
            }
            PoolEvent::Fault(_) => self.faults += 1,
            _ => {}
        }
    }

    /// The counts as one line.
    pub fn line(&self) -> String {
        format!(
            "ok {}  failed {}  recovering {}  faults {}",
            self.ok,
            self.failed,
            self.recovering.len(),
            self.faults
        )
    }
}
