//! The malformed-scenario corpus, through the library (`scenario::load_file`).
//!
//! Each file in `tests/fixtures/scenarios/bad/` starts with `# expect: <key path>` and
//! `# line: N`; loading it must fail with an error whose Display starts with `<file>:N:<col>:`
//! and names that key path, and must not panic. Files in `good/` must load.
// See: issue 3 (scenarios and the pool engine).

use std::path::{Path, PathBuf};

use webgpu_pool::scenario::{self, ScenarioError};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scenarios")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn header(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
        .unwrap_or_else(|| panic!("missing '# {key}:' header"))
        .trim()
        .to_owned()
}

fn matches(e: &ScenarioError, file: &str, line: usize, path: &str) -> bool {
    let shown = e.to_string();
    let prefix = format!("{file}:{line}:");
    let Some(rest) = shown.strip_prefix(&prefix) else {
        return false;
    };
    let col_ok = rest
        .split_once(':')
        .is_some_and(|(col, _)| col.parse::<usize>().is_ok_and(|c| c >= 1));
    col_ok && e.path() == path && shown.contains(&format!(": {path}: "))
}

#[test]
fn every_bad_scenario_names_file_line_col_and_key_path() {
    let files = fixtures("bad");
    assert!(files.len() >= 30, "only {} bad fixtures", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let (path, line) = (header(&text, "expect"), header(&text, "line"));
        let line: usize = line.parse().unwrap();
        let shown = file.display().to_string();
        let result = std::panic::catch_unwind(|| scenario::load_file(file));
        match result {
            Err(_) => failures.push(format!("{shown}: panicked")),
            Ok(Ok(_)) => failures.push(format!("{shown}: loaded without error")),
            Ok(Err(errs)) => {
                if std::env::var_os("SHOW_SCENARIO_ERRORS").is_some() {
                    for e in &errs {
                        eprintln!("{e}");
                    }
                }
                if !errs.iter().any(|e| matches(e, &shown, line, &path)) {
                    let got: Vec<String> = errs.iter().map(|e| format!("  {e}")).collect();
                    failures.push(format!(
                        "{shown}: want line {line} and path '{path}', got:\n{}",
                        got.join("\n")
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_good_scenario_loads() {
    for file in fixtures("good") {
        if let Err(errs) = scenario::load_file(&file) {
            let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
            panic!("{}:\n{}", file.display(), got.join("\n"));
        }
    }
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let errs = scenario::load_file(Path::new("tests/fixtures/scenarios/nope.yaml")).unwrap_err();
    assert!(errs[0].is_io(), "{:?}", errs[0]);
    assert!(errs[0]
        .to_string()
        .starts_with("tests/fixtures/scenarios/nope.yaml: "));
}

#[test]
fn the_builtins_load_from_their_files_too() {
    for name in scenario::BUILTINS {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("scenarios/{name}.yaml"));
        let from_file = scenario::load_file(&file).unwrap();
        let compiled = scenario::load_str(name, scenario::builtin(name).unwrap()).unwrap();
        assert_eq!(from_file, compiled);
    }
}
