//! Time-series forecasting from a CSV (`data.sequence`): the committed example trains at toy
//! size, and a bad column is refused before training, naming the field.

use std::path::{Path, PathBuf};

use lepton_train::{train, NoopObserver, Spec};

fn example_spec(root: &Path, edit: impl FnOnce(&mut toml::Table)) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut t: toml::Table = std::fs::read_to_string(examples.join("load-forecast-lstm.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let data = std::path::absolute(examples.join("../data/series/load.csv")).unwrap();
    t["data"]
        .as_table_mut()
        .unwrap()
        .insert("path".into(), data.to_string_lossy().into_owned().into());
    let train = t["train"].as_table_mut().unwrap();
    train.insert("epochs".into(), 4.into());
    train.insert("batch-size".into(), 64.into());
    t["model"]["layers"][0]
        .as_table_mut()
        .unwrap()
        .insert("hidden-size".into(), 16.into());
    t.insert(
        "eval".into(),
        toml::Value::Table(toml::Table::from_iter([("plots".into(), false.into())])),
    );
    edit(&mut t);
    let path = root.join("load.toml");
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    path
}

#[test]
fn load_forecast_example_trains_at_toy_size() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::from_file(&example_spec(dir.path(), |_| {})).unwrap();
    let run = dir.path().join("run");
    train(&spec, &run, &mut NoopObserver).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["kind"] == "epoch")
        .collect();
    let val: Vec<f64> = lines
        .iter()
        .map(|v| v["val_loss"].as_f64().unwrap())
        .collect();
    assert!(val[3] < val[0], "validation loss did not fall: {val:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["task"], "regression");
    // 2,000 rows, 15 % validate: 300 rows make 300 - 24 - 1 + 1 = 276 windows.
    assert_eq!(report["samples"], 276);
    // In load units (the series swings by about +-30 around 100): better than the mean.
    let (mae, r2) = (
        report["mae"].as_f64().unwrap(),
        report["r2"].as_f64().unwrap(),
    );
    assert!(mae > 0.1 && mae < 15.0, "mae {mae}");
    assert!(r2 > 0.5, "r2 {r2}");
    let pre: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("preprocessor.json")).unwrap())
            .unwrap();
    assert_eq!(pre["task"], "regression");
}

#[test]
fn a_missing_sequence_column_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let path = example_spec(dir.path(), |t| {
        t["data"]["sequence"].as_table_mut().unwrap().insert(
            "columns".into(),
            toml::Value::Array(vec!["humidity".into()]),
        );
    });
    let spec = Spec::from_file(&path).unwrap();
    let run = dir.path().join("run");
    let e = train(&spec, &run, &mut NoopObserver).unwrap_err();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(x) = src {
        s += &format!(": {x}");
        src = x.source();
    }
    assert!(
        s.contains("data.sequence.columns") && s.contains("'humidity'"),
        "{s}"
    );
    assert!(!run.join("metrics.jsonl").exists());
}
