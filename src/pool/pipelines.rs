//! Pipeline placements: a sharded model is its shards in order, each a model of the placement
//! registry served by one worker. [`Pipelines`] owns what the registry does not say: which
//! entries are a pipeline's shards and in what order, the one backend a shard must use, what a
//! failed shard's worker gets (`ShardRecovery`, a step of the recovery ladder), the workers
//! each shard was on before, and each shard's loads. Must not import `report`, `cli` or
//! terminal crates.

use std::sync::{Arc, Mutex};

use crate::backend::Backend;
use crate::recovery::ShardRecovery;

use super::lock;
use super::placements::ModelEntry;

/// One pipeline of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineId(usize);

/// A shard's loads so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardLoads {
    /// Loads (the first, and one per recovery that reloaded it).
    pub loads: u32,
    /// The last load's ms (fetch plus session creation).
    pub last_ms: f64,
    /// The backend it loaded on last.
    pub backend: String,
    /// Threads of onnxruntime-web's wasm backend in the page it loaded on last, as the page
    /// reported.
    pub wasm_threads: Option<u32>,
}

#[derive(Debug)]
struct Pipeline {
    /// The whole model's name.
    model: String,
    shards: Vec<Arc<ModelEntry>>,
    /// Per shard: the one backend it must use, if any.
    backends: Vec<Option<Backend>>,
    recovery: ShardRecovery,
    /// Per shard: the workers that served it before, in order.
    earlier: Vec<Vec<String>>,
    loads: Vec<ShardLoads>,
}

/// The pool's pipelines.
#[derive(Debug, Default)]
pub(super) struct Pipelines {
    all: Mutex<Vec<Pipeline>>,
}

impl Pipelines {
    /// Each pipeline's model and its shards' entry keys, in order.
    pub fn shard_keys(&self) -> Vec<(String, Vec<String>)> {
        lock(&self.all)
            .iter()
            .map(|p| {
                let keys = p.shards.iter().map(|e| e.key().to_string()).collect();
                (p.model.clone(), keys)
            })
            .collect()
    }

    /// Registers the pipeline of `model`: its `shards` (registry entries, in order), each one's
    /// backend, and what a failed shard's worker gets.
    pub fn add(
        &self,
        model: &str,
        shards: Vec<Arc<ModelEntry>>,
        backends: Vec<Option<Backend>>,
        recovery: ShardRecovery,
    ) -> PipelineId {
        let n = shards.len();
        let mut all = lock(&self.all);
        all.push(Pipeline {
            model: model.to_string(),
            shards,
            backends,
            recovery,
            earlier: vec![Vec::new(); n],
            loads: vec![ShardLoads::default(); n],
        });
        PipelineId(all.len() - 1)
    }

    /// Which pipeline and shard `entry` is, if it is a shard.
    pub fn locate(&self, entry: &ModelEntry) -> Option<(PipelineId, usize)> {
        lock(&self.all).iter().enumerate().find_map(|(i, p)| {
            p.shards
                .iter()
                .position(|s| s.key() == entry.key())
                .map(|k| (PipelineId(i), k))
        })
    }

    /// The whole model's name.
    pub fn model(&self, id: PipelineId) -> String {
        lock(&self.all)[id.0].model.clone()
    }

    /// The shards' entries, in order.
    pub fn shards(&self, id: PipelineId) -> Vec<Arc<ModelEntry>> {
        lock(&self.all)[id.0].shards.clone()
    }

    /// What a failed shard's worker gets.
    pub fn recovery(&self, id: PipelineId) -> ShardRecovery {
        lock(&self.all)[id.0].recovery
    }

    /// The backend shard `k` must use, if any.
    pub fn backend(&self, id: PipelineId, k: usize) -> Option<Backend> {
        lock(&self.all)[id.0].backends[k]
    }

    /// Records a load of shard `k`: its ms, backend and the page's wasm thread count.
    pub fn loaded(
        &self,
        id: PipelineId,
        k: usize,
        ms: f64,
        backend: Backend,
        wasm_threads: Option<u32>,
    ) {
        let mut all = lock(&self.all);
        let l = &mut all[id.0].loads[k];
        l.loads += 1;
        l.last_ms = ms;
        l.backend = backend.to_string();
        l.wasm_threads = wasm_threads;
    }

    /// Loads of shard `k` so far: a new one means its page state (a generation's cache) is new.
    pub fn loads(&self, id: PipelineId, k: usize) -> u32 {
        lock(&self.all)[id.0].loads[k].loads
    }

    /// Records that shard `k` left worker `from`.
    pub fn moved(&self, id: PipelineId, k: usize, from: &str) {
        lock(&self.all)[id.0].earlier[k].push(from.to_string());
    }

    /// Per shard: the workers it was on before, and its loads.
    pub fn history(&self, id: PipelineId) -> Vec<(Vec<String>, ShardLoads)> {
        let all = lock(&self.all);
        let p = &all[id.0];
        p.earlier
            .iter()
            .cloned()
            .zip(p.loads.iter().cloned())
            .collect()
    }
}
