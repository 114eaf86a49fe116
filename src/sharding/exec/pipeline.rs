//! One request through the pipeline: each shard in order, the activation carried by the
//! chosen [`Route`], the last output decoded and checked against the page's digest; a failed
//! shard call starts a recovery (`recover.rs`) and the request goes on from that shard.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{
    activation_dims, decode_f32, f32_values, lock, Route, ShardError, ShardedAnswer,
    ShardedModelExecution,
};
use crate::metrics::sharding::ShardSpan;
use crate::models::HIDDEN_IN;
use crate::pool::worker::{Feed, OutputStats, RunReply};
use crate::pool::ErrorClass;
use crate::scenario::ShardRecovery;

/// A shard's output as its reply gave it.
#[derive(Debug)]
struct Output {
    dims: Vec<i64>,
    data_b64: Option<String>,
    digest: Option<String>,
}

impl ShardedModelExecution {
    /// Runs one request through every shard, on the model's prepared inputs.
    ///
    /// # Errors
    /// [`ShardError`] when a shard failed and recovery could not make it answer within
    /// `max_attempts` recoveries.
    pub async fn run_inference(
        &self,
        input: crate::pool::Input,
    ) -> Result<ShardedAnswer, ShardError> {
        let crate::pool::Input::Prepared = input;
        self.run_request(u64::MAX, false, self.route()).await
    }

    /// One request (`request` numbers its spans; `measured` says whether its times count),
    /// its activations carried by `route`. Relay slots it used are freed whatever the outcome.
    pub(in crate::sharding) async fn run_request(
        &self,
        request: u64,
        measured: bool,
        route: Route,
    ) -> Result<ShardedAnswer, ShardError> {
        let mut keys = Vec::new();
        let result = self.pipeline(request, measured, route, &mut keys).await;
        for key in keys {
            let _ = self.setup.ctx.server.take_relay(&key);
        }
        result
    }

    async fn pipeline(
        &self,
        request: u64,
        measured: bool,
        route: Route,
        keys: &mut Vec<String>,
    ) -> Result<ShardedAnswer, ShardError> {
        let server = &self.setup.ctx.server;
        let n = self.shards.len();
        let dims = activation_dims(&self.shards);
        let mut k = 0;
        let mut activation: Option<Feed> = None;
        let mut prev_end: Option<f64> = None;
        let mut recoveries = 0;
        loop {
            let (worker, generation) = {
                let p = lock(&self.place);
                (p.workers[p.assign[k]].clone(), p.generation)
            };
            if !worker.is_routable() && recoveries < self.setup.max_attempts {
                // Its shard failed and a recovery is moving it: wait for that instead of
                // sending a call to a browser known to be gone.
                recoveries += 1;
                drop(self.recovering.lock().await);
                continue;
            }
            let mut feeds = BTreeMap::new();
            if let Some(feed) = &activation {
                feeds.insert(HIDDEN_IN.to_string(), feed.clone());
            }
            let mut output_to = BTreeMap::new();
            let key = format!(
                "r{request}-s{k}-{}",
                self.relay_nonce.fetch_add(1, Ordering::Relaxed)
            );
            if route == Route::Server {
                output_to.insert(self.shards[k].output_name.clone(), server.relay_path(&key));
                keys.push(key.clone());
            }
            let sent = Instant::now();
            let result = worker.run_fed(&self.shards[k].name, feeds, output_to).await;
            let back = Instant::now();
            let ok = result.is_ok();
            {
                let mut r = lock(&self.rec);
                r.spans.push(ShardSpan {
                    request,
                    shard: k,
                    worker: worker.id.clone(),
                    start_ms: self.ms(sent),
                    end_ms: self.ms(back),
                    ok,
                });
            }
            match result {
                Ok(reply) => {
                    let out = self.output_of(k, &reply, &worker.id)?;
                    {
                        let mut r = lock(&self.rec);
                        r.runs[k] += 1;
                        if measured {
                            r.compute[k].push(reply.run_ms);
                            if let (Some(end), Some(start), true) =
                                (prev_end, reply.run_start_epoch_ms, k > 0)
                            {
                                // End of shard k-1's run to the start of shard k's, less the
                                // time shard k's worker was busy with other requests (its
                                // queue in the harness and in the page): what is left is
                                // encoding, the two transfers, the harness and decoding.
                                let queued = reply.dispatched.map_or(0.0, |d| {
                                    d.saturating_duration_since(sent).as_secs_f64() * 1e3
                                }) + reply.queue_ms;
                                r.hops[k - 1].push((start - end - queued).max(0.0));
                                r.waits[k - 1].push(queued);
                            }
                        }
                    }
                    prev_end = reply.run_end_epoch_ms;
                    let bad = |m: String| ShardError {
                        class: ErrorClass::Page,
                        message: format!("shard {k} on {}: {m}", worker.id),
                    };
                    if k + 1 == n {
                        let output = match &out.data_b64 {
                            Some(b64) => decode_f32(b64).map_err(bad)?,
                            None => {
                                let bytes = server.take_relay(&key).ok_or_else(|| {
                                    bad(format!("relay slot '{key}' is empty after the run"))
                                })?;
                                f32_values(&bytes).map_err(bad)?
                            }
                        };
                        if let Some(want) = &out.digest {
                            let got = OutputStats::digest_of(&output);
                            if &got != want {
                                return Err(bad(format!(
                                    "the output changed on the way: the page's digest {want}, the harness's {got}"
                                )));
                            }
                        }
                        return Ok(ShardedAnswer {
                            dims: out.dims,
                            output,
                            last_worker: worker.id.clone(),
                            last_browser: worker.kind,
                            last_backend: worker
                                .backend_of(&self.shards[k].name)
                                .unwrap_or(crate::backend::Backend::Wasm),
                            recoveries,
                        });
                    }
                    activation = Some(Feed {
                        dtype: "float32",
                        dims: dims.clone(),
                        url: out.data_b64.is_none().then(|| server.relay_path(&key)),
                        data_b64: out.data_b64,
                    });
                    k += 1;
                }
                Err(e) => {
                    let class = ErrorClass::of(&e);
                    if class == ErrorClass::Page || recoveries >= self.setup.max_attempts {
                        return Err(ShardError::of(
                            &e,
                            &format!("shard {k} on {} (after {recoveries} recoveries)", worker.id),
                        ));
                    }
                    recoveries += 1;
                    self.recover(k, generation, back, format!("{}: {e}", class.as_str()))
                        .await
                        .map_err(|m| ShardError {
                            class,
                            message: format!("shard {k} failed ({e}) and recovery failed: {m}"),
                        })?;
                    if self.setup.recovery == ShardRecovery::FullRetry {
                        k = 0;
                        activation = None;
                        prev_end = None;
                    }
                }
            }
        }
    }

    /// The output of shard `k` from its reply: its shape, its values in base64 (none when
    /// they went to a relay slot) and the page's digest of them.
    fn output_of(&self, k: usize, reply: &RunReply, worker: &str) -> Result<Output, ShardError> {
        let name = &self.shards[k].output_name;
        let t = reply.outputs.get(name).ok_or_else(|| ShardError {
            class: ErrorClass::Page,
            message: format!("shard {k} on {worker} returned no output '{name}'"),
        })?;
        if t.data_b64.is_none() && !t.relayed {
            return Err(ShardError {
                class: ErrorClass::Page,
                message: format!("shard {k} on {worker} returned '{name}' without its values"),
            });
        }
        Ok(Output {
            dims: t.dims.clone(),
            data_b64: t.data_b64.clone(),
            digest: t.stats.as_ref().map(|s| s.digest.clone()),
        })
    }
}
