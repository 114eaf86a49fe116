//! The record of a sharded run (`run.json`'s `sharding`): the plan and its reasons, each shard's
//! compute, each hop's bytes and time, end-to-end latency and pipelined throughput, the
//! comparison with the same model unsharded (alternating rounds on equal wasm threads, the
//! median of their ratios), the check of every answer against the native oracle, recovery
//! events and the timeline the HTML report draws. Pure: the median of the rounds' ratios and
//! the verdict live here, with their tests.

use serde::{Deserialize, Serialize};

use super::{Percentiles, Requests};

/// What a sharded run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardingReport {
    /// The sharded model.
    pub model: String,
    /// `layer_balanced`, `cost_balanced` or `memory_aware`.
    pub strategy: String,
    /// `retry_failed_shards`, `reassign_shards` or `full_retry`.
    pub recovery: String,
    /// Why the plan is what it is, one line each (printed before the run).
    pub reasons: Vec<String>,
    /// The shards as planned and as they ended (worker after any recovery).
    pub shards: Vec<ShardRow>,
    /// Each boundary between shards.
    pub hops: Vec<HopRow>,
    /// How activations travelled: `harness` or `server`.
    pub transfer: String,
    /// With `transfer: auto`: one request's end-to-end ms by each route (best of two, one
    /// request at a time, before the stream); the faster was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_probe: Option<TransferProbe>,
    /// The sharded stream's requests (independent ledger; also the run's `requests`).
    pub requests: Requests,
    /// Requests in flight at once (closed loop).
    pub concurrency: u32,
    /// End-to-end latency of the measured requests, ms.
    pub latency_ms: Option<Percentiles>,
    /// Measured requests per second of wall time, with requests pipelined.
    pub throughput_per_s: f64,
    /// The same model unsharded on a worker of its own, measured in the rounds.
    pub baseline: Baseline,
    /// After the stream, sharded and unsharded batches in alternating rounds (empty when the
    /// baseline was skipped).
    #[serde(default)]
    pub rounds: Vec<Round>,
    /// The median over the rounds of sharded throughput / unsharded throughput (each round's
    /// two batches measured one right after the other); none without a round with a ratio.
    pub throughput_vs_unsharded: Option<f64>,
    /// The smallest and largest of those ratios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_vs_unsharded_range: Option<[f64; 2]>,
    /// Every answer against the unsharded model run by native onnxruntime.
    pub correctness: ShardCorrectness,
    /// Recoveries of failed shards.
    pub events: Vec<ShardEvent>,
    /// One bar per shard execution (the HTML report's shard timeline).
    pub timeline: Vec<ShardSpan>,
}

impl ShardingReport {
    /// Every answer checked and right (the stream's, and both sides' in the rounds), and no
    /// recovery that gave up.
    pub fn passed(&self) -> bool {
        self.correctness.passed
            && self.events.iter().all(|e| e.succeeded)
            && self.baseline.mismatched == 0
            && self.rounds_mismatched() == 0
    }

    /// Sharded answers outside tolerance in the rounds.
    pub fn rounds_mismatched(&self) -> u64 {
        self.rounds
            .iter()
            .map(|r| u64::from(r.sharded.mismatched))
            .sum()
    }
}

/// A side of the comparison.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Through the pipeline of shards.
    #[default]
    Sharded,
    /// The whole model on the baseline's worker.
    Unsharded,
}

impl Side {
    /// The side that goes first in round `round` (from 0): sharded, then each round the other,
    /// so a drift of the shared machine lands on both sides alike.
    pub fn first_in(round: u32) -> Self {
        if round % 2 == 0 {
            Self::Sharded
        } else {
            Self::Unsharded
        }
    }

    /// `sharded` or `unsharded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sharded => "sharded",
            Self::Unsharded => "unsharded",
        }
    }
}

/// One round of the comparison: a batch on each side, one right after the other.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Round {
    /// From 0.
    pub round: u32,
    /// The side that ran first.
    pub first: Side,
    /// Through the pipeline.
    pub sharded: Batch,
    /// The whole model on the baseline's worker.
    pub unsharded: Batch,
    /// `sharded.throughput_per_s / unsharded.throughput_per_s`, when every request of both
    /// batches answered within tolerance.
    pub ratio: Option<f64>,
}

impl Round {
    /// The ratio of a round whose batches both answered every request right.
    pub fn ratio_of(sharded: &Batch, unsharded: &Batch) -> Option<f64> {
        (sharded.complete()
            && unsharded.complete()
            && sharded.throughput_per_s > 0.0
            && unsharded.throughput_per_s > 0.0)
            .then(|| sharded.throughput_per_s / unsharded.throughput_per_s)
    }
}

