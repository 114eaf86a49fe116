//! The one error type of the `models` layer.
//!
//! Inputs: failures from the catalog, the weight readers, the tokenizer and the cache's file I/O.
//! Output: [`ModelError`], whose messages name the model, the path or the bad value.
//! Must not import `cli` or `report`.

use std::path::PathBuf;

/// Everything that can go wrong while resolving, building or caching a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The name is neither a catalog name nor an alias.
    #[error("unknown model '{name}'; known models and aliases: {}", known.join(", "))]
    Unknown {
        /// The name as given.
        name: String,
        /// Every catalog name and alias, in catalog order.
        known: Vec<String>,
    },
    /// A language model named where the catalog's single-pass models go.
    #[error("'{name}' is a language model, not a model cell: it writes text in a scenario's `generation:` block (which `run --models {name}` fills) or with `webgpu-pool generate --model {name}`")]
    LanguageModel {
        /// The name as given.
        name: String,
    },
    /// A model that needs real weights cannot find them in the cache.
    #[error("model '{model}' needs real weights at '{}', which is missing; {hint}", path.display())]
    MissingWeights {
        /// The catalog name of the model.
        model: String,
        /// Where the weights were looked for.
        path: PathBuf,
        /// What to do about it (e.g. "run scripts/setup.sh").
        hint: String,
    },
    /// A file or directory could not be read or written.
    #[error("I/O error on '{}': {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A weights file exists but does not hold what the architecture needs.
    #[error("bad weights in '{}': {message}", path.display())]
    BadWeights {
        /// The weights file.
        path: PathBuf,
        /// What was wrong (tensor name, expected and found shape or dtype).
        message: String,
    },
    /// The tokenizer file could not be loaded or could not encode the input sentence.
    #[error("tokenizer '{}': {message}", path.display())]
    Tokenizer {
        /// The `tokenizer.json` used.
        path: PathBuf,
        /// The tokenizer library's message.
        message: String,
    },
    /// A cached metadata file could not be encoded or decoded.
    #[error("cache metadata '{}': {message}", path.display())]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// The serde message.
        message: String,
    },
    /// A model cannot be cut as asked.
    #[error("cannot shard '{model}': {message}")]
    Shard {
        /// The model.
        model: String,
        /// Why.
        message: String,
    },
}

impl ModelError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds a [`ModelError::BadWeights`] for `path`.
    pub(crate) fn bad_weights(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ModelError::BadWeights {
            path: path.into(),
            message: message.into(),
        }
    }

    /// True when the error is fixed by running `scripts/setup.sh` (weights not fetched yet).
    pub fn is_missing_weights(&self) -> bool {
        matches!(self, ModelError::MissingWeights { .. })
    }
}
