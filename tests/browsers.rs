//! `webgpu-pool browsers` launches every installed browser for real and reports what it offers.

mod common;

use common::{stdout, Sandbox};

#[test]
fn detects_chromium_and_firefox_with_their_adapters() {
    let sb = Sandbox::new();
    let a = sb.cmd(300).args(["browsers", "--json"]).assert().success();
    let probe: serde_json::Value = serde_json::from_str(&stdout(&a)).expect("JSON");
    let browsers = probe["browsers"].as_array().expect("browsers");
    for kind in ["chromium", "firefox"] {
        let b = browsers
            .iter()
            .find(|b| b["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind} missing: {probe}"));
        assert!(
            b["version"]
                .as_str()
                .unwrap()
                .chars()
                .next()
                .unwrap()
                .is_ascii_digit(),
            "{b}"
        );
        assert_eq!(b["webgpu"]["available"], true, "{kind}: {b}");
        assert!(b["webgpu"]["adapter"]["fallback"].is_boolean(), "{b}");
        assert!(b["webgpu"]["limits"].is_object(), "{b}");
        assert!(b["webnn"]["available"].is_boolean(), "{b}");
        assert_eq!(b["wasm"]["simd"], true, "{b}");
        assert_eq!(b["cross_origin_isolated"], true, "{b}");
    }
    let drivers: Vec<_> = probe["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        drivers.contains(&"geckodriver") && drivers.contains(&"chromedriver"),
        "{drivers:?}"
    );
    sb.assert_clean();

    let a = sb
        .cmd(300)
        .args(["browsers", "--only", "chromium"])
        .assert()
        .success();
    assert!(stdout(&a).contains("chromium"), "{}", stdout(&a));
    sb.assert_clean();
}
