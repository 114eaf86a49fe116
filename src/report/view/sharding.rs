//! The cells and lines of a sharded run: the shard table, the hop table and the lines under
//! them (terminal, Markdown and HTML alike).

use super::seconds;
use crate::metrics::sharding::{HopRow, ShardRow, ShardingReport};
use crate::metrics::Percentiles;

/// The columns of the shard table (terminal, Markdown and HTML).
pub const SHARD_COLUMNS: [&str; 10] = [
    "shard",
    "layers",
    "worker",
    "backend",
    "params M",
    "loads",
    "load ms",
    "compute p50 ms",
    "compute p95 ms",
    "runs",
];

/// The right-aligned (numeric) columns of [`SHARD_COLUMNS`].
pub const SHARD_NUMERIC: std::ops::Range<usize> = 4..10;

/// The cells of one shard, in [`SHARD_COLUMNS`] order; a shard a recovery moved shows where it
/// was (`chromium#2 (was firefox#1)`).
pub fn shard_values(r: &ShardRow) -> [String; 10] {
    let worker = if r.earlier_workers.is_empty() {
        r.worker.clone()
    } else {
        format!("{} (was {})", r.worker, r.earlier_workers.join(", "))
    };
    let p = |f: fn(&Percentiles) -> f64| {
        r.compute_ms
            .as_ref()
            .map_or_else(|| "-".into(), |c| format!("{:.1}", f(c)))
    };
    [
        r.shard.to_string(),
        format!("{}..{}", r.layers[0], r.layers[1]),
        worker,
        r.backend.clone(),
        format!("{:.2}", r.parameters as f64 / 1e6),
        r.loads.to_string(),
        format!("{:.0}", r.load_ms),
        p(|c| c.p50),
        p(|c| c.p95),
        r.runs.to_string(),
    ]
}

/// The columns of the hop table.
pub const HOP_COLUMNS: [&str; 6] = [
    "hop",
    "bytes",
    "transfer p50 ms",
    "transfer p95 ms",
    "wait p50 ms",
    "route",
];

/// The cells of one hop, in [`HOP_COLUMNS`] order.
pub fn hop_values(h: &HopRow) -> [String; 6] {
    let p = |v: &Option<Percentiles>, f: fn(&Percentiles) -> f64| {
        v.as_ref()
            .map_or_else(|| "-".into(), |c| format!("{:.1}", f(c)))
    };
    [
        format!("{} -> {}", h.from, h.to),
        h.bytes.to_string(),
        p(&h.transfer_ms, |c| c.p50),
        p(&h.transfer_ms, |c| c.p95),
        p(&h.wait_ms, |c| c.p50),
        h.route.clone(),
    ]
}

/// The lines under the shard tables: end-to-end latency and pipelined throughput against the
/// unsharded worker, the answers checked, and each recovery.
pub fn sharding_lines(r: &ShardingReport) -> Vec<String> {
    let pct = |p: &Option<Percentiles>| {
        p.as_ref().map_or_else(
            || "-".into(),
            |p| format!("p50 {:.1} ms, p95 {:.1} ms", p.p50, p.p95),
        )
    };
    let mut out = vec![format!(
        "{} in {} shards ({}, recovery {}): end to end {}; {:.2} requests/s with {} in flight",
        r.model,
        r.shards.len(),
        r.strategy,
        r.recovery,
        pct(&r.latency_ms),
        r.throughput_per_s,
        r.concurrency
    )];
    out.push(format!(
        "activations through the {}{}",
        if r.transfer == "server" {
            "asset server's relay"
        } else {
            "harness"
        },
        r.transfer_probe.as_ref().map_or_else(String::new, |p| {
            let ms =
                |v: Option<f64>| v.map_or_else(|| "failed".to_string(), |v| format!("{v:.0} ms"));
            format!(
                " (one request, side by side: {} through the harness, {} through the asset server)",
                ms(p.harness_ms),
                ms(p.server_ms)
            )
        })
    ));
    let b = &r.baseline;
    out.push(match &b.skipped {
        Some(why) => format!("unsharded baseline: skipped: {why}"),
        None => format!(
            "unsharded baseline on {} ({}): {}; {:.2} requests/s{}",
            b.worker.as_deref().unwrap_or("-"),
            b.backend.as_deref().unwrap_or("-"),
            pct(&b.latency_ms),
            b.throughput_per_s,
            r.throughput_vs_unsharded
                .map(|x| format!("; sharded throughput is {x:.2}x the unsharded worker's"))
                .unwrap_or_default()
        ),
    });
    let c = &r.correctness;
    out.push(format!(
        "answers checked: {} of {} within atol {:.0e} of {} (max abs diff {:.2e}){}",
        c.checked - c.mismatched,
        c.checked,
        c.atol,
        c.reference,
        c.max_abs_diff,
        c.argmax_mismatched
            .map(|n| format!("; argmax differed in {n}"))
            .unwrap_or_default()
    ));
    for e in &r.events {
        out.push(format!(
            "recovery at {}: shard {} on {} failed ({}); {} {} shards {:?} on [{}]; detected in {}, serving again {:.0} ms after the failure",
            seconds(e.at_ms),
            e.shard,
            e.from,
            e.cause,
            e.strategy,
            if e.succeeded { "loaded" } else { "failed to load" },
            e.reloaded,
            e.to.join(", "),
            e.detection_ms
                .map_or_else(|| "-".into(), |d| format!("{d:.0} ms")),
            e.recovery_ms
        ));
    }
    out
}
