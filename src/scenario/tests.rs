//! Unit tests of the scenario module: built-ins, round trips, the schema file, messages, fuzzing.

use std::time::Duration;

use super::*;
use crate::browser::BrowserKind;
use crate::faults::Kind;

fn load(text: &str) -> Result<Scenario, Vec<ScenarioError>> {
    load_str("t.yaml", text)
}

fn first_error(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(errs) => errs[0].to_string(),
    }
}

#[test]
fn every_builtin_is_valid_and_named_after_its_file() {
    for name in BUILTINS {
        let text = builtin(name).unwrap();
        assert!(text.starts_with("# "), "{name} needs a comment header");
        let s = load_str(name, text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(&s.name, name);
    }
    assert!(builtin("nope").is_none());
}

#[test]
fn default_is_valid_once_models_are_given() {
    let mut s = Scenario::default();
    let errs = s.validate().unwrap_err();
    assert_eq!(errs[0].path(), "models");
    assert!(errs[0].file().is_none());
    s.models.push(ModelEntry::named("bert"));
    s.validate().unwrap();
}

#[test]
fn a_sharded_scenario_round_trips_and_runs_only_its_model() {
    let mut s = Scenario {
        models: vec![ModelEntry::named("llama")],
        ..Scenario::default()
    };
    s.pool.max_connections = 3;
    s.sharding = Some(Sharding {
        model: "llama".into(),
        shards: Some(2),
        strategy: ShardStrategy::CostBalanced,
        recovery: ShardRecovery::FullRetry,
        memory_budget_mib: Some(64),
        workers: Vec::new(),
        transfer: ShardTransfer::Server,
    });
    s.faults
        .push(Fault::at(Kind::KillBrowser, Duration::from_secs(2)));
    s.faults[0].target = FaultTarget::Shard(1);
    s.validate().unwrap();
    let text = to_yaml(&s);
    assert_eq!(load_str("printed", &text).unwrap(), s, "{text}");

    let mut two = s.clone();
    two.models.push(ModelEntry::named("bert"));
    let errs = two.validate().unwrap_err();
    assert!(errs.iter().any(|e| e.path() == "models"), "{errs:?}");
    let mut far = s.clone();
    far.faults[0].target = FaultTarget::Shard(2);
    let errs = far.validate().unwrap_err();
    assert!(
        errs.iter().any(|e| e.path() == "faults[0].target.shard"),
        "{errs:?}"
    );
    let mut slow = s.clone();
    slow.faults[0].kind = Kind::Slow.into();
    let errs = slow.validate().unwrap_err();
    assert!(
        errs.iter().any(|e| e.path() == "faults[0].kind"),
        "{errs:?}"
    );
    // Heartbeats watch a pipeline's workers as any other; idle workers are never closed.
    let mut beats = s.clone();
    beats.pool.heartbeat_interval = Duration::from_secs(1);
    beats.validate().unwrap();
    let mut idle = s.clone();
    idle.pool.idle_timeout = Duration::from_secs(5);
    let errs = idle.validate().unwrap_err();
    assert!(
        errs.iter().any(|e| e.path() == "pool.idle_timeout"),
        "{errs:?}"
    );
    let mut unsharded = s;
    unsharded.sharding = None;
    let errs = unsharded.validate().unwrap_err();
    assert!(
        errs.iter().any(|e| e.path() == "faults[0].target.shard"),
        "{errs:?}"
    );
}

#[test]
fn builtins_and_a_full_scenario_round_trip_through_yaml() {
    for name in BUILTINS {
        let s = load_str(name, builtin(name).unwrap()).unwrap();
        let text = to_yaml(&s);
        let back = load_str("printed", &text).unwrap_or_else(|e| panic!("{text}\n{e:?}"));
        assert_eq!(back, s, "{text}");
    }
    let mut s = Scenario {
        description: Some("quotes \" and: colons # and hashes\nnew line".into()),
        ..Scenario::default()
    };
    s.models = vec![ModelEntry::named("llama-tiny"), ModelEntry::named("x")];
    s.models[1].name = "vit".into();
    s.models[1].browser = Some(BrowserKind::Chromium);
    s.workload.rate = Some(2.5);
    s.workload.mode = WorkloadMode::Open;
    s.faults
        .push(Fault::at(Kind::Slow, Duration::from_millis(1500)));
    s.faults[0].delay = Some(Duration::from_millis(250));
    s.faults[0].target = FaultTarget::Model("vit".into());
    s.state = Some(StateSync::default());
    s.thresholds.p95_ms.insert("vit".into(), 12.5);
    s.thresholds.error_rate = Some(0.0);
    s.validate().unwrap();
    let text = to_yaml(&s);
    assert_eq!(load_str("printed", &text).unwrap(), s, "{text}");
    assert!(text.contains("\nworkload:\n  mode: open\n"), "{text}");
    assert!(
        text.contains("\nfaults:\n  - kind: slow\n    at: 1500ms\n"),
        "{text}"
    );
    assert!(text.contains(
        "  preferences: {audio: firefox, vision: chromium, text_embedding: chromium-shell}\n"
    ));
}

#[test]
fn schema_file_matches_the_types() {
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&json_schema()).unwrap()
    );
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/scenario.schema.json");
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas")).unwrap();
        std::fs::write(path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schemas/scenario.schema.json is stale; regenerate with \
         UPDATE_SCHEMA=1 cargo test --lib scenario::tests::schema_file_matches_the_types"
    );
}