/// One side's batch in a round: `requests` at the run's concurrency.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Batch {
    /// The first request sent, ms since the pool started (the timeline's clock).
    pub start_ms: f64,
    /// The last answer, ms since the pool started.
    pub end_ms: f64,
    /// Requests sent.
    pub requests: u32,
    /// Answers checked against the reference (every answer).
    pub checked: u32,
    /// Answers outside tolerance (or, for a decoder, with another argmax).
    pub mismatched: u32,
    /// Largest absolute difference from the reference.
    pub max_abs_diff: Option<f64>,
    /// Right answers per second from `start_ms` to `end_ms`.
    pub throughput_per_s: f64,
}

impl Batch {
    /// Every request answered, every answer right.
    pub fn complete(&self) -> bool {
        self.requests > 0 && self.checked == self.requests && self.mismatched == 0
    }
}

/// The median of the rounds' ratios (the mean of the middle two for an even count) with the
/// smallest and largest; none when no round has a ratio.
pub fn median_ratio(rounds: &[Round]) -> Option<(f64, [f64; 2])> {
    let mut r: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r.ratio)
        .filter(|x| x.is_finite())
        .collect();
    if r.is_empty() {
        return None;
    }
    r.sort_by(f64::total_cmp);
    let n = r.len();
    let median = if n % 2 == 1 {
        r[n / 2]
    } else {
        (r[n / 2 - 1] + r[n / 2]) / 2.0
    };
    Some((median, [r[0], r[n - 1]]))
}

/// One request's end-to-end time by each route, measured side by side before the stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TransferProbe {
    /// Through the harness (base64 in the page-API calls), ms; none when it failed.
    pub harness_ms: Option<f64>,
    /// Through the asset server's relay, ms; none when it failed.
    pub server_ms: Option<f64>,
}

/// One shard.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardRow {
    /// Index, from 0.
    pub shard: usize,
    /// Layers `[start, end)`.
    pub layers: [usize; 2],
    /// Learned parameters.
    pub parameters: u64,
    /// Its ONNX file, bytes.
    pub onnx_bytes: u64,
    /// The worker serving it at the end of the run.
    pub worker: String,
    /// Workers that served it before a recovery moved it, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_workers: Vec<String>,
    /// The backend it ran on there.
    pub backend: String,
    /// Threads of onnxruntime-web's wasm backend in that page, as the page reported at the
    /// shard's last load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm_threads: Option<u32>,
    /// Times it was loaded (1 unless a recovery reloaded it).
    pub loads: u32,
    /// Its last load (fetch plus session creation), ms.
    pub load_ms: f64,
    /// `session.run` plus read-back in the page, measured requests, ms.
    pub compute_ms: Option<Percentiles>,
    /// Successful runs of this shard (all phases).
    pub runs: u64,
}

/// One boundary: shard `from` hands its activation to shard `from + 1`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HopRow {
    /// The shard before the boundary.
    pub from: usize,
    /// The shard after it.
    pub to: usize,
    /// Raw bytes of the activation (float32 values; base64 on the wire is 4/3 of it).
    pub bytes: u64,
    /// How the bytes travel: through the harness, in the page-API call's reply and the next
    /// call's arguments.
    pub route: String,
    /// From the end of `from`'s run to the start of `to`'s run (page clocks, wall time), less
    /// the time `to`'s worker was busy with other requests, ms: encoding, the two transfers,
    /// the harness and decoding.
    pub transfer_ms: Option<Percentiles>,
    /// The time the activation waited for `to`'s worker to finish other requests, ms (0 at
    /// concurrency 1; a pipeline stall above it).
    pub wait_ms: Option<Percentiles>,
}

/// The unsharded model on a worker of its own: a fresh page of shard 0's browser kind, on shard
/// 0's backend, whose wasm thread count is the sum of the shard pages'.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Baseline {
    /// The worker, when it ran.
    pub worker: Option<String>,
    /// Its backend.
    pub backend: Option<String>,
    /// Threads of onnxruntime-web's wasm backend in its page, as the page reported at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm_threads: Option<u32>,
    /// Requests sent (every round's unsharded batch).
    pub runs: u64,
    /// Answers checked against the oracle (every answer).
    #[serde(default)]
    pub checked: u64,
    /// Answers outside tolerance (or, for a decoder, with another argmax): any fails the run.
    #[serde(default)]
    pub mismatched: u64,
    /// End-to-end latency of the right answers, ms.
    pub latency_ms: Option<Percentiles>,
    /// Right answers per second over the rounds' unsharded batches, at the same concurrency.
    pub throughput_per_s: f64,
    /// Largest absolute difference of its answers from the oracle's.
    pub max_abs_diff: Option<f64>,
    /// Why it did not run (e.g. the whole model is over one worker's memory budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Every sharded answer against the oracle's output of the unsharded model.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardCorrectness {
    /// Every answer checked was within tolerance (and, for a decoder, had the same argmax).
    pub passed: bool,
    /// Answers checked (every successful request).
    pub checked: u64,
    /// Answers outside tolerance or with another argmax.
    pub mismatched: u64,
    /// Largest absolute difference over every checked answer.
    pub max_abs_diff: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// For a decoder (logits): answers whose argmax differed at any position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argmax_mismatched: Option<u64>,
    /// What the oracle was.
    pub reference: String,
}

