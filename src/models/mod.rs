//! Models: the catalog, the ONNX writer and graph builders, weight sources, input generators
//! and golden outputs.
//!
//! Flow: [`resolve`] a user name to a [`ModelSpec`], then [`prepare`] it against a [`Cache`]:
//! that writes (or reuses) an exact-architecture ONNX graph with real or seeded weights plus
//! raw input files, and returns a [`PreparedModel`] for the page to load and run.
//! Nothing here touches a browser or the network. Must not import `cli`, `report` or `pool`.
//!
//! Files: `onnx` (protobuf messages), `graph` (builder), `blocks` (transformer pieces),
//! `bert`/`vit`/`whisper`/`llama` (architectures), `weights` + `rng` (seeded),
//! `safetensors_source` and `ct2_source` (real checkpoints), `text`/`image`/`audio` (inputs),
//! `cache`, `golden`, `catalog`, `prepare`, `shard` (a layer range as its own graph), `gguf` (a
//! GGUF file: reader, weight source, tokenizer, chat template) and `decoder` (the llama decoder
//! with a key/value cache, for generation).

mod audio;
mod bert;
mod blocks;
pub(crate) mod cache;
mod catalog;
mod ct2_source;
pub mod decoder;
mod error;
pub mod gguf;
mod golden;
mod graph;
mod image;
mod llama;
mod onnx;
mod prepare;
mod safetensors_source;
mod shard;
mod text;
mod vit;
mod weights;
mod whisper;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use bert::BertConfig;
pub use cache::Cache;
pub use catalog::{
    catalog, is_language_model, resolve, Arch, ModelSpec, WeightPlan, LANGUAGE_MODELS,
};
pub use error::ModelError;
pub use golden::{Golden, GoldenCheck};
pub use llama::LlamaConfig;
pub use prepare::{prepare, WRITER_VERSION};
pub use shard::{
    layer_parameters, prepare_shards, shard_id, LayerParameters, ShardedModel, HIDDEN_IN,
    HIDDEN_OUT,
};
pub use vit::VitConfig;
pub use weights::{Q4Blocks, Q4_BLOCK};
pub use whisper::WhisperConfig;

/// What a model does; decides routing preferences and which input generator feeds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Sentence or token embeddings from text.
    TextEmbedding,
    /// Image classification.
    Vision,
    /// Audio encoding.
    Audio,
    /// Next-token logits.
    TextGeneration,
}

impl Task {
    /// The snake_case name used in reports and scenarios.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::TextEmbedding => "text_embedding",
            Task::Vision => "vision",
            Task::Audio => "audio",
            Task::TextGeneration => "text_generation",
        }
    }
}

/// Whether a prepared model carries a real checkpoint or seeded values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsKind {
    /// A trained checkpoint shipped in a registry package.
    Real,
    /// Deterministic N(0, 0.02) values at the exact architecture.
    Seeded,
}

impl WeightsKind {
    /// `"real"` or `"seeded"`.
    pub fn as_str(self) -> &'static str {
        match self {
            WeightsKind::Real => "real",
            WeightsKind::Seeded => "seeded",
        }
    }
}

/// Element type of a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 64-bit signed integers (token ids, masks).
    Int64,
    /// 32-bit floats (pixels, log-mel features).
    Float32,
}

impl DType {
    /// `"int64"` or `"float32"`, as onnxruntime-web names tensor types.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::Int64 => "int64",
            DType::Float32 => "float32",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Int64 => 8,
            DType::Float32 => 4,
        }
    }
}

/// One input tensor stored as a raw little-endian file next to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedInput {
    /// The graph input name, e.g. `input_ids`.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Static shape.
    pub dims: Vec<i64>,
    /// The raw little-endian file inside [`Cache::models_dir`].
    pub file: PathBuf,
}

/// A model written to the cache and ready for the page to load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedModel {
    /// Catalog name.
    pub name: String,
    /// Task type.
    pub task: Task,
    /// Real or seeded parameters.
    pub weights: WeightsKind,
    /// Where the weights came from, and why (e.g. why a real checkpoint was not used).
    pub weights_note: String,
    /// The ONNX file inside [`Cache::models_dir`].
    pub onnx_file: PathBuf,
    /// Its size in bytes.
    pub onnx_bytes: u64,
    /// Learned parameters in the graph.
    pub parameters: u64,
    /// Input tensors, in graph order.
    pub inputs: Vec<PreparedInput>,
    /// The graph output the harness reads.
    pub output_name: String,
    /// How the inputs were made (sentence and tokenizer, synthetic picture, synthesised audio).
    pub input_note: String,
    /// Expected output for models with real weights.
    pub golden: Option<Golden>,
    /// Inputs given with each run instead of read from a file (a shard's incoming activation).
    #[serde(default)]
    pub runtime_inputs: Vec<RuntimeInput>,
}

/// An input the caller supplies with every run (a shard's activation from the shard before it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeInput {
    /// The graph input name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape (with [`RuntimeInput::dynamic`], the first run's shape).
    pub dims: Vec<i64>,
    /// Each run may give other dims of the same rank (a generation's growing cache).
    #[serde(default)]
    pub dynamic: bool,
}
