//! `tensorboard`'s own reader (`EventAccumulator`) reads our event files and finds every scalar.
//! Needs the PyPI package `tensorboard` in the bench venv (`bench/pyenv.sh tensorboard`); skips
//! with a printed reason without it.

use std::collections::BTreeMap;
use std::process::Command;

use lepton_track::RunsDir;

use crate::support::{repo, train};

const READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
out = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
print(json.dumps(out))
"#;

/// The venv's python with `tensorboard` importable, or why not.
fn python() -> Result<std::path::PathBuf, String> {
    let out = Command::new(repo().join("bench/pyenv.sh"))
        .arg("tensorboard")
        .output()
        .map_err(|e| format!("bench/pyenv.sh did not start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bench/pyenv.sh tensorboard failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let venv = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(std::path::Path::new(&venv).join("bin/python"))
}

#[test]
fn tensorboard_event_accumulator_reads_equal_scalars() {
    let py = match python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIP tensorboard_event_accumulator_reads_equal_scalars: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), "iris-tb", 0.01, 4);
    let run = RunsDir::open(&dir.path().join("iris-tb"))
        .unwrap()
        .read(".")
        .unwrap();
    let out_dir = dir.path().join("tb");
    let (file, n) = lepton_track::tfevents::export(&run, &out_dir).unwrap();
    assert!(file.starts_with(&out_dir));

    let out = Command::new(&py)
        .arg("-c")
        .arg(READER)
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: BTreeMap<String, Vec<(u64, f64)>> = serde_json::from_slice(&out.stdout).unwrap();

    // What metrics.jsonl holds, parsed here independently: every numeric field of every line.
    let mut want: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    let text = std::fs::read_to_string(dir.path().join("iris-tb/metrics.jsonl")).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let prefix = v["kind"].as_str().unwrap();
        for (k, x) in v.as_object().unwrap() {
            if matches!(k.as_str(), "kind" | "epoch" | "step" | "best" | "seconds") {
                continue;
            }
            if let Some(x) = x.as_f64() {
                want.entry(format!("{prefix}/{k}"))
                    .or_default()
                    .push((v["step"].as_u64().unwrap(), x));
            }
        }
    }
    assert_eq!(
        read.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert!(want.contains_key("epoch/val_loss") && want.contains_key("step/loss"));
    let mut count = 0;
    for (tag, values) in &want {
        let got = &read[tag];
        assert_eq!(got.len(), values.len(), "{tag}");
        for ((gs, gv), (ws, wv)) in got.iter().zip(values) {
            assert_eq!(gs, ws, "{tag}");
            // simple_value is a float32: equal to the f32 of our value.
            assert_eq!(*gv as f32, *wv as f32, "{tag} at step {ws}");
            count += 1;
        }
    }
    assert_eq!(count, n);
}
