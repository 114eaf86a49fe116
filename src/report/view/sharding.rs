//! The cells and lines of a sharded run: the shard table, the hop table and the lines under
//! them (terminal, Markdown and HTML alike).

use std::collections::BTreeMap;

use super::seconds;
use crate::metrics::sharding::{Batch, HopRow, ShardRow, ShardingReport};
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

/// The lines under the shard tables: end-to-end latency and pipelined throughput, the
/// comparison with the unsharded model (its worker, both sides' threads, each round, the
/// median ratio), the answers checked, and each recovery.
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
    out.extend(baseline_lines(r));
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

/// The unsharded baseline: why it was skipped, or its worker and answers, both sides'
/// threads, each round and the median ratio.
fn baseline_lines(r: &ShardingReport) -> Vec<String> {
    let b = &r.baseline;
    if let Some(why) = &b.skipped {
        return vec![format!("unsharded baseline: skipped: {why}")];
    }
    let mut out = vec![format!(
        "unsharded baseline on {} ({}): {}; {:.2} requests/s; {} of {} answers within tolerance (max abs diff {})",
        b.worker.as_deref().unwrap_or("-"),
        b.backend.as_deref().unwrap_or("-"),
        b.latency_ms.as_ref().map_or_else(
            || "-".into(),
            |p| format!("p50 {:.1} ms, p95 {:.1} ms", p.p50, p.p95)
        ),
        b.throughput_per_s,
        b.checked - b.mismatched.min(b.checked),
        b.runs,
        b.max_abs_diff
            .map_or_else(|| "-".into(), |d| format!("{d:.2e}"))
    )];
    out.push(threads_line(r));
    for round in &r.rounds {
        let side = |b: &Batch| {
            let wrong = if b.complete() {
                String::new()
            } else {
                format!(
                    " ({} of {} answered, {} wrong)",
                    b.checked, b.requests, b.mismatched
                )
            };
            format!("{:.2}/s{wrong}", b.throughput_per_s)
        };
        out.push(format!(
            "round {} ({} first): sharded {}, unsharded {}: {}",
            round.round + 1,
            round.first.as_str(),
            side(&round.sharded),
            side(&round.unsharded),
            round
                .ratio
                .map_or_else(|| "no ratio".into(), |x| format!("{x:.2}x"))
        ));
    }
    let per_batch = r.rounds.first().map_or(0, |x| x.sharded.requests);
    out.push(match (r.throughput_vs_unsharded, r.throughput_vs_unsharded_range) {
        (Some(x), range) => format!(
            "x unsharded: {x:.2}x ({}median of {} alternating rounds of {per_batch} requests a side at {} in flight)",
            range.map_or_else(String::new, |[lo, hi]| format!("{lo:.2}..{hi:.2}, ")),
            r.rounds.iter().filter(|x| x.ratio.is_some()).count(),
            r.concurrency
        ),
        (None, _) => "x unsharded: no round with both sides answering every request right".into(),
    });
    out
}

/// Both sides' threads, each page counted once: `sharded: 3 pages x 1 thread = 3; unsharded:
/// 1 page x 3 threads`, and what was not equalised when a side is not on wasm.
fn threads_line(r: &ShardingReport) -> String {
    let mut pages: BTreeMap<&str, Option<u32>> = BTreeMap::new();
    for s in &r.shards {
        pages.insert(&s.worker, s.wasm_threads);
    }
    let n = |v: Option<u32>| v.map_or_else(|| "?".into(), |t| t.to_string());
    let threads = |t: Option<u32>| if t == Some(1) { "thread" } else { "threads" };
    let counts: Vec<Option<u32>> = pages.values().copied().collect();
    let total: Option<u32> = counts.iter().copied().sum();
    let sharded = match counts.first() {
        Some(&t) if counts.iter().all(|&c| c == t) => format!(
            "{} page{} x {} {} = {}",
            counts.len(),
            if counts.len() == 1 { "" } else { "s" },
            n(t),
            threads(t),
            n(total)
        ),
        _ => format!(
            "{} pages ({} threads) = {}",
            counts.len(),
            counts.iter().map(|&t| n(t)).collect::<Vec<_>>().join(" + "),
            n(total)
        ),
    };
    let b = &r.baseline;
    let mut line = format!(
        "wasm threads: sharded: {sharded}; unsharded: 1 page x {} {}",
        n(b.wasm_threads),
        threads(b.wasm_threads)
    );
    let mut other: Vec<&str> = r
        .shards
        .iter()
        .map(|s| s.backend.as_str())
        .chain(b.backend.as_deref())
        .filter(|&x| x != "wasm")
        .collect();
    other.sort_unstable();
    other.dedup();
    if !other.is_empty() {
        line.push_str(&format!(
            " (only onnxruntime-web's wasm threads are equalised; {} work runs on each browser's own device, which no thread count sets)",
            other.join(" and ")
        ));
    }
    line
}
