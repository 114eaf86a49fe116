//! The front door stays true: the README is a page a newcomer reads (at most 300 lines, every
//! link resolving), `webgpu-pool --help` fits a screen, and every `webgpu-pool` invocation in
//! the nightly workflow is one the real CLI accepts, so a renamed flag breaks this test and not
//! the nightly job. No browser is launched.

mod common;

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The relative link targets of a Markdown text: `](target)` outside code blocks, without the
/// `#anchor`, skipping URLs and in-page anchors.
fn relative_links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for part in line.split("](").skip(1) {
            let Some(target) = part.split(')').next() else {
                continue;
            };
            let target = target.split('#').next().unwrap_or_default().trim();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            out.push(target.to_string());
        }
    }
    out
}

/// Each link of `file` that names no file or folder, as `file: target`.
fn broken_links(file: &Path) -> Vec<String> {
    let dir = file.parent().unwrap();
    relative_links(&read(file))
        .into_iter()
        .filter(|t| !dir.join(t).exists())
        .map(|t| format!("{}: {t}", file.display()))
        .collect()
}

#[test]
fn the_readme_is_a_front_page_whose_links_resolve() {
    let readme = root().join("README.md");
    let lines = read(&readme).lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; reference goes to docs/"
    );
    let mut files = vec![readme];
    for entry in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            files.push(entry.path());
        }
    }
    let links: usize = files.iter().map(|f| relative_links(&read(f)).len()).sum();
    // The README links its reference pages; none found means the parser is broken.
    assert!(links >= 5, "only {links} links found");
    let broken: Vec<String> = files.iter().flat_map(|f| broken_links(f)).collect();
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
}

#[test]
fn a_link_to_a_missing_file_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.md");
    std::fs::write(dir.path().join("there.md"), "x").unwrap();
    std::fs::write(
        &page,
        "[ok](there.md#a) [web](https://example.com) [gone](docs/gone.md)\n\
         ```\n[in code](not/checked.md)\n```\n",
    )
    .unwrap();
    let broken = broken_links(&page);
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(broken[0].ends_with("docs/gone.md"), "{broken:?}");
}

#[test]
fn top_level_help_fits_thirty_lines_and_commands_explain_themselves() {
    let sb = common::Sandbox::new();
    let out = sb.cmd(30).arg("--help").assert().success();
    let text = common::stdout(&out);
    let lines = text.lines().count();
    assert!(lines <= 30, "--help is {lines} lines:\n{text}");
    assert!(text.contains("run ") && text.contains("stress "), "{text}");
    // The paragraphs left `--help` for `help <command>`: they are there, with examples.
    let out = sb.cmd(30).args(["help", "stress"]).assert().success();
    let long = common::stdout(&out);
    assert!(
        long.contains("SIGKILL") && long.contains("Example: webgpu-pool stress"),
        "{long}"
    );
    sb.assert_clean();
}

/// Every `webgpu-pool` command line in a GitHub Actions workflow's `run:` steps, split into
/// words, with `"$var"` arguments kept as written.
fn invocations(workflow: &str) -> Vec<Vec<String>> {
    let docs = YamlLoader::load_from_str(workflow).expect("the workflow is YAML");
    let mut out = Vec::new();
    let Yaml::Hash(jobs) = &docs[0]["jobs"] else {
        panic!("the workflow has no jobs");
    };
    for job in jobs.values() {
        for step in job["steps"].as_vec().expect("steps") {
            let Some(script) = step["run"].as_str() else {
                continue;
            };
            for line in script.lines() {
                if let Some((_, args)) = line.split_once("webgpu-pool ") {
                    out.push(words(args));
                }
            }
        }
    }
    out
}

/// Shell words of one plain command line (double quotes only; the workflow keeps to that).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Runs one workflow invocation through the real CLI without launching a browser: commands
/// that build a scenario print it (`--print-scenario`: every flag parsed, the scenario
/// validated); the others parse their flags and values and stop at `--help`. Shell variables
/// become a folder in the sandbox. Returns why it was refused, if it was.
fn refused(sb: &common::Sandbox, args: &[String]) -> Option<String> {
    let folder = sb.results().join("2026-12-06T02-00-00Z-0000");
    let mut args: Vec<String> = args
        .iter()
        .map(|a| {
            if a.starts_with('$') {
                folder.display().to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let builds_scenario = ["run", "stress", "shard", "scenario"].contains(&args[0].as_str());
    args.push(
        if builds_scenario {
            "--print-scenario"
        } else {
            "--help"
        }
        .into(),
    );
    let out = sb.cmd(60).args(&args).output().unwrap();
    (!out.status.success()).then(|| {
        format!(
            "webgpu-pool {}: exit {:?}: {}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn every_invocation_in_the_nightly_workflow_is_accepted_and_a_renamed_flag_is_not() {
    let sb = common::Sandbox::new();
    let workflow = read(&root().join(".github/workflows/nightly.yml"));
    let calls = invocations(&workflow);
    let commands: Vec<&str> = calls.iter().map(|c| c[0].as_str()).collect();
    for needed in ["run", "compare", "history"] {
        assert!(commands.contains(&needed), "no `{needed}` in {commands:?}");
    }
    let refusals: Vec<String> = calls.iter().filter_map(|c| refused(&sb, c)).collect();
    assert!(refusals.is_empty(), "{}", refusals.join("\n"));
    // The check can fail: each invocation with its first flag renamed is refused.
    for call in &calls {
        let Some(i) = call.iter().position(|a| a.starts_with("--")) else {
            continue;
        };
        let mut renamed = call.clone();
        renamed[i] = format!("{}-renamed", renamed[i]);
        let why = refused(&sb, &renamed)
            .unwrap_or_else(|| panic!("a renamed flag was accepted: {renamed:?}"));
        assert!(why.contains("-renamed"), "{why}");
    }
    sb.assert_clean();
}
