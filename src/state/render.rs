//! Plain-text renderings of [`VerifyReport`] and [`Replayed`] for the `state` commands.
//!
//! Pure string building (no terminal or table crates, which the engine modules must not use).

use std::fmt::Write;

use super::{Replayed, VerifyReport, WorkloadBound};

/// The summary `state verify` prints, e.g.
/// `ok: results/r1/txlog.log: 1203 bytes, 30 records (seq 1..30), 9 committed, 1 aborted,
/// 0 incomplete; snapshot seq 12 sha256 9f86d0…`.
pub fn render_verify(r: &VerifyReport) -> String {
    let mut out = String::new();
    let seqs = match r.first_seq {
        Some(first) => format!("seq {first}..{}", r.last_seq),
        None => "empty".into(),
    };
    let _ = write!(
        out,
        "{}: {}: {} bytes, {} records ({seqs}), {} committed, {} aborted, {} incomplete",
        if r.is_clean() {
            "ok"
        } else {
            "ok with warnings"
        },
        r.log.display(),
        r.log_bytes,
        r.records,
        r.committed,
        r.aborted,
        r.incomplete,
    );
    match &r.snapshot {
        Some(s) => {
            let _ = writeln!(out, "; snapshot seq {} sha256 {}", s.seq, s.sha256);
        }
        None => out.push_str("; no snapshot\n"),
    }
    out
}

/// The state as `state show` prints it (warnings are not included: the CLI prints them to
/// stderr).
pub fn render_state(r: &Replayed) -> String {
    let s = &r.state;
    let mut out = String::new();
    let workload = match s.workload {
        Some(WorkloadBound::DurationMs(ms)) => format!("{:.1}s", ms as f64 / 1e3),
        Some(WorkloadBound::Iterations(n)) => format!("{n} iterations"),
        None => "unknown".into(),
    };
    let _ = writeln!(
        out,
        "run {}  seed {}  workload {workload}  {}",
        if s.run_id.is_empty() {
            "(not started)"
        } else {
            &s.run_id
        },
        s.seed,
        if s.finished {
            "finished"
        } else {
            "not finished"
        },
    );
    let _ = writeln!(
        out,
        "log: last seq {}, snapshot {}, {} applied, {} aborted, {} incomplete transaction(s)",
        r.last_seq,
        r.snapshot_seq.map_or("none".into(), |q| format!("seq {q}")),
        r.applied,
        r.aborted,
        r.incomplete.len()
    );
    let p = &s.progress;
    let _ = writeln!(
        out,
        "progress: {} issued, {} succeeded, {} failed, {:.1}s elapsed",
        p.issued,
        p.succeeded,
        p.failed,
        p.elapsed_ms as f64 / 1e3
    );
    for (model, n) in &p.per_model {
        let _ = writeln!(out, "  {model}: {n} iterations");
    }
    let _ = writeln!(out, "workers: {}", s.workers.len());
    for w in s.workers.values() {
        let pid = |p: Option<u32>| p.map_or("-".into(), |p| p.to_string());
        let _ = writeln!(
            out,
            "  {:<14} {:<9} {:<10} pid {:<8} driver pid {:<8} {}",
            w.id,
            w.browser,
            w.status,
            pid(w.pid),
            pid(w.driver_pid),
            w.profile_dir.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(out, "placements: {}", s.placements.len());
    for (model, on) in &s.placements {
        let _ = writeln!(out, "  {model} -> {}", on.join(", "));
    }
    for (model, shards) in &s.shard_plans {
        let _ = writeln!(out, "shards of {model}:");
        for sh in shards {
            let _ = writeln!(
                out,
                "  #{} layers {}..{} -> {}",
                sh.shard, sh.layer_start, sh.layer_end, sh.worker
            );
        }
    }
    let _ = writeln!(out, "recovery events: {}", s.recovery_events.len());
    for e in &s.recovery_events {
        let _ = writeln!(
            out,
            "  {} -> {} (detected {} ms, recovered {} ms, {}){}",
            e.fault_kind,
            e.level,
            e.detection_ms,
            e.recovery_ms,
            if e.succeeded { "ok" } else { "failed" },
            e.worker
                .as_ref()
                .map_or(String::new(), |w| format!(" on {w}"))
        );
    }
    let _ = writeln!(out, "rolled back: {}", s.rollbacks.len());
    for rb in &s.rollbacks {
        let _ = writeln!(out, "  transaction {}: {}", rb.tx, rb.reason);
    }
    for tx in &r.incomplete {
        let _ = writeln!(
            out,
            "incomplete transaction {} ({} op(s), not applied)",
            tx.txid,
            tx.ops.len()
        );
    }
    out
}
