//! train → eval → predict → inspect → export on the embedded iris data (150 rows, a few
//! seconds), with the `--json` output of each command parsed; and a re-signed photon whose parts
//! disagree refused by `predict`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::support::{iris_spec, lepton_in, s};

/// A run directory trained once for all tests of the binary (30 epochs of iris).
pub fn trained() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let spec = iris_spec(dir.path(), 30);
        let run = lepton_in(
            dir.path(),
            &[
                "--json",
                "train",
                s(&spec),
                "--out",
                "run",
                "--epochs",
                "30",
            ],
        )
        .success();
        let lines = run.json_lines();
        let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
        assert_eq!(events.first(), Some(&"start"), "{events:?}");
        assert_eq!(events.iter().filter(|e| **e == "epoch_end").count(), 30);
        assert!(events.contains(&"done"), "{events:?}");
        let last = lines.last().unwrap();
        assert_eq!(last["summary"]["epochs"], 30, "{last}");
        let metrics = last["summary"]["final_metrics"]
            .as_array()
            .expect("[name, value] pairs");
        assert!(
            metrics
                .iter()
                .any(|m| m[0] == "accuracy" && m[1].as_f64().is_some()),
            "{last}"
        );
        let photon = PathBuf::from(last["photon"].as_str().expect("photon path"));
        assert!(dir.path().join(&photon).is_file(), "{last}");
        let run_dir = dir.path().join("run");
        (dir, run_dir)
    })
    .1
}

#[test]
fn train_eval_predict_inspect_export_on_iris() {
    let run_dir = trained();
    let photon = run_dir.join("model.photon");
    let dir = run_dir.parent().unwrap();

    // eval: the report of the run's own held-out split.
    let eval = lepton_in(dir, &["--json", "eval", s(&photon)])
        .success()
        .json();
    let accuracy = eval["accuracy"]
        .as_f64()
        .unwrap_or_else(|| panic!("{eval}"));
    assert!(accuracy > 0.8, "30 epochs of iris should pass 80 %: {eval}");

    // predict: one JSON object per CSV row, three probabilities summing to 1, the right species
    // for unmistakable flowers (label column ignored).
    let rows = dir.join("rows.csv");
    std::fs::write(
        &rows,
        "sepal_length,sepal_width,petal_length,petal_width,species\n5.1,3.5,1.4,0.2,?\n7.7,3.0,6.1,2.3,?\n",
    )
    .unwrap();
    let pred = lepton_in(
        dir,
        &[
            "--json",
            "predict",
            s(&photon),
            "--csv",
            s(&rows),
            "--top-k",
            "2",
        ],
    )
    .success();
    let lines = pred.json_lines();
    assert_eq!(lines.len(), 2, "{pred:?}");
    for (line, want) in lines.iter().zip(["setosa", "virginica"]) {
        let p = &line["prediction"];
        let probs: Vec<f64> = p["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(probs.len(), 3, "{line}");
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{line}");
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 2, "{line}");
        assert!(top[0][0].as_str().unwrap().contains(want), "{line}");
        assert!(
            line["input"].as_str().unwrap().contains("rows.csv"),
            "{line}"
        );
    }
    // Human output: one line per row, label first.
    let human = lepton_in(dir, &["predict", s(&photon), "--csv", s(&rows)]).success();
    assert_eq!(human.stdout.lines().count(), 2, "{human:?}");

    // inspect: the manifest, the tensors and verified checksums.
    let info = lepton_in(dir, &["--json", "inspect", s(&photon)])
        .success()
        .json();
    assert_eq!(info["checksums_ok"], true, "{info}");
    assert_eq!(info["manifest"]["name"], "iris-it", "{info}");
    assert_eq!(
        info["manifest"]["input_shape"],
        serde_json::json!([4]),
        "{info}"
    );
    // 4*16 + 16 + 16*3 + 3 parameters.
    assert_eq!(info["parameters"], 131, "{info}");
    assert_eq!(info["tensors"].as_array().unwrap().len(), 4, "{info}");

    // export: the same model into another file.
    let out = dir.join("copy.photon");
    let exported = lepton_in(dir, &["--json", "export", s(run_dir), "-o", s(&out)])
        .success()
        .json();
    assert_eq!(exported["photon"].as_str().unwrap(), s(&out));
    let copy = lepton_in(dir, &["--json", "inspect", s(&out)])
        .success()
        .json();
    assert_eq!(copy["tensors"], info["tensors"]);

    // data inspect: the table's shape.
    let csv = crate::support::repo().join("data/tabular/iris.csv");
    let data = lepton_in(dir, &["--json", "data", "inspect", s(&csv)])
        .success()
        .json();
    assert!(data.is_object(), "{data}");
    assert!(data.to_string().contains("150"), "{data}");
}

/// Regression (issue 12, finding 7): a photon whose checksums were recomputed after its
/// preprocessor was changed to make 60000x60000 inputs for the 4-feature model hung `predict`;
/// it is refused at load, naming the file and the field.
#[test]
fn a_resigned_photon_whose_preprocessor_disagrees_is_refused_by_predict() {
    let run_dir = trained();
    let good = lepton_photon::Photon::open(&run_dir.join("model.photon")).unwrap();
    let mut manifest = good.manifest().clone();
    manifest.preprocessor = lepton_data::Preprocessor::Image {
        channels: 1,
        height: 60000,
        width: 60000,
        mean: vec![0.0],
        std: vec![1.0],
        class_names: manifest.preprocessor.class_names().to_vec(),
    };
    let header = serde_json::to_vec(&manifest).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("resigned.photon");
    std::fs::write(&bad, lepton_photon::assemble(&header, good.weights())).unwrap();
    let png = crate::support::repo().join("examples/images/mnist-test-0.png");
    let started = std::time::Instant::now();
    let run = lepton_in(dir.path(), &["predict", s(&bad), s(&png)]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("resigned.photon") && run.stderr.contains("preprocessor"),
        "{}",
        run.stderr
    );
    assert!(started.elapsed().as_secs() < 60, "refused, not computed");
}