#[test]
fn messages_name_file_line_col_path_and_value() {
    let e = first_error("models: [{name: bert}]\nworkload:\n  concurrency: 2\n  duration: 30\n");
    assert_eq!(
        e,
        "t.yaml:4:13: workload.duration: '30' has no unit; write it like 30s or 5m"
    );
    let e = first_error("models: [{name: bert}]\npool:\n  browsrs: [chromium]\n");
    assert!(
        e.starts_with("t.yaml:3:3: pool.browsrs: unknown key 'browsrs'; expected one of:"),
        "{e}"
    );
    let e = first_error("models:\n  - name: bert\n  - name: gpt5\n");
    assert!(
        e.starts_with("t.yaml:3:11: models[1].name: unknown model 'gpt5'"),
        "{e}"
    );
    let e = first_error("models: [{name: bert}]\npool: {browsers: [safari]}\n");
    assert!(
        e.starts_with("t.yaml:2:19: pool.browsers[0]: unknown value 'safari'"),
        "{e}"
    );
}

#[test]
fn semantic_errors_are_all_reported() {
    let text = "models: []\npool: {min_connections: 5, max_connections: 2}\n\
                workload: {concurrency: 0, duration: 10s, iterations: 5, request_timeout: 2s, \
                run_timeout: 3s}\n";
    let errs = load(text).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(ScenarioError::path).collect();
    for p in [
        "models",
        "pool.min_connections",
        "workload.concurrency",
        "workload.iterations",
        "workload.run_timeout",
    ] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    assert!(errs.iter().all(|e| e.line() > 0 && e.is_invalid()));
}

#[test]
fn fault_targets_and_shorthand_enums_parse() {
    let s = load(
        "models: [{name: whisper}]\nworkload: {duration: 60s}\nfaults:\n\
         - {kind: hang, at: 5s, target: random}\n\
         - {kind: kill_browser, rate: 2, target: {model: whisper}}\n",
    )
    .unwrap();
    assert_eq!(s.faults[0].target, FaultTarget::Random);
    assert_eq!(s.faults[1].target, FaultTarget::Model("whisper".into()));
    assert_eq!(s.faults[1].rate, Some(2.0));
}

#[test]
fn random_is_a_choice_of_kinds_not_a_kind() {
    let s = load(
        "models: [{name: whisper}]\npool: {placement: routed}\nworkload: {duration: 60s}\n\
         faults:\n- {kind: random, every: 5s, kinds: [hang, slow]}\n- {kind: hang, at: 5s}\n",
    )
    .unwrap();
    assert_eq!(s.faults[0].kind, FaultChoice::Random);
    assert_eq!(s.faults[0].kinds, [Kind::Hang, Kind::Slow]);
    assert_eq!(s.faults[1].kind, FaultChoice::One(Kind::Hang));
    let text = to_yaml(&s);
    assert!(text.contains("  - kind: random\n"), "{text}");
    assert!(text.contains("    kinds: [hang, slow]\n"), "{text}");
    assert_eq!(load_str("printed", &text).unwrap(), s);
    // A bad name lists every name `kind:` takes, at the value, in both keys.
    let names = "kill_browser, crash_tab, hang, gpu_device_lost, kill_driver, disconnect, \
                 slow, page_error, corrupt_answer, random";
    let e = first_error("models: [{name: bert}]\nfaults:\n- {kind: explode, at: 5s}\n");
    assert_eq!(
        e,
        format!("t.yaml:3:10: faults[0].kind: unknown value 'explode'; expected one of: {names}")
    );
    let e = first_error(
        "models: [{name: bert}]\nfaults:\n- {kind: random, every: 5s, kinds: [hang, explode]}\n",
    );
    assert_eq!(
        e,
        format!(
            "t.yaml:3:43: faults[0].kinds[1]: unknown value 'explode'; expected one of: {names}"
        )
    );
    // `random` is no kind to draw: refused at the item.
    let e = first_error(
        "models: [{name: bert}]\nfaults:\n- {kind: random, every: 5s, kinds: [hang, random]}\n",
    );
    assert_eq!(
        e,
        "t.yaml:3:43: faults[0].kinds[1]: 'random' cannot be one of the kinds random draws from"
    );
}

