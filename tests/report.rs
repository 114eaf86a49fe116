//! The report files of a real run (real Chromium and Firefox): `run.json` against its checked-in
//! schema, `samples.csv` with one row per request, `junit.xml` parsed, `summary.md`, `report`
//! re-rendering each file byte for byte, and `report.html` opened in real headless Chromium:
//! no console error, no request outside the file, and charts that really drew. Also the faults
//! and recovery sections, rendered from a hand-written stress run with faults
//! (`tests/fixtures/runs/stress-faults`), since a real one takes browsers and minutes.
// See: issue 6 (reports for people and for CI), issue 4 (the fault and recovery report).

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_valid, stderr, stdout, Sandbox};
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions};
use serde_json::Value;
use webgpu_pool::metrics::Sample;
use webgpu_pool::report::svg::PALETTE;

fn only_run_dir(results: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .expect("results dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("run.json").is_file())
        .collect();
    assert_eq!(dirs.len(), 1, "expected one run folder: {dirs:?}");
    dirs.into_iter().next().unwrap()
}

#[test]
fn a_run_writes_every_report_and_each_checks_out() {
    let sb = Sandbox::new();
    let a = sb
        .run(
            &[
                "--models",
                "bert-tiny,vit-micro",
                "--browsers",
                "chromium,firefox",
                "-n",
                "8",
                "--warmup",
                "1",
            ],
            600,
        )
        .success();
    // stderr is a pipe here: progress is plain lines, never bar redraws or colour codes.
    let err = stderr(&a);
    assert!(!err.contains('\u{1b}') && !err.contains('\r'), "{err}");
    assert!(err.contains("launching chromium"), "{err}");
    let dir = only_run_dir(&sb.results());
    for f in [
        "run.json",
        "samples.csv",
        "summary.md",
        "report.html",
        "junit.xml",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }

    // run.json: the contract, against the checked-in schema.
    let run = sb.run_json();
    assert_valid(&run);
    let issued = run["requests"]["issued"].as_u64().unwrap();
    assert_eq!(run["requests"]["lost"], 0);

    // samples.csv: the documented columns, one row per request.
    let csv = std::fs::read_to_string(dir.join("samples.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), Sample::CSV_COLUMNS.join(","));
    assert_eq!(lines.count() as u64, issued, "one row per issued request");
    // 2 models x 2 browsers x (first + 1 warm-up + 8 measured)
    assert_eq!(issued, 40);

    // junit.xml: parses; a testcase per row and per check, none failed.
    let xml = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml is XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: Vec<&str> = cases.iter().filter_map(|c| c.attribute("name")).collect();
    for want in [
        "bert-tiny/chromium/wasm",
        "vit-micro/chromium/wasm",
        "bert-tiny/firefox/wasm",
        "vit-micro/firefox/wasm",
        "lost_requests == 0",
        "run completed",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    assert_eq!(
        cases.len(),
        4 + 2 + run["thresholds"].as_array().unwrap().len()
    );
    assert!(
        !doc.descendants().any(|n| n.has_tag_name("failure")),
        "{xml}"
    );
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("failures"), Some("0"));

    // summary.md: the verdict, the table and the accounting.
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains(": passed"), "{md}");
    assert!(
        md.contains("| bert-tiny | firefox | wasm | seeded |"),
        "{md}"
    );
    assert!(
        md.contains(&format!("**Requests:** {issued} issued")),
        "{md}"
    );
    assert!(md.contains("**Fallbacks**"), "{md}");

    // `report` re-renders each file exactly from run.json + samples.csv.
    for (format, file) in [
        ("json", "run.json"),
        ("csv", "samples.csv"),
        ("md", "summary.md"),
        ("html", "report.html"),
        ("junit", "junit.xml"),
    ] {
        let out = sb
            .cmd(60)
            .args(["report", dir.to_str().unwrap(), "--format", format])
            .assert()
            .success();
        let written = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(
            stdout(&out) == written,
            "report --format {format} differs from {file}"
        );
    }

    // report.html in real headless Chromium.
    let seen = open_in_chromium(&sb, &dir.join("report.html"));
    assert!(
        seen.console_errors.is_empty(),
        "console errors: {:#?}",
        seen.console_errors
    );
    let file_url = format!("file://{}", dir.join("report.html").display());
    let outside: Vec<&String> = seen
        .requests
        .iter()
        .filter(|u| **u != file_url && !u.starts_with("data:"))
        .collect();
    assert!(outside.is_empty(), "requests outside the file: {outside:?}");
    assert!(seen.requests.contains(&file_url), "{:?}", seen.requests);
    // Two CDFs (one per model) with a line per browser, and the throughput chart with the
    // total and one line per browser: 4 + 3 series, each drawn with a real length. Width is
    // data-dependent (a CDF of near-identical latencies is almost vertical), so the check is
    // on height and path length: every series climbs from 0 and has a real line.
    assert_eq!(seen.series.len(), 7, "{:?}", seen.series);
    assert!(
        seen.series
            .iter()
            .all(|&(_, h, len)| h > 20.0 && len > 100.0),
        "{:?}",
        seen.series
    );
    // The screenshot shows them: pixels in the first two series colours, far more than the
    // legend swatches alone could give.
    let (w, h, rgba) = decode_png(&seen.screenshot);
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png"),
        &seen.screenshot,
    )
    .unwrap();
    for hex in &PALETTE[..2] {
        let want = rgb(hex);
        let n = rgba.chunks_exact(4).filter(|p| p[..3] == want).count();
        assert!(
            n > 600,
            "only {n} pixels of {hex} in the {w}x{h} screenshot"
        );
    }
    sb.assert_clean();
}

#[test]
fn report_names_the_missing_or_corrupt_file() {
    let sb = Sandbox::new();
    let dir = sb.dir.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let a = sb
        .cmd(30)
        .args(["report", dir.to_str().unwrap(), "--format", "md"])
        .assert()
        .code(2);
    assert!(stderr(&a).contains("run.json"), "{}", stderr(&a));
    std::fs::write(dir.join("run.json"), "{\"schema_version\": 1, \"run_id\": ").unwrap();
    let a = sb
        .cmd(30)
        .args(["report", dir.to_str().unwrap(), "--format", "html"])
        .assert()
        .code(2);
    let err = stderr(&a);
    assert!(
        err.contains("run.json") && err.contains("not a valid run file"),
        "{err}"
    );
    sb.assert_clean();
}

/// The checked-in stress run with faults: two injected, one skipped, and three recovery events
/// (a migrate and a reset that recovered, and an external failure the rebuild gave up on).
fn stress_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs/stress-faults")
}

