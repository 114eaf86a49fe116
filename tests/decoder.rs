//! SmolLM2's decoder graph, built from its GGUF file, against an independent f32 reference, step
//! by step through its key/value cache (native onnxruntime; no browser). Its own process: the
//! oracle's onnxruntime environment is one per process, and the library's unit tests check what
//! happens before it exists.

use webgpu_pool::generate::model::{architecture, decoder_file, open_weights, Precision};
use webgpu_pool::generate::native::NativeDecoder;
use webgpu_pool::generate::{argmax, top_two_gap};
use webgpu_pool::models::Cache;

/// `<|im_start|>user\nWrite a short story about AI<|im_end|>\n<|im_start|>assistant\n`,
/// as llama.cpp's tokenizer encodes it (llama-cpp-python 0.3.36, `special=True`).
const PROMPT: [u32; 15] = [
    1, 4093, 198, 19161, 253, 1890, 1977, 563, 5646, 2, 198, 1, 520, 9531, 198,
];

/// The five largest logits after [`PROMPT`] and the first greedy tokens, from an
/// independent f32 reference: numpy over the `gguf` package's dequantization, rotating
/// adjacent pairs of the Q/K rows as stored (llama.cpp's layout) where the graph un-permutes
/// the rows and rotates halves, recomputing the whole sequence each step where the graph
/// keeps a cache. llama.cpp itself picks 788 first: it multiplies with 8-bit activations,
/// and 504 leads 788 by 0.11, a near tie.
const TOP5: [(usize, f32); 5] = [
    (504, 27.8499),
    (788, 27.7417),
    (1653, 26.9075),
    (2705, 26.7836),
    (13701, 26.1018),
];

/// The reference's greedy continuation ("The AI had been working tirelessly").
const GREEDY: [u32; 6] = [504, 5646, 761, 719, 1891, 23875];

#[test]
fn smollm2_decoder_matches_an_independent_f32_reference_step_by_step() {
    let cache = Cache::from_env();
    let weights = open_weights(&cache).expect("the SmolLM2 GGUF (run scripts/setup.sh)");
    let cfg = architecture(&weights).unwrap();
    let file = decoder_file(&cache, weights, &cfg, 0..cfg.layers, Precision::F32, None).unwrap();
    let mut d = NativeDecoder::open(
        &cache,
        "smollm2",
        &file.path,
        file.layers.clone(),
        cfg.kv_heads,
        cfg.head_dim(),
        1,
    )
    .unwrap();
    let logits = d.step(&PROMPT).unwrap();
    assert_eq!(logits.len(), cfg.vocab);
    for (id, want) in TOP5 {
        assert!(
            (logits[id] - want).abs() < 1e-3,
            "logit {id}: {} against the reference's {want}",
            logits[id]
        );
    }
    assert!(top_two_gap(&logits) > 0.05);
    let mut tokens = vec![argmax(&logits)];
    for _ in 0..GREEDY.len() - 1 {
        let next = d.step(&tokens[tokens.len() - 1..]).unwrap();
        tokens.push(argmax(&next));
    }
    assert_eq!(tokens, GREEDY);
    assert_eq!(d.past(), PROMPT.len() + GREEDY.len() - 1);
    // A new sequence after reset starts from no past.
    d.reset();
    assert_eq!(argmax(&d.step(&PROMPT).unwrap()), GREEDY[0]);
}