/// A failed shard and what recovery did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardEvent {
    /// Since the stream started, ms.
    pub at_ms: u64,
    /// The recovery strategy.
    pub strategy: String,
    /// The shard whose call failed.
    pub shard: usize,
    /// The worker that failed.
    pub from: String,
    /// Where its shards went.
    pub to: Vec<String>,
    /// Shards loaded again.
    pub reloaded: Vec<usize>,
    /// The failure.
    pub cause: String,
    /// From the fault's injection to the failed call, ms (none for a failure no injected
    /// fault explains).
    pub detection_ms: Option<f64>,
    /// The injected fault that explains the failure, if one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_kind: Option<String>,
    /// From the failed call to the shards serving again, ms.
    pub recovery_ms: f64,
    /// Whether the shards serve again.
    pub succeeded: bool,
}

/// One shard execution.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardSpan {
    /// The request (issue order).
    pub request: u64,
    /// The shard.
    pub shard: usize,
    /// The worker.
    pub worker: String,
    /// Start, ms since the stream started (harness clock: the call was sent).
    pub start_ms: f64,
    /// End, ms since the stream started (the reply arrived).
    pub end_ms: f64,
    /// Whether it answered.
    pub ok: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(throughput_per_s: f64) -> Batch {
        Batch {
            requests: 6,
            checked: 6,
            throughput_per_s,
            ..Batch::default()
        }
    }

    fn round(sharded: f64, unsharded: f64) -> Round {
        let (s, u) = (batch(sharded), batch(unsharded));
        Round {
            ratio: Round::ratio_of(&s, &u),
            sharded: s,
            unsharded: u,
            ..Round::default()
        }
    }

    #[test]
    fn x_unsharded_is_the_median_of_the_rounds_ratios_not_a_ratio_of_totals() {
        // Ratios 2, 1, 6 (mean 3, ratio of sums 11/4): the median is 2.
        let rounds = [round(4.0, 2.0), round(1.0, 1.0), round(6.0, 1.0)];
        assert_eq!(median_ratio(&rounds), Some((2.0, [1.0, 6.0])));
        // Even count: the mean of the middle two (1.5 and 2.5), not either one.
        let rounds = [
            round(1.0, 1.0),
            round(3.0, 2.0),
            round(5.0, 2.0),
            round(8.0, 2.0),
        ];
        assert_eq!(median_ratio(&rounds), Some((2.0, [1.0, 4.0])));
        // A skewed round does not drag it (the mean of 1, 1.1 and 10 would be 4).
        let rounds = [round(1.0, 1.0), round(1.1, 1.0), round(10.0, 1.0)];
        assert_eq!(median_ratio(&rounds).map(|m| m.0), Some(1.1));
        assert_eq!(median_ratio(&[]), None);
    }

    #[test]
    fn a_round_with_a_failed_or_wrong_answer_has_no_ratio() {
        let good = batch(2.0);
        assert_eq!(Round::ratio_of(&good, &batch(1.0)), Some(2.0));
        let failed = Batch {
            checked: 5,
            ..batch(1.0)
        };
        assert_eq!(Round::ratio_of(&good, &failed), None);
        let wrong = Batch {
            mismatched: 1,
            ..batch(1.0)
        };
        assert_eq!(Round::ratio_of(&wrong, &good), None);
        // Only rounds with a ratio count.
        let rounds = [
            round(3.0, 1.0),
            Round {
                ratio: Round::ratio_of(&good, &failed),
                ..Round::default()
            },
        ];
        assert_eq!(median_ratio(&rounds), Some((3.0, [3.0, 3.0])));
    }

    #[test]
    fn the_sides_alternate_from_round_to_round() {
        let order: Vec<Side> = (0..4).map(Side::first_in).collect();
        assert_eq!(
            order,
            [
                Side::Sharded,
                Side::Unsharded,
                Side::Sharded,
                Side::Unsharded
            ]
        );
    }

    #[test]
    fn a_wrong_answer_on_either_side_of_the_rounds_fails_the_run() {
        let right = ShardingReport {
            correctness: ShardCorrectness {
                passed: true,
                checked: 3,
                ..ShardCorrectness::default()
            },
            baseline: Baseline {
                runs: 6,
                checked: 6,
                ..Baseline::default()
            },
            rounds: vec![round(2.0, 1.0)],
            ..ShardingReport::default()
        };
        assert!(right.passed());
        let mut baseline_wrong = right.clone();
        baseline_wrong.baseline.mismatched = 1;
        assert!(
            !baseline_wrong.passed(),
            "a baseline answer off the reference fails the run"
        );
        let mut round_wrong = right.clone();
        round_wrong.rounds[0].sharded.mismatched = 1;
        assert!(
            !round_wrong.passed(),
            "a sharded answer off the reference in a round fails the run"
        );
    }
}
