//! Append throughput of the state transaction log (issue #5): one `Progress` op per
//! transaction, with an fsync per commit and with group commit.
//!
//! Each iteration is one transaction = three framed records (Begin, Op, Commit), so criterion's
//! `elem/s` is **records/s**; transactions/s is a third of it. Each sample writes a fresh log in
//! a temp dir (timed: the commits and the final sync; not timed: creating and deleting it), so
//! the log does not grow across samples.
//!
//! Run: `cargo bench --bench txlog -- --warm-up-time 1 --measurement-time 5`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use webgpu_pool::state::{CommitPolicy, Op, TxLog};

/// A realistic progress op: three models, counts in the thousands (about 172 bytes of JSON;
/// each record adds 32 bytes of framing).
fn progress(i: u64) -> Op {
    Op::Progress {
        issued: 10_000 + i,
        succeeded: 9_990 + i,
        failed: 10,
        per_model: BTreeMap::from([
            ("all-minilm-l6-v2".to_string(), 3_000 + i / 3),
            ("bert-base-uncased".to_string(), 3_000 + i / 3),
            ("vit-base-patch16-224".to_string(), 3_000 + i / 3),
        ]),
        elapsed_ms: 120_000 + i * 7,
    }
}

fn append(c: &mut Criterion) {
    let policies = [
        ("fsync_each_commit", CommitPolicy::FsyncEachCommit),
        (
            "group_5ms",
            CommitPolicy::Group {
                interval: Duration::from_millis(5),
            },
        ),
        (
            "group_100ms",
            CommitPolicy::Group {
                interval: Duration::from_millis(100),
            },
        ),
    ];
    let ops: Vec<Op> = (0..1024).map(progress).collect();
    let mut group = c.benchmark_group("txlog_append");
    // Begin + Op + Commit per iteration: elem/s is records/s.
    group.throughput(Throughput::Elements(3));
    for (name, policy) in policies {
        if matches!(policy, CommitPolicy::FsyncEachCommit) {
            group.sample_size(10);
        } else {
            group.sample_size(50);
        }
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::Builder::new()
                    .prefix("wgp-bench-txlog-")
                    .tempdir()
                    .expect("temp dir");
                let mut log = TxLog::create(dir.path(), policy).expect("create log");
                let start = Instant::now();
                for i in 0..iters {
                    let op = &ops[(i % 1024) as usize];
                    black_box(log.commit_one(op).expect("commit"));
                }
                log.close().expect("close");
                start.elapsed()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
