//! A generation's steps run natively by onnxruntime on the same decoder graph a page runs: the
//! reference every browser token is checked against. The key/value cache is fed back from one
//! step's `present_*` outputs to the next step's `past_*` inputs.
//!
//! Blocking CPU work, like the rest of the oracle. Must not import `pool`, `report` or `cli`.

use std::ops::Range;
use std::path::Path;

use ort::session::Session;
use ort::value::{DynValue, Tensor};

use crate::models::decoder::{
    causal_bias, past_key, past_value, present_key, present_value, ATTENTION_BIAS, POSITION_IDS,
};
use crate::models::Cache;
use crate::oracle::{open_session, OracleError, RunFailure};

/// One layer's cached keys and values, `[1, KV, T, dh]` each.
#[derive(Debug, Clone)]
struct LayerCache {
    dims: Vec<i64>,
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// A whole-model decoder graph (layers `0..L`, ending in `logits`) stepped natively.
#[derive(Debug)]
pub struct NativeDecoder {
    name: String,
    session: Session,
    layers: Range<usize>,
    empty: Vec<i64>,
    cache: Vec<LayerCache>,
}

impl NativeDecoder {
    /// Opens `file`, a decoder graph of `layers` whose caches are `[1, kv_heads, T, head_dim]`,
    /// at `threads` intra-op threads.
    ///
    /// # Errors
    /// [`OracleError`] when onnxruntime or the file does not load.
    pub fn open(
        cache: &Cache,
        name: &str,
        file: &Path,
        layers: Range<usize>,
        kv_heads: usize,
        head_dim: usize,
        threads: usize,
    ) -> Result<Self, OracleError> {
        let session = open_session(cache, name, file, threads)?;
        let empty = vec![1, kv_heads as i64, 0, head_dim as i64];
        Ok(NativeDecoder {
            name: name.to_owned(),
            session,
            cache: layers
                .clone()
                .map(|_| LayerCache {
                    dims: empty.clone(),
                    keys: Vec::new(),
                    values: Vec::new(),
                })
                .collect(),
            layers,
            empty,
        })
    }

    /// Positions already in the cache.
    pub fn past(&self) -> usize {
        self.cache.first().map_or(0, |c| c.dims[2] as usize)
    }

    /// Forgets the cache: the next step starts a new sequence.
    pub fn reset(&mut self) {
        for c in &mut self.cache {
            c.dims.clone_from(&self.empty);
            c.keys.clear();
            c.values.clear();
        }
    }

    /// Runs `ids` (the prompt, or the one token just chosen) after the cached positions and
    /// returns the logits of the last one; the cache grows by `ids.len()`.
    ///
    /// # Errors
    /// [`OracleError::Run`] when a tensor cannot be made or the run fails.
    pub fn step(&mut self, ids: &[u32]) -> Result<Vec<f32>, OracleError> {
        let fail = |failure: RunFailure| OracleError::Run {
            model: self.name.clone(),
            failure,
        };
        let input = |name: &str, e: ort::Error| {
            fail(RunFailure::Input {
                name: name.to_owned(),
                message: e.to_string(),
            })
        };
        let (past, new) = (self.past(), ids.len());
        let mut feeds: Vec<(String, DynValue)> = Vec::new();
        let ids: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
        let t =
            Tensor::from_array((vec![1, new as i64], ids)).map_err(|e| input("input_ids", e))?;
        feeds.push(("input_ids".into(), t.into_dyn()));
        let positions: Vec<i64> = (past..past + new).map(|p| p as i64).collect();
        let t = Tensor::from_array((vec![new as i64], positions))
            .map_err(|e| input(POSITION_IDS, e))?;
        feeds.push((POSITION_IDS.into(), t.into_dyn()));
        let dims = vec![1, 1, new as i64, (past + new) as i64];
        let t = Tensor::from_array((dims, causal_bias(past, new)))
            .map_err(|e| input(ATTENTION_BIAS, e))?;
        feeds.push((ATTENTION_BIAS.into(), t.into_dyn()));
        for (i, c) in self.layers.clone().zip(&self.cache) {
            for (name, data) in [(past_key(i), &c.keys), (past_value(i), &c.values)] {
                let t = Tensor::from_array((c.dims.clone(), data.clone()))
                    .map_err(|e| input(&name, e))?;
                feeds.push((name, t.into_dyn()));
            }
        }
        let outputs = self.session.run(feeds).map_err(|e| {
            fail(RunFailure::Run {
                message: e.to_string(),
            })
        })?;
        let read = |name: &str| -> Result<(Vec<i64>, Vec<f32>), OracleError> {
            let value = outputs.get(name).ok_or_else(|| {
                fail(RunFailure::NoOutput {
                    name: name.to_owned(),
                })
            })?;
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| {
                fail(RunFailure::Output {
                    message: e.to_string(),
                })
            })?;
            Ok((shape.to_vec(), data.to_vec()))
        };
        let (_, logits) = read("logits")?;
        let mut next = Vec::with_capacity(self.cache.len());
        for i in self.layers.clone() {
            let (dims, keys) = read(&present_key(i))?;
            let (_, values) = read(&present_value(i))?;
            next.push(LayerCache { dims, keys, values });
        }
        drop(outputs);
        self.cache = next;
        Ok(logits)
    }
}
