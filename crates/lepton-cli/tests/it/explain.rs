//! `lepton explain`: the files of each method for an image photon (JSON with its self-checks, a
//! heatmap PNG), feature maps of a named layer, kernel SHAP and permutation importance on the
//! iris run, and errors that name the flag.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use lepton_data::Preprocessor;
use lepton_nn::{LossSpec, Model, ModelSpec};
use lepton_photon::{Photon, PhotonContents};
use serde_json::{json, Value};

use crate::end_to_end::trained;
use crate::support::{lepton_in, s};

/// A random-weight 1x8x8 CNN photon with three classes and an 8x8 PNG to explain.
fn image_model(dir: &Path) {
    let spec: ModelSpec = toml::from_str(
        r#"layers = [
            { type = "conv2d", out-channels = 4, kernel = 3, padding = 1 }, { type = "relu" },
            { type = "max-pool2d", kernel = 2 }, { type = "flatten" }, { type = "linear", out-features = 3 },
        ]"#,
    )
    .unwrap();
    let varmap = VarMap::new();
    Model::new(
        &spec,
        &[1, 8, 8],
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    lepton_nn::init_seeded(&varmap, 7).unwrap();
    let weights: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let contents = PhotonContents {
        name: "img".into(),
        model: spec,
        input_shape: vec![1, 8, 8],
        loss: LossSpec::default(),
        preprocessor: Preprocessor::Image {
            channels: 1,
            height: 8,
            width: 8,
            mean: vec![0.5],
            std: vec![0.25],
            class_names: vec!["a".into(), "b".into(), "c".into()],
        },
        metrics: json!({}),
    };
    Photon::write(&dir.join("img.photon"), &contents, &weights).unwrap();
    image::GrayImage::from_fn(8, 8, |x, y| image::Luma([((x * 31 + y * 17) % 256) as u8]))
        .save(dir.join("digit.png"))
        .unwrap();
}

fn read(p: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

#[test]
fn explain_writes_json_and_heatmaps_for_each_image_method() {
    let dir = tempfile::tempdir().unwrap();
    image_model(dir.path());
    for (method, extra) in [
        ("saliency", vec![]),
        ("gradient-x-input", vec![]),
        (
            "integrated-gradients",
            vec!["--steps", "128", "--baseline", "blur"],
        ),
        ("occlusion", vec!["--window", "2", "--stride", "2"]),
    ] {
        let mut args = vec![
            "--json",
            "explain",
            "img.photon",
            "digit.png",
            "--method",
            method,
        ];
        args.extend(extra);
        lepton_in(dir.path(), &args).success();
        let base = dir.path().join("explain").join(format!("digit.{method}"));
        let v = read(&base.with_extension("json"));
        assert_eq!(v["method"], method);
        assert_eq!(v["shape"], json!([1, 8, 8]));
        assert_eq!(v["attributions"].as_array().unwrap().len(), 64);
        assert!(v["model"].as_str().unwrap().ends_with("img.photon"));
        let png = image::open(base.with_extension("png")).unwrap();
        assert_eq!((png.width(), png.height()), (224, 224));
        if method == "integrated-gradients" {
            let rel = v["checks"]["completeness-relative-error"].as_f64().unwrap();
            assert!(rel < 1e-2, "{}", v["checks"]);
            assert_eq!(v["params"]["baseline"], "blur");
        }
    }
    // Feature maps of the second layer by type and ordinal: a grid PNG and per-channel ranges.
    let out = lepton_in(
        dir.path(),
        &[
            "--json",
            "explain",
            "img.photon",
            "digit.png",
            "--layer",
            "relu",
            "--out",
            "maps",
        ],
    )
    .success()
    .json();
    assert_eq!(out["shape"], json!([4, 8, 8]), "{out}");
    let v = read(&dir.path().join("maps/digit.layer-relu.json"));
    assert_eq!(v["kind"], "relu");
    assert_eq!(v["min"].as_array().unwrap().len(), 4);
    assert!(v["min"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m.as_f64().unwrap() >= 0.0));
    assert!(dir.path().join("maps/digit.layer-relu.png").exists());
}

#[test]
fn explain_errors_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    image_model(dir.path());
    for (args, needle) in [
        (vec!["--method", "lime"], "unknown method 'lime'"),
        (
            vec!["--method", "integrated-gradients", "--steps", "1"],
            "invalid steps",
        ),
        (
            vec!["--method", "occlusion", "--window", "9"],
            "invalid window",
        ),
        (
            vec!["--method", "saliency", "--target", "7"],
            "invalid target",
        ),
        (vec!["--layer", "lstm"], "no layer 'lstm'"),
        (
            vec!["--method", "kernel-shap"],
            "kernel SHAP needs tabular input",
        ),
    ] {
        let mut all = vec!["explain", "img.photon", "digit.png"];
        all.extend(&args);
        let r = lepton_in(dir.path(), &all);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn explain_tabular_rows_with_kernel_shap_and_the_dataset_with_permutation() {
    let run = trained();
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join("rows.csv");
    std::fs::write(
        &rows,
        "sepal_length,sepal_width,petal_length,petal_width,species\n5.1,3.5,1.4,0.2,setosa\n6.3,2.9,5.6,1.8,virginica\n",
    )
    .unwrap();
    let data = crate::support::repo().join("data/tabular/iris.csv");
    let out = dir.path().join("out");
    lepton_in(
        dir.path(),
        &[
            "explain",
            s(run),
            s(&rows),
            "--method",
            "kernel-shap",
            "--background",
            s(&data),
            "--out",
            s(&out),
        ],
    )
    .success();
    for row in [1, 2] {
        let v = read(&out.join(format!("rows.{row}.kernel-shap.json")));
        assert_eq!(v["row"], row);
        assert_eq!(v["params"]["exact"], true);
        let phi: Vec<f64> = serde_json::from_value(v["attributions"].clone()).unwrap();
        assert_eq!(phi.len(), 4);
        // Efficiency: the values add up to f(x) − E[f(background)].
        let c = &v["checks"];
        let gap = c["score-input"].as_f64().unwrap() - c["expected-score"].as_f64().unwrap();
        assert!((phi.iter().sum::<f64>() - gap).abs() < 1e-3, "{c}");
    }
    lepton_in(
        dir.path(),
        &[
            "explain",
            s(run),
            s(&data),
            "--method",
            "permutation",
            "--label",
            "species",
            "--out",
            s(&out),
        ],
    )
    .success();
    let v = read(&out.join("iris.permutation.json"));
    let imp: Vec<f64> = serde_json::from_value(v["attributions"].clone()).unwrap();
    // The petal measurements carry iris; shuffling them costs more accuracy than the sepal width.
    assert!(imp[2].max(imp[3]) > imp[1], "{imp:?}");
    assert!(v["checks"]["base-score"].as_f64().unwrap() > 0.8);
    let r = lepton_in(
        dir.path(),
        &["explain", s(run), s(&data), "--method", "permutation"],
    );
    assert!(r.stderr.contains("--label"), "{}", r.stderr);
    // The default output folder of a run directory is RUN/explain/.
    lepton_in(
        dir.path(),
        &["explain", s(run), s(&rows), "--method", "saliency"],
    )
    .success();
    assert!(run.join("explain/rows.1.saliency.json").exists());
}
