//! Text classification from a (text, label) CSV: the committed example trains at toy size, and a
//! vocabulary that does not fit the embedding is refused before training, naming the field.

use std::path::{Path, PathBuf};

use lepton_train::{train, NoopObserver, Spec};

fn example_spec(root: &Path, edit: impl FnOnce(&mut toml::Table)) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut t: toml::Table = std::fs::read_to_string(examples.join("reviews-lstm.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let data = std::path::absolute(examples.join("../data/text/reviews.csv")).unwrap();
    t["data"]
        .as_table_mut()
        .unwrap()
        .insert("path".into(), data.to_string_lossy().into_owned().into());
    let train = t["train"].as_table_mut().unwrap();
    train.insert("epochs".into(), 4.into());
    train.insert("batch-size".into(), 64.into());
    t["optimizer"]
        .as_table_mut()
        .unwrap()
        .insert("lr".into(), 1e-2.into());
    t["model"]["layers"][1]
        .as_table_mut()
        .unwrap()
        .insert("hidden-size".into(), 24.into());
    t.insert(
        "eval".into(),
        toml::Value::Table(toml::Table::from_iter([("plots".into(), false.into())])),
    );
    edit(&mut t);
    let path = root.join("reviews.toml");
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    path
}

#[test]
fn reviews_example_trains_at_toy_size() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::from_file(&example_spec(dir.path(), |_| {})).unwrap();
    let run = dir.path().join("run");
    train(&spec, &run, &mut NoopObserver).unwrap();
    let epochs: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["kind"] == "epoch")
        .collect();
    let loss: Vec<f64> = epochs
        .iter()
        .map(|v| v["val_loss"].as_f64().unwrap())
        .collect();
    assert!(loss[loss.len() - 1] < loss[0], "{loss:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["task"], "classification");
    let acc = report["accuracy"].as_f64().unwrap();
    eprintln!("accuracy {acc}, val losses {loss:?}");
    assert!(acc > 0.7, "accuracy {acc}");
    let pre: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("preprocessor.json")).unwrap())
            .unwrap();
    assert_eq!(pre["kind"], "text");
    assert_eq!(pre["max_len"], 64);
    assert_eq!(
        pre["class_names"],
        serde_json::json!(["negative", "positive"])
    );
}

#[test]
fn a_vocabulary_larger_than_the_embedding_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = example_spec(dir.path(), |t| {
        t["model"]["layers"][0]
            .as_table_mut()
            .unwrap()
            .insert("num-embeddings".into(), 20.into());
    });
    let spec = Spec::from_file(&path).unwrap();
    let run = dir.path().join("run");
    let e = train(&spec, &run, &mut NoopObserver)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.layers[0].num-embeddings") && e.contains("25 tokens"),
        "{e}"
    );
    assert!(!run.join("metrics.jsonl").exists());
}
