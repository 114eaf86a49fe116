//! The token loop of a generation: the prompt through every shard, then one step per token
//! until the model ends its turn, the budget is spent or the caller stops it, each token chosen
//! by the [`Chooser`] and the planned kill carried out between the steps it names. Any caller
//! of the pool that writes text (`generate`, a generation cell) runs this one loop. Must not
//! import `report`, `cli` or terminal crates.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::generate::choose::Chooser;

use super::super::error::ShardError;
use super::{GenerationHandle, Step, StepRecord};

/// What to write and when to stop.
#[derive(Debug)]
pub struct Writing<'a> {
    /// The prompt's tokens.
    pub prompt: &'a [u32],
    /// Tokens to write at most.
    pub max_new_tokens: usize,
    /// The token that ends the model's turn (written, then the loop stops).
    pub eos: u32,
    /// How each token is chosen from its logits.
    pub chooser: Chooser,
    /// A planned fault: SIGKILL the browser of shard `.0` once token `.1` is written.
    pub kill: Option<(usize, usize)>,
    /// Cancelled: stop after the step in flight.
    pub stop: &'a CancellationToken,
}

/// What a generation wrote and what each step took.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// The tokens, in order.
    pub tokens: Vec<u32>,
    /// Each token's draw (sampling only).
    pub draws: Vec<f64>,
    /// Each token's logits, as the last shard returned them.
    pub logits: Vec<Vec<f32>>,
    /// Every step, the prefill first.
    pub records: Vec<StepRecord>,
    /// Each step's send, ms since the prompt was sent.
    pub started_ms: Vec<f64>,
    /// When the prompt was sent, ms since the run started (the clock of the ledger's samples).
    pub sent_ms: f64,
    /// Prompt sent to first logits back, ms.
    pub ttft_ms: f64,
    /// The planned fault, as carried out.
    pub fault: Option<String>,
    /// `stop` ended it early.
    pub interrupted: bool,
}

impl GenerationHandle {
    /// Writes as `w` says into `out`, `on_token` hearing each token as it is chosen. On an
    /// error, `out` holds what was written before it.
    ///
    /// # Errors
    /// [`ShardError`] when a step failed and its recovery did not bring the shard back.
    pub async fn write<F: FnMut(u32)>(
        &mut self,
        w: Writing<'_>,
        out: &mut Written,
        on_token: &mut F,
    ) -> Result<(), ShardError> {
        let Writing {
            prompt,
            max_new_tokens,
            eos,
            mut chooser,
            kill,
            stop,
        } = w;
        let t0 = Instant::now();
        out.sent_ms = self.pool.ledger().ms_at(t0);
        out.started_ms.push(0.0);
        let first = self.prefill(prompt).await;
        let first = keep_draws(first, &mut chooser, out)?;
        out.ttft_ms = t0.elapsed().as_secs_f64() * 1e3;
        out.records.push(first.record);
        let mut next = first.logits;
        loop {
            let token = chooser.choose(&next);
            out.tokens.push(token);
            out.logits.push(next);
            on_token(token);
            if token == eos || out.tokens.len() == max_new_tokens {
                break;
            }
            if stop.is_cancelled() {
                out.interrupted = true;
                break;
            }
            if let Some((shard, at)) = kill.filter(|&(_, at)| at == out.tokens.len()) {
                let note = self.kill(shard).await;
                out.fault = Some(match note {
                    Some(n) => format!(
                        "after token {at}: shard {shard} on {}: {}",
                        n.target, n.detail
                    ),
                    None => format!("after token {at}: shard {shard} had no worker to kill"),
                });
            }
            out.started_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            let step = keep_draws(self.step(&[token]).await, &mut chooser, out)?;
            out.records.push(step.record);
            next = step.logits;
        }
        out.draws = std::mem::take(&mut chooser.draws);
        Ok(())
    }
}

impl GenerationHandle {
    /// The prompt's step: one run of every shard, or, for fixed-capacity graphs, one per
    /// position, reported as one step.
    async fn prefill(&mut self, prompt: &[u32]) -> Result<Step, ShardError> {
        if self.capacity().is_none() {
            return self.step(prompt).await;
        }
        let mut whole: Option<Step> = None;
        for &token in prompt {
            let s = self.step(&[token]).await?;
            whole = Some(match whole {
                None => s,
                Some(w) => Step {
                    logits: s.logits,
                    record: joined(w.record, s.record),
                },
            });
        }
        match whole {
            Some(w) => Ok(w),
            // An empty prompt (`generate` and the cells refuse one): the page says what is wrong.
            None => self.step(prompt).await,
        }
    }
}

/// Two consecutive steps' records as one.
fn joined(mut a: StepRecord, b: StepRecord) -> StepRecord {
    a.tokens += b.tokens;
    a.wall_ms += b.wall_ms;
    for (x, y) in a.compute_ms.iter_mut().zip(&b.compute_ms) {
        *x += y;
    }
    for (x, y) in a.hop_ms.iter_mut().zip(&b.hop_ms) {
        *x = match (*x, *y) {
            (Some(x), Some(y)) => Some(x + y),
            (x, y) => x.or(y),
        };
    }
    a.rebuilt.extend(b.rebuilt);
    a.stalls.extend(b.stalls);
    a
}

/// `step`, with the draws so far kept in `out` when it failed.
fn keep_draws<T>(
    step: Result<T, ShardError>,
    chooser: &mut Chooser,
    out: &mut Written,
) -> Result<T, ShardError> {
    step.inspect_err(|_| out.draws = std::mem::take(&mut chooser.draws))
}
