//! Shard graphs compose to the whole model: run by native onnxruntime (as `scripts/setup.sh`
//! installs it), the shards of llama, BERT and whisper chained through their activation give
//! the whole model's output, and a chain with a shard left out does not (so the comparison can
//! fail). One test in its own process: the oracle's environment is process-wide and is created
//! with `TMPDIR` changed for a moment, which must not race other tests' temp files.

use std::ops::Range;

use webgpu_pool::models::{self, layer_parameters, prepare_shards, Cache, HIDDEN_IN};
use webgpu_pool::oracle::{allclose, run_once};

#[test]
fn shards_chained_natively_compose_to_the_whole_model() {
    let lib = Cache::from_env();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().to_path_buf());
    for name in ["llama-micro", "bert-tiny", "whisper-micro"] {
        let spec = models::resolve(name).unwrap();
        let layers = layer_parameters(spec).unwrap().per_layer.len();
        let ranges: Vec<Range<usize>> = (0..layers).map(|i| i..i + 1).collect();
        let s = prepare_shards(spec, &cache, 5, &ranges).unwrap();
        let (dims, whole) = run_once(&lib, &s.whole, &[]).unwrap();
        let chain = |order: &[usize]| {
            let mut out = run_once(&lib, &s.shards[order[0]], &[]).unwrap();
            for &i in &order[1..] {
                let given = [(HIDDEN_IN, out.0.clone(), out.1.clone())];
                out = run_once(&lib, &s.shards[i], &given).unwrap();
            }
            out
        };
        let all: Vec<usize> = (0..layers).collect();
        let (got_dims, got) = chain(&all);
        assert_eq!(got_dims, dims, "{name}");
        let (diff, close) = allclose(&got, &whole);
        assert!(close && diff < 1e-5, "{name}: max abs diff {diff}");
        let skipped: Vec<usize> = all.iter().copied().filter(|&i| i != 1).collect();
        let (_, wrong) = chain(&skipped);
        let (diff, close) = allclose(&wrong, &whole);
        assert!(
            !close,
            "{name}: a chain without layer 1 matched (diff {diff})"
        );
    }
}
