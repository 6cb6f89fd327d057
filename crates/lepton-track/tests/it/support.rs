//! Shared fixtures: a runs directory with two short iris trainings.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Train the iris example for `epochs` epochs as run `name` with learning rate `lr` into
/// `root/name`.
pub fn train(root: &Path, name: &str, lr: f64, epochs: u64) -> PathBuf {
    let example = repo().join("examples/iris-mlp.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let data = repo().join("data/tabular/iris.csv");
    let text = text
        .replace("name = \"iris-mlp\"", &format!("name = \"{name}\""))
        .replace(
            "path = \"../data/tabular/iris.csv\"",
            &format!("path = {:?}", data.display().to_string()),
        )
        .replace("lr = 1e-2", &format!("lr = {lr}"))
        .replace("epochs = 100", &format!("epochs = {epochs}"));
    let spec_path = root.join(format!("{name}.toml"));
    std::fs::write(&spec_path, text).unwrap();
    let spec = lepton_train::Spec::from_file(&spec_path).unwrap();
    let out = root.join(name);
    lepton_train::train(&spec, &out, &mut lepton_train::NoopObserver).unwrap();
    out
}

/// A runs directory holding `iris-fast` (lr 0.05) and `iris-slow` (lr 0.002), 6 epochs each.
pub fn two_runs() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), "iris-fast", 0.05, 6);
    train(dir.path(), "iris-slow", 0.002, 6);
    dir
}

/// `(epoch, value)` of `key` in the epoch lines of a run's `metrics.jsonl`, parsed independently
/// of lepton-track.
pub fn epoch_values(run: &Path, key: &str) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "epoch")
        .map(|v| (v["epoch"].as_u64().unwrap(), v[key].as_f64().unwrap()))
        .collect()
}
