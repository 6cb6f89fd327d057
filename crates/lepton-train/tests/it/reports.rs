//! The end of a run: report files, plots, evaluation of a run directory, cross-validation.

use lepton_train::{cross_validate, evaluate_run, train, NoopObserver, Spec};

use crate::common::{tabular_spec, write_csv};

fn spec(dir: &std::path::Path, epochs: u64) -> Spec {
    write_csv(&dir.join("t.csv"), 400);
    let text = tabular_spec("t.csv", epochs, 50).replace("plots = false", "plots = true");
    std::fs::write(dir.join("t.toml"), text).unwrap();
    Spec::from_file(&dir.join("t.toml")).unwrap()
}

#[test]
fn a_run_writes_its_report_plots_and_best_model() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), 6);
    let run = dir.path().join("run");
    let s = train(&spec, &run, &mut NoopObserver).unwrap();
    for f in [
        "spec.toml",
        "preprocessor.json",
        "metrics.jsonl",
        "best.safetensors",
        "best.json",
        "report.json",
        "report.md",
        "learning-curves.png",
        "accuracy-curves.png",
        "confusion-matrix.png",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert_eq!(s.eval_split, "validation");
    let acc = s
        .final_metrics
        .iter()
        .find(|(k, _)| k == "accuracy")
        .unwrap()
        .1;
    assert!(acc > 0.7, "validation accuracy {acc}");
    assert_eq!(s.metric, "val-accuracy");
    // metrics.jsonl: a step line per step and an epoch line per epoch.
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("\"kind\":\"epoch\""))
            .count(),
        6
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("\"kind\":\"step\""))
            .count() as u64,
        s.steps
    );

    // The run directory can be evaluated again on prepared data; same numbers as the report.
    let data =
        lepton_data::prepare(&spec.data, &spec.preprocess, &spec.base_dir, spec.seed).unwrap();
    let report = evaluate_run(&run, &data.validation).unwrap();
    assert_eq!(report.metrics()["accuracy"], acc);
}

/// Issue 19: each epoch line says where the wall time since the previous one went (data wait,
/// steps, logging, checkpoints, validation), so a slow epoch can be diagnosed from the run.
#[test]
fn epoch_lines_split_the_wall_time_into_phases() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), 3);
    let run = dir.path().join("run");
    train(&spec, &run, &mut NoopObserver).unwrap();
    let epochs: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["kind"] == "epoch")
        .collect();
    assert_eq!(epochs.len(), 3);
    for (i, e) in epochs.iter().enumerate() {
        let p: lepton_train::PhaseTimes = serde_json::from_value(e["phases"].clone())
            .unwrap_or_else(|err| panic!("epoch {i}: no phases ({err}): {e}"));
        for (name, v) in [
            ("data", p.data),
            ("steps", p.steps),
            ("logging", p.logging),
            ("checkpoint", p.checkpoint),
            ("validation", p.validation),
        ] {
            assert!(v.is_finite() && v >= 0.0, "epoch {i}: {name} = {v}");
        }
        assert!(p.steps > 0.0 && p.validation > 0.0, "epoch {i}: {p:?}");
        // The phases cover the epoch (`seconds`) and what came before it since the last line.
        let secs = e["seconds"].as_f64().unwrap();
        assert!(p.total() >= secs, "epoch {i}: {} < {secs}", p.total());
        if i > 0 {
            // The previous epoch's checkpoint is charged to this line.
            assert!(p.checkpoint > 0.0, "epoch {i}: {p:?}");
        }
    }
}

#[test]
fn cross_validation_reports_mean_and_std_over_folds() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), 4);
    let cv = cross_validate(&spec, 3, &mut NoopObserver).unwrap();
    assert_eq!(cv.folds.len(), 3);
    let mean = cv.mean["accuracy"];
    let by_hand = cv.folds.iter().map(|f| f["accuracy"]).sum::<f64>() / 3.0;
    assert!((mean - by_hand).abs() < 1e-12);
    assert!(mean > 0.7, "mean accuracy {mean}");
    assert!(cv.std["accuracy"] > 0.0);
}

fn status(run: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("status.json")).unwrap()).unwrap()
}

#[test]
fn status_json_says_done_or_failed_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), 1);
    let run = dir.path().join("run");
    train(&spec, &run, &mut NoopObserver).unwrap();
    let s = status(&run);
    assert_eq!(s["state"], "done", "{s}");
    assert_eq!(s["error"], serde_json::Value::Null);
    assert_eq!(s["pid"], std::process::id());

    // A run that starts and then fails (its data vanished) says so, with the error.
    std::fs::remove_file(dir.path().join("t.csv")).unwrap();
    let failed = dir.path().join("failed");
    let err = train(&spec, &failed, &mut NoopObserver).unwrap_err();
    let s = status(&failed);
    assert_eq!(s["state"], "failed", "{s}");
    assert_eq!(s["error"], err.to_string());

    // A refused start (the directory already holds a run) leaves that run's status alone.
    assert!(train(&spec, &run, &mut NoopObserver).is_err());
    assert_eq!(status(&run)["state"], "done");
}