// See: issue 4, "done when": issued, succeeded, failed, lost, success rate, faults by kind,
// recovery events by ladder level with detection ms and time-to-recover p50/p95, throughput
// over time.
#[test]
fn the_reports_show_faults_and_recovery() {
    let dir = stress_fixture();
    let run: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_valid(&run);
    let sb = Sandbox::new();
    let report = |format: &str| {
        let out = sb
            .cmd(60)
            .args(["report", dir.to_str().unwrap(), "--format", format])
            .assert()
            .success();
        stdout(&out)
    };

    // summary.md: the section, its tables, and both lists in time order.
    let md = report("md");
    assert!(!md.contains("fault(s) injected"), "{md}");
    let section = &md[md.find("### Faults and recovery").expect("the section")..];
    for want in [
        "24 issued, 23 succeeded, 1 failed, 0 lost, success rate 95.83%, 3 retried (at most 2 attempts)",
        "| fault kind | injected | skipped | recoveries | recovered | detection p50 ms | detection p95 ms | time to recover p50 ms | time to recover p95 ms |",
        "| crash_tab | 1 | 0 | 1 | 1 | 25 | 25 | 675 | 675 |",
        "| hang | 0 | 1 | 0 | 0 | - | - | - | - |",
        "| kill_browser | 1 | 0 | 1 | 1 | 40 | 40 | 1240 | 1240 |",
        "| external | 0 | 0 | 1 | 0 | 5000 | 5000 | - | - |",
        "| reset | 1 | 1 | 25 | 25 | 650 | 650 | 675 | 675 |",
        "| migrate | 1 | 1 | 40 | 40 | 1200 | 1200 | 1240 | 1240 |",
        "| rebuild | 1 | 0 | 5000 | 5000 | - | - | - | - |",
        "| all | 3 | 2 | 40 | 5000 | 650 | 1200 | 675 | 1240 |",
        "- firefox#1: external (detected by timeout at 19.0 s) not recovered, gave up at rebuild after 8000 ms: ",
        "| 3.0 | kill_browser | chromium#1 | yes | SIGKILL to browser pid 4242 |",
        "| 6.0 | hang |  | skipped | skipped: no worker to target (the only live one was recovering) |",
        "| 3.0 | chromium#1 | kill_browser | process_exit | migrate | 40 | 1200 | ok |",
        "| 19.0 | firefox#1 | external | timeout | rebuild | 5000 | 8000 | failed |",
    ] {
        assert!(section.contains(want), "{want}\nnot in\n{section}");
    }
    let order = |s: &str, a: &str, b: &str| s.find(a).unwrap() < s.find(b).unwrap();
    assert!(order(section, "| 3.0 | kill_browser", "| 9.0 | crash_tab"));
    assert!(order(section, "| 9.0 | firefox#1", "| 19.0 | firefox#1"));
    // The accounting line above is unchanged.
    assert!(md.contains("**Requests:** 24 issued, 23 succeeded, 1 failed, 0 lost"));

    // report.html: the same section, and the throughput chart with its markers: the two
    // injected faults (not the skipped one) and the three recoveries.
    let html = report("html");
    assert!(!html.contains("{{") && !html.contains("<script"));
    let faults = html
        .find(r#"<section id="faults">"#)
        .expect("the faults section");
    let throughput = html.find(r#"<section id="throughput">"#).unwrap();
    assert!(faults < throughput);
    let section = &html[faults..throughput];
    for want in [
        "success rate 95.83%, 3 retried (at most 2 attempts)",
        r#"<td>kill_browser</td><td class="num">1</td><td class="num">0</td><td class="num">1</td><td class="num">1</td><td class="num">40</td><td class="num">40</td><td class="num">1240</td><td class="num">1240</td>"#,
        r#"<td>external</td><td class="num">0</td><td class="num">0</td><td class="num">1</td><td class="num bad">0</td>"#,
        r#"<td>all</td><td class="num">3</td><td class="num bad">2</td><td class="num">40</td><td class="num">5000</td><td class="num">650</td><td class="num">1200</td><td class="num">675</td><td class="num">1240</td>"#,
        "Failed recoveries",
        r#"<td class="bad">skipped</td>"#,
        r#"<td class="bad">failed</td>"#,
    ] {
        assert!(section.contains(want), "{want}\nnot in\n{section}");
    }
    let chart = &html[throughput..];
    assert!(chart.contains("<svg"), "no throughput chart");
    assert_eq!(chart.matches(r#"class="marker fault""#).count(), 2);
    assert_eq!(chart.matches(r#"class="marker recovery""#).count(), 3);
    for label in [
        "kill_browser chromium#1",
        "crash_tab firefox#1",
        "chromium#1 migrate recovered",
        "firefox#1 reset recovered",
        "firefox#1 rebuild failed",
    ] {
        assert!(
            chart.contains(&format!("<title>{label}</title>")),
            "{label}"
        );
    }

    // The terminal section (what `run` and `stress` print), from the same run.
    let loaded = webgpu_pool::report::load_run(&dir).unwrap();
    let term = webgpu_pool::report::terminal::render_resilience(&loaded.summary);
    assert!(
        term.starts_with(
            "faults and recovery: 24 issued, 23 succeeded, 1 failed, 0 lost, success rate 95.83%\n"
        ),
        "{term}"
    );
    assert!(
        term.contains("recovery failed: firefox#1: external"),
        "{term}"
    );
    sb.assert_clean();
}

/// What Chromium saw while showing the page.
struct Seen {
    console_errors: Vec<String>,
    requests: Vec<String>,
    /// (bbox width, bbox height, total length) of every `path.series`.
    series: Vec<(f64, f64, f64)>,
    screenshot: Vec<u8>,
}

/// Opens `html` in headless Chromium, with its profile and TMPDIR inside the sandbox, and
/// returns what it saw. The browser is closed (and every process of it killed) before this
/// returns or unwinds, so assertions run on a closed browser.
fn open_in_chromium(sb: &Sandbox, html: &Path) -> Seen {
    let profile = sb.tmp().join("report-profile");
    let tmp = sb.tmp().join("report-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let guard = KillOnDrop(sb.tmp());
    let seen = {
        let browser = Browser::new(LaunchOptions {
            path: Some("/usr/lib/chromium/chromium".into()),
            headless: false,
            sandbox: false,
            window_size: Some((1200, 3200)),
            user_data_dir: Some(profile.clone()),
            idle_browser_timeout: Duration::from_secs(120),
            process_envs: Some(
                [("TMPDIR".to_string(), tmp.display().to_string())]
                    .into_iter()
                    .collect(),
            ),
            args: [
                "--headless=new",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
            ]
            .iter()
            .map(std::ffi::OsStr::new)
            .collect(),
            ..LaunchOptions::default()
        })
        .expect("launch /usr/lib/chromium/chromium");
        let tab = browser.new_tab().expect("tab");
        let console = Arc::new(Mutex::new(Vec::<String>::new()));
        let requests = Arc::new(Mutex::new(Vec::<String>::new()));
        let (c, r) = (console.clone(), requests.clone());
        tab.add_event_listener(Arc::new(move |event: &Event| match event {
            Event::NetworkRequestWillBeSent(e) => {
                r.lock().unwrap().push(e.params.request.url.clone());
            }
            Event::NetworkLoadingFailed(e) => {
                c.lock()
                    .unwrap()
                    .push(format!("loading failed: {:?}", e.params));
            }
            Event::LogEntryAdded(e) => {
                let level = format!("{:?}", e.params.entry.level);
                if level.contains("Error") || level.contains("Warning") {
                    c.lock()
                        .unwrap()
                        .push(format!("{level}: {}", e.params.entry.text));
                }
            }
            Event::RuntimeConsoleAPICalled(e) => {
                let kind = format!("{:?}", e.params.Type);
                if kind.contains("Error") || kind.contains("Assert") || kind.contains("Warning") {
                    c.lock()
                        .unwrap()
                        .push(format!("console {kind}: {:?}", e.params.args));
                }
            }
            Event::RuntimeExceptionThrown(e) => {
                c.lock()
                    .unwrap()
                    .push(format!("exception: {:?}", e.params.exception_details));
            }
            _ => {}
        }))
        .expect("listener");
        tab.enable_log().expect("Log.enable");
        tab.enable_runtime().expect("Runtime.enable");
        let network: headless_chrome::protocol::cdp::Network::Enable =
            serde_json::from_value(serde_json::json!({})).unwrap();
        tab.call_method(network).expect("Network.enable");
        let url = format!("file://{}", html.display());
        tab.navigate_to(&url)
            .and_then(|t| t.wait_until_navigated())
            .expect("open report.html");
        let series = tab
            .evaluate(
                "JSON.stringify([...document.querySelectorAll('svg.chart path.series')].map(p => { const b = p.getBBox(); return [b.width, b.height, p.getTotalLength()]; }))",
                false,
            )
            .expect("evaluate")
            .value
            .and_then(|v| v.as_str().map(str::to_owned))
            .expect("series JSON");
        let series: Vec<(f64, f64, f64)> = serde_json::from_str(&series).unwrap();
        let screenshot = tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .expect("screenshot");
        // Late events (a favicon probe, a blocked load) would arrive by now.
        std::thread::sleep(Duration::from_millis(300));
        let _ = tab.close(false);
        drop(browser);
        let console_errors = console.lock().unwrap().clone();
        let requests = requests.lock().unwrap().clone();
        Seen {
            console_errors,
            requests,
            series,
            screenshot,
        }
    };
    drop(guard);
    seen
}

/// Kills whatever still carries `dir` (Chromium's re-parented crashpad handlers too) and
/// removes the browser's folders under it, also when the test unwinds.
struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let pids = webgpu_pool::browser::process::mentioning(&self.0);
            if pids.is_empty() || std::time::Instant::now() > deadline {
                break;
            }
            for p in pids {
                let _ = webgpu_pool::browser::process::kill(
                    p,
                    webgpu_pool::browser::process::Signal::Kill,
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for d in ["report-profile", "report-tmp"] {
            let _ = std::fs::remove_dir_all(self.0.join(d));
        }
    }
}

fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    buf.truncate(info.buffer_size());
    assert_eq!(
        info.color_type,
        png::ColorType::Rgba,
        "{:?}",
        info.color_type
    );
    (info.width, info.height, buf)
}