/// Small xorshift so the fuzz test needs no extra crate and is reproducible.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_mutations_of_the_builtins_never_panic() {
    const BYTES: &[u8] = b" \t\n:-[]{},#&*!|>'\"%@`0123456789.smhxyz\xff\xc3";
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    // FUZZ_ROUNDS=100000 for a longer run.
    let rounds: usize = std::env::var("FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    for name in BUILTINS {
        let base = builtin(name).unwrap().as_bytes();
        for _ in 0..rounds {
            let mut bytes = base.to_vec();
            for _ in 0..(1 + next(&mut state) % 4) {
                let at = (next(&mut state) as usize) % bytes.len();
                let b = BYTES[(next(&mut state) as usize) % BYTES.len()];
                match next(&mut state) % 3 {
                    0 => bytes[at] = b,
                    1 => bytes.insert(at, b),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Err(errs) = load_str(name, &text) {
                assert!(!errs.is_empty());
                for e in errs {
                    assert!(e.to_string().starts_with(name), "{e}");
                }
            }
        }
    }
}

#[test]
fn standbys_need_workers_a_recovering_routed_pool_and_memory() {
    let mut s = Scenario::default();
    s.models.push(ModelEntry::named("bert"));
    s.pool.max_connections = 3;
    s.pool.standbys = Some(2);
    s.validate().unwrap();
    let paths = |s: &Scenario| -> Vec<String> {
        s.validate()
            .unwrap_err()
            .iter()
            .map(|e| e.path().to_string())
            .collect()
    };
    let mut crowded = s.clone();
    crowded.pool.standbys = Some(3);
    assert_eq!(paths(&crowded), ["pool.standbys"]);
    let mut unrecovered = s.clone();
    unrecovered.recovery.strategy = RecoveryStrategy::None;
    assert_eq!(paths(&unrecovered), ["pool.standbys"]);
    let mut broke = s.clone();
    broke.pool.standby_memory_mib = Some(0);
    assert_eq!(paths(&broke), ["pool.standby_memory_mib"]);
    // Off is always fine.
    s.pool.standbys = Some(0);
    s.recovery.strategy = RecoveryStrategy::None;
    s.validate().unwrap();
}

#[test]
fn a_generation_block_runs_in_the_matrix_and_a_routed_pool_not_a_sharded_run() {
    let s = load("pool: {placement: matrix}\ngeneration: {model: SmolLM2, max_new_tokens: 4}\n")
        .expect("a generation cell alone is a scenario");
    let g = s.generation.expect("the block");
    assert_eq!((g.prompts.len(), g.max_new_tokens), (2, 4));
    load(
        "pool: {placement: routed, max_connections: 2}\nmodels: [{name: bert-tiny}]\n\
         generation: {model: smollm2}\nfaults: [{kind: kill_browser, at: 5s}]\n",
    )
    .expect("generation requests in a routed pool, under faults");
    let e = first_error(
        "models: [{name: llama-tiny}]\nsharding: {model: llama-tiny, shards: 2}\n\
         generation: {model: smollm2}\n",
    );
    assert!(
        e.contains("generation: generations in a sharded run") && e.contains("not built yet"),
        "{e}"
    );
    let e = first_error("pool: {placement: matrix}\ngeneration: {model: bert}\n");
    assert!(
        e.contains("generation.model: 'bert' is not a language model; one of: smollm2"),
        "{e}"
    );
    let e =
        first_error("pool: {placement: matrix}\ngeneration: {model: smollm2, max_new_tokens: 0}\n");
    assert!(
        e.contains("generation.max_new_tokens: '0' is out of range"),
        "{e}"
    );
    let e = first_error("pool: {placement: matrix}\ngeneration: {model: smollm2, prompts: []}\n");
    assert!(
        e.contains("generation.prompts: the prompt list is empty"),
        "{e}"
    );
    // As a model cell it is named for what it is.
    let e = first_error("models: [{name: smollm2}]\n");
    assert!(
        e.contains("models[0].name: 'smollm2' is a language model"),
        "{e}"
    );
}
