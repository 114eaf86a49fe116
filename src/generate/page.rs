//! A generation's steps run in a browser page: the decoder graph loaded once, each step one
//! `run` whose key/value cache stays in the page (`carry`), only the new tokens, their
//! positions and the attention bias going in and the last position's logits coming out.
//! Must not import `report` or `cli`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

use crate::browser::WorkerError;
use crate::models::decoder::{
    causal_bias, past_key, past_value, present_key, present_value, ATTENTION_BIAS, POSITION_IDS,
};
use crate::models::{DType, PreparedModel, RuntimeInput, Task, WeightsKind};
use crate::pool::worker::page_api::{Feed, RunReply};
use crate::pool::worker::Page;
use crate::pool::worker::RunFor;

/// The decoder graph of `layers` at `file` as a model the page loads: every input given with
/// each run, of any length (`dynamic`), the caches starting empty.
pub fn prepared(
    name: &str,
    file: &Path,
    parameters: u64,
    layers: Range<usize>,
    kv_heads: usize,
    head_dim: usize,
) -> PreparedModel {
    let input = |name: String, dtype, dims: Vec<i64>| RuntimeInput {
        name,
        dtype,
        dims,
        dynamic: true,
    };
    let mut runtime = vec![
        input("input_ids".into(), DType::Int64, vec![1, 1]),
        input(POSITION_IDS.into(), DType::Int64, vec![1]),
        input(ATTENTION_BIAS.into(), DType::Float32, vec![1, 1, 1, 1]),
    ];
    let empty = vec![1, kv_heads as i64, 0, head_dim as i64];
    for i in layers {
        runtime.push(input(past_key(i), DType::Float32, empty.clone()));
        runtime.push(input(past_value(i), DType::Float32, empty.clone()));
    }
    PreparedModel {
        name: name.to_owned(),
        task: Task::TextGeneration,
        weights: WeightsKind::Real,
        weights_note: "SmolLM2-135M-Instruct from its GGUF file (Q4_1 and Q8_0 dequantized to f32)"
            .to_owned(),
        onnx_bytes: std::fs::metadata(file).map_or(0, |m| m.len()),
        onnx_file: file.to_path_buf(),
        parameters,
        inputs: Vec::new(),
        output_name: "logits".to_owned(),
        input_note: "tokens given step by step".to_owned(),
        golden: None,
        runtime_inputs: runtime,
    }
}

/// One step's answer from the page.
#[derive(Debug, Clone)]
pub struct PageStep {
    /// The last new position's logits.
    pub logits: Vec<f32>,
    /// The page's `session.run` time, ms.
    pub run_ms: f64,
}

/// A decoder loaded in a page, with the positions its cache holds.
#[derive(Debug)]
pub struct PageDecoder<'p> {
    page: &'p Page,
    model_id: String,
    layers: Range<usize>,
    empty: Vec<i64>,
    past: usize,
    timeout: Duration,
}

impl<'p> PageDecoder<'p> {
    /// A decoder already loaded in `page` as `model_id`; its first step starts a new sequence.
    pub fn new(
        page: &'p Page,
        model: &PreparedModel,
        layers: Range<usize>,
        timeout: Duration,
    ) -> Self {
        let empty = model
            .runtime_inputs
            .iter()
            .find(|i| i.name.starts_with("past_key."))
            .map_or_else(Vec::new, |i| i.dims.clone());
        PageDecoder {
            page,
            model_id: model.name.clone(),
            layers,
            empty,
            past: 0,
            timeout,
        }
    }

    /// Runs `ids` after the cached positions; the page keeps the grown cache.
    ///
    /// # Errors
    /// Any [`WorkerError`] from the page, or a reply without full logits.
    pub async fn step(&mut self, ids: &[u32]) -> Result<PageStep, WorkerError> {
        let (past, new) = (self.past, ids.len());
        let mut feeds = BTreeMap::new();
        let ids: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
        feeds.insert("input_ids".to_owned(), feed_i64(vec![1, new as i64], &ids));
        let positions: Vec<i64> = (past..past + new).map(|p| p as i64).collect();
        feeds.insert(
            POSITION_IDS.to_owned(),
            feed_i64(vec![new as i64], &positions),
        );
        let dims = vec![1, 1, new as i64, (past + new) as i64];
        feeds.insert(
            ATTENTION_BIAS.to_owned(),
            feed_f32(dims, &causal_bias(past, new)),
        );
        let mut carry = BTreeMap::new();
        for i in self.layers.clone() {
            if past == 0 {
                feeds.insert(past_key(i), feed_f32(self.empty.clone(), &[]));
                feeds.insert(past_value(i), feed_f32(self.empty.clone(), &[]));
            }
            carry.insert(present_key(i), past_key(i));
            carry.insert(present_value(i), past_value(i));
        }
        let reply = self
            .page
            .run_step(
                &self.model_id,
                &feeds,
                &carry,
                RunFor::Request,
                self.timeout,
            )
            .await?;
        let logits = logits_of(&reply)?;
        // The page says what it kept: a cache that did not grow by these tokens was not carried.
        let first = present_key(self.layers.start);
        let kept = reply.carried.get(&first).and_then(|d| d.get(2)).copied();
        if kept != Some((past + new) as i64) {
            return Err(WorkerError::Page {
                method: "run".into(),
                name: "CacheNotKept".into(),
                message: format!(
                    "after {past} + {new} positions the page kept '{first}' with {kept:?} positions"
                ),
            });
        }
        self.past = past + new;
        Ok(PageStep {
            logits,
            run_ms: reply.run_ms,
        })
    }
}

/// The full `logits` of a step's reply.
fn logits_of(reply: &RunReply) -> Result<Vec<f32>, WorkerError> {
    let bad = |message: String| WorkerError::Page {
        method: "run".into(),
        name: "NoLogits".into(),
        message,
    };
    let out = reply
        .outputs
        .get("logits")
        .ok_or_else(|| bad("a generation step's reply has no 'logits'".into()))?;
    out.full()
        .map_err(|e| bad(format!("a generation step's logits: {e}")))
}

fn feed_i64(dims: Vec<i64>, values: &[i64]) -> Feed {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    feed("int64", dims, &bytes)
}

fn feed_f32(dims: Vec<i64>, values: &[f32]) -> Feed {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    feed("float32", dims, &bytes)
}

fn feed(dtype: &'static str, dims: Vec<i64>, bytes: &[u8]) -> Feed {
    Feed {
        dtype,
        dims,
        data_b64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        url: None,
    }
}
