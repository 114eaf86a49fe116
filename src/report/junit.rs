//! `junit.xml`: one testcase per model x browser x backend (failed when the row errored or its
//! output check failed) and one per threshold, plus the request-accounting invariant
//! (`lost == 0`), so CI systems show a run like a test suite.

use std::fmt::Write as _;

use crate::metrics::compare::RunData;
use crate::metrics::{ResultRow, Sample};

use super::template::escape;
use super::{ReportError, Reporter};

/// JUnit XML (the Jenkins/GitLab/GitHub-action-compatible subset).
#[derive(Debug, Clone, Copy)]
pub struct JunitReport;

impl Reporter for JunitReport {
    fn file_name(&self) -> &'static str {
        "junit.xml"
    }

    fn render(&self, run: RunData<'_>) -> Result<Vec<u8>, ReportError> {
        Ok(render(run).into_bytes())
    }
}

struct Case {
    class: String,
    name: String,
    time_s: f64,
    failure: Option<(&'static str, String)>,
    out: String,
}

fn row_case(r: &ResultRow, samples: &[Sample]) -> Case {
    let backend = if r.backend.is_empty() {
        "none"
    } else {
        &r.backend
    };
    let busy_ms: f64 = samples
        .iter()
        .filter(|s| s.model == r.model && s.browser == r.browser && s.backend == r.backend)
        .fold(0.0, |t, s| t + s.service_ms);
    let failure = match &r.error {
        Some(e) => Some(("error", e.clone())),
        None if !r.correctness.passed => Some((
            "correctness",
            format!(
                "output check {} failed: {}",
                r.correctness.check, r.correctness.detail
            ),
        )),
        None => None,
    };
    Case {
        class: format!("webgpu-pool.{}", r.browser),
        name: format!("{}/{}/{backend}", r.model, r.browser),
        time_s: (r.load_ms + busy_ms) / 1000.0,
        failure,
        out: format!(
            "runs {}, warm p50 {:.2} ms, p95 {:.2} ms, {:.2} runs/s, check {} (max abs diff {:e})",
            r.runs,
            r.latency_ms.p50,
            r.latency_ms.p95,
            r.throughput_per_s,
            r.correctness.check,
            r.correctness.max_abs_diff
        ),
    }
}

fn suite(out: &mut String, name: &str, cases: &[Case]) {
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let time = cases.iter().fold(0.0, |t, c| t + c.time_s);
    let _ = writeln!(
        out,
        r#"  <testsuite name="{}" tests="{}" failures="{failures}" errors="0" skipped="0" time="{time:.3}">"#,
        escape(name),
        cases.len()
    );
    for c in cases {
        let _ = write!(
            out,
            r#"    <testcase classname="{}" name="{}" time="{:.3}">"#,
            escape(&c.class),
            escape(&c.name),
            c.time_s
        );
        if let Some((kind, message)) = &c.failure {
            let _ = write!(
                out,
                r#"<failure type="{kind}" message="{}">{}</failure>"#,
                escape(message),
                escape(message)
            );
        }
        if !c.out.is_empty() {
            let _ = write!(out, "<system-out>{}</system-out>", escape(&c.out));
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n");
}

fn render(run: RunData<'_>) -> String {
    let s = run.summary;
    let rows: Vec<Case> = s.results.iter().map(|r| row_case(r, run.samples)).collect();
    let q = &s.requests;
    let mut checks = vec![
        Case {
            class: "webgpu-pool.run".into(),
            name: "run completed".into(),
            time_s: 0.0,
            failure: match (&s.stopped_early, s.complete) {
                (Some(why), _) => Some(("stopped", format!("the run stopped early: {why}"))),
                (None, false) => {
                    Some(("stopped", "the run did not finish its workload".to_string()))
                }
                (None, true) => None,
            },
            out: String::new(),
        },
        Case {
            class: "webgpu-pool.requests".into(),
            name: "lost_requests == 0".into(),
            time_s: 0.0,
            failure: (q.lost > 0).then(|| {
                (
                    "threshold",
                    format!("{} request(s) neither succeeded nor failed", q.lost),
                )
            }),
            out: format!(
                "{} issued, {} succeeded, {} failed, {} lost",
                q.issued, q.succeeded, q.failed, q.lost
            ),
        },
    ];
    if let Some(sh) = &s.sharding {
        let c = &sh.correctness;
        checks.push(Case {
            class: "webgpu-pool.sharding".into(),
            name: format!("{} sharded answers match the unsharded model", sh.model),
            time_s: 0.0,
            failure: (!sh.passed()).then(|| ("output", super::view::problem_notes(s).join("; "))),
            out: format!(
                "{} of {} within atol {:.0e} (max abs diff {:.2e})",
                c.checked - c.mismatched,
                c.checked,
                c.atol,
                c.max_abs_diff
            ),
        });
    }
    checks.extend(s.thresholds.iter().map(|t| Case {
        class: "webgpu-pool.thresholds".into(),
        name: t.name.clone(),
        time_s: 0.0,
        failure: (!t.passed).then(|| {
            (
                "threshold",
                format!("{} = {} exceeds the limit {}", t.name, t.value, t.limit),
            )
        }),
        out: format!("value {}, limit {}", t.value, t.limit),
    }));
    let all = rows.len() + checks.len();
    let failures = rows
        .iter()
        .chain(&checks)
        .filter(|c| c.failure.is_some())
        .count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        r#"<testsuites name="webgpu-pool {}" tests="{all}" failures="{failures}" errors="0">"#,
        escape(&s.run_id)
    );
    suite(&mut out, "results", &rows);
    suite(&mut out, "thresholds", &checks);
    out.push_str("</testsuites>\n");
    out
}
