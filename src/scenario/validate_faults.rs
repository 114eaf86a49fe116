//! Semantic checks of `faults[]`: one schedule each, times inside the run, usable targets.
//!
//! Input: a [`Scenario`] and the catalog entries its models resolved to. Output: issues (key
//! path and message naming the bad value) appended to the caller's list.

use super::types::{Fault, FaultChoice, FaultTarget, Scenario};
use super::validate::{not_in_pool, positive, push, Issue};
use crate::browser::{BrowserKind, DriverKind};
use crate::faults::Kind;
use crate::models;

pub(super) fn check_fault(
    s: &Scenario,
    specs: &[&models::ModelSpec],
    i: usize,
    f: &Fault,
    out: &mut Vec<Issue>,
) {
    let p = format!("faults[{i}]");
    // A sharded run places shards itself; `pool.placement` does not apply to it.
    if i == 0 && s.pool.placement == super::types::PlacementMode::Matrix && s.sharding.is_none() {
        push(
            out,
            "pool.placement".to_string(),
            "faults are injected in routed runs (the matrix measures each cell undisturbed); \
             set pool.placement: routed or drop the faults",
        );
    }
    let given: Vec<&str> = [
        ("at", f.at.is_some()),
        ("every", f.every.is_some()),
        ("rate", f.rate.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, on)| on.then_some(k))
    .collect();
    match given.as_slice() {
        [] => push(
            out,
            format!("{p}.kind"),
            format!(
            "fault '{}' has no schedule; give at (e.g. 20s), every (e.g. 15s) or rate (per minute)",
            f.kind.as_str()
        ),
        ),
        [_] => {}
        [first, second, ..] => push(
            out,
            format!("{p}.{second}"),
            format!("give one schedule; {first} and {second} are both set"),
        ),
    }
    if let Some(e) = f.every {
        positive(out, &format!("{p}.every"), e);
    }
    if let Some(r) = f.rate {
        if !(r.is_finite() && r > 0.0) {
            push(
                out,
                format!("{p}.rate"),
                format!("'{r}' is not a usable rate; give faults per minute above 0"),
            );
        }
    }
    if let (Some(end), Some(at)) = (s.workload.duration, f.at) {
        if at >= end {
            push(
                out,
                format!("{p}.at"),
                format!(
                    "'{}' is not before the end of the run (workload.duration {})",
                    super::duration::format(at),
                    super::duration::format(end)
                ),
            );
        }
    }
    if f.count == Some(0) {
        push(
            out,
            format!("{p}.count"),
            "'0' never fires; use 1 or more, or drop the fault",
        );
    }
    if f.count.is_some() && f.at.is_some() {
        push(
            out,
            format!("{p}.count"),
            "count applies to every and rate; at fires once",
        );
    }
    if let Some(d) = f.duration {
        if !f.kind.has_duration() {
            push(
                out,
                format!("{p}.duration"),
                format!(
                    "'{}' has no duration; duration applies to hang, disconnect, slow and random",
                    f.kind.as_str()
                ),
            );
        }
        positive(out, &format!("{p}.duration"), d);
    }
    if f.delay.is_some() && !matches!(f.kind, FaultChoice::One(Kind::Slow) | FaultChoice::Random) {
        push(
            out,
            format!("{p}.delay"),
            format!(
                "'{}' takes no delay; delay applies to slow",
                f.kind.as_str()
            ),
        );
    }
    if !f.kinds.is_empty() && f.kind != FaultChoice::Random {
        push(
            out,
            format!("{p}.kinds"),
            format!("kinds applies to kind random, not '{}'", f.kind.as_str()),
        );
    }
    check_target(s, specs, &p, f, out);
}

fn check_target(
    s: &Scenario,
    specs: &[&models::ModelSpec],
    p: &str,
    f: &Fault,
    out: &mut Vec<Issue>,
) {
    let browsers = &s.pool.browsers;
    let target_kind = match &f.target {
        FaultTarget::Random => None,
        FaultTarget::Browser(b) => {
            if !browsers.contains(b) {
                push(
                    out,
                    format!("{p}.target.browser"),
                    not_in_pool(*b, browsers),
                );
            }
            Some(*b)
        }
        FaultTarget::Worker(id) => {
            let parsed = id
                .split_once('#')
                .and_then(|(k, n)| Some((k.parse::<BrowserKind>().ok()?, n.parse::<u32>().ok()?)));
            match parsed {
                None => {
                    push(
                        out,
                        format!("{p}.target.worker"),
                        format!("'{id}' is not a worker id; write <browser>#<n>, e.g. chromium#1"),
                    );
                    None
                }
                Some((b, _)) if !browsers.contains(&b) => {
                    push(out, format!("{p}.target.worker"), not_in_pool(b, browsers));
                    None
                }
                Some((_, n)) if n == 0 || n > s.pool.max_connections => {
                    push(out, format!("{p}.target.worker"), format!(
                        "'{id}' does not exist; workers are numbered from 1 to max_connections ({})",
                        s.pool.max_connections
                    ));
                    None
                }
                Some((b, _)) => Some(b),
            }
        }
        FaultTarget::Shard(n) => {
            match &s.sharding {
                None => push(
                    out,
                    format!("{p}.target.shard"),
                    "a shard target needs a sharded run (a `sharding:` block)".to_string(),
                ),
                Some(sh) => {
                    let count = sh.shards.unwrap_or(s.pool.max_connections);
                    if *n >= count {
                        push(
                            out,
                            format!("{p}.target.shard"),
                            format!(
                                "'{n}' is not a shard; shards are numbered from 0 to {}",
                                count.saturating_sub(1)
                            ),
                        );
                    }
                }
            }
            None
        }
        FaultTarget::Model(name) => {
            let found = models::resolve(name)
                .ok()
                .filter(|spec| specs.iter().any(|s| s.name == spec.name));
            // The language model of a generation block is a model of the pool too: the worker
            // that holds its decoder.
            let generating = s.generation.as_ref().is_some_and(|g| g.model == *name);
            if found.is_none() && !generating {
                let names: Vec<&str> = s
                    .models
                    .iter()
                    .map(|m| m.name.as_str())
                    .chain(s.generation.as_ref().map(|g| g.model.as_str()))
                    .collect();
                push(
                    out,
                    format!("{p}.target.model"),
                    format!(
                        "'{name}' is not one of this scenario's models ({})",
                        names.join(", ")
                    ),
                );
            }
            None
        }
    };
    if f.kind == FaultChoice::One(Kind::KillDriver) && s.pool.driver == DriverKind::Cdp {
        if let Some(b) = target_kind.filter(|b| b.is_chromium_family()) {
            push(
                out,
                format!("{p}.kind"),
                format!(
                    "kill_driver on '{b}': with pool.driver cdp there is no driver process to kill"
                ),
            );
        }
    }
}
