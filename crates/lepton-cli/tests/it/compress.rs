//! `lepton compress` (issue 16): the gate refuses a compression that breaks the model and writes
//! nothing, bad input is a clear error, and an int8 package serves unchanged with its precision
//! in `/v1/models`.

use std::time::Duration;

use crate::end_to_end::trained;
use crate::support::{lepton_in, s, Server};

#[test]
fn the_gate_refuses_99_percent_pruning_and_writes_no_package() {
    let run = trained();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("broken.photon");
    let r = lepton_in(
        dir.path(),
        &["compress", s(run), "-o", s(&out), "--prune", "0.99"],
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("the gate refused") && r.stderr.contains("max-drop = 0.5"),
        "{r:?}"
    );
    assert!(!out.exists(), "a refused compression must write no package");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("compress/broken.json")).unwrap())
            .unwrap();
    assert_eq!(report["accepted"], false);
    assert_eq!(report["written"], false);
    assert!(run.join("compress/broken.md").is_file());
}

#[test]
fn bad_compress_input_is_a_clear_error() {
    let run = trained();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.photon");
    let r = lepton_in(
        dir.path(),
        &["compress", s(run), "-o", s(&out), "--prune", "1.0"],
    );
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("prune") && r.stderr.contains("outside [0, 1)"),
        "{r:?}"
    );
    let r = lepton_in(dir.path(), &["compress", s(run), "-o", s(&out)]);
    assert!(r.stderr.contains("nothing to do"), "{r:?}");
    assert!(!out.exists());
}

#[test]
fn an_int8_package_serves_unchanged_and_reports_its_precision() {
    let dir = tempfile::tempdir().unwrap();
    let (out, j) = compress_iris_int8(dir.path(), &[]);
    assert_eq!(j["after"]["precision"], "int8", "{j}");
    assert!(out.is_file());
    // Next to OUT for a .photon input.
    assert!(dir.path().join("iris-int8.compress.json").is_file());
    // Compressing it again: already int8.
    let again = lepton_in(
        dir.path(),
        &["compress", s(&out), "-o", "x.photon", "--quantize", "int8"],
    );
    assert!(again.stderr.contains("already int8"), "{again:?}");

    let server = Server::start(dir.path(), &["serve", s(&out)], Duration::from_secs(30));
    let base = server.base.clone();
    let models: serde_json::Value = serde_json::from_str(
        &ureq::get(&format!("{base}/v1/models"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(models["data"][0]["precision"], "int8", "{models}");
    let body = serde_json::json!({"instances": [{"sepal_length": 5.1, "sepal_width": 3.5,
        "petal_length": 1.4, "petal_width": 0.2}]});
    let text = ureq::post(&format!("{base}/v1/models/iris-int8/predict"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(text.contains("setosa"), "{text}");
}

#[test]
fn per_layer_calibration_and_the_bias_correction_switch_reach_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let (out, j) = compress_iris_int8(
        dir.path(),
        &["--calibration", "per-layer", "--no-bias-correction"],
    );
    // The report file keeps the settings the compression ran with.
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("iris-int8.compress.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["config"]["calibration"], "per-layer", "{report}");
    assert_eq!(report["config"]["bias-correction"], false, "{report}");
    let detail = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "quantize")
        .expect("a quantize step")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("calibration per layer"), "{detail}");
    assert!(out.is_file());
}

/// `lepton --json compress` of the trained iris photon to `dir/iris-int8.photon` as static int8
/// (64 calibration samples, a lenient gate) with `extra` flags: the package path and the JSON.
fn compress_iris_int8(
    dir: &std::path::Path,
    extra: &[&str],
) -> (std::path::PathBuf, serde_json::Value) {
    let run = trained();
    let out = dir.join("iris-int8.photon");
    let model = run.join("model.photon");
    let mut args = vec![
        "--json",
        "compress",
        s(&model),
        "-o",
        s(&out),
        "--quantize",
        "int8",
        "--calibration-samples",
        "64",
        "--max-drop",
        "10",
    ];
    args.extend_from_slice(extra);
    let j = lepton_in(dir, &args).success().json();
    (out, j)
}
