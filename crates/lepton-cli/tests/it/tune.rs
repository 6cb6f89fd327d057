//! `lepton tune`: bad input refused before any training, ASHA stopping trials at rungs, and a
//! search killed mid-way resuming without re-running finished trials.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{lepton, repo};

/// An iris spec with `epochs` epochs and a space over the learning rate and the hidden width.
fn setup(dir: &Path, epochs: u64) -> (PathBuf, PathBuf) {
    let spec = dir.join("spec.toml");
    std::fs::write(
        &spec,
        format!(
            r#"name = "iris-tune"
seed = 1

[data]
format = "csv"
path = "{}"
label = "species"
validation-split = 0.3

[model]
[[model.layers]]
type = "linear"
out-features = 8
[[model.layers]]
type = "relu"
[[model.layers]]
type = "linear"
out-features = 3

[optimizer]
kind = "adam"
lr = 1e-2

[train]
epochs = {epochs}
batch-size = 16

[eval]
plots = false
"#,
            repo().join("data/tabular/iris.csv").display()
        ),
    )
    .unwrap();
    let space = dir.join("space.toml");
    std::fs::write(
        &space,
        r#""optimizer.lr" = { kind = "log", low = 1e-4, high = 1e-1 }
"model.layers.0.out-features" = { kind = "int", low = 2, high = 16 }
"#,
    )
    .unwrap();
    (spec, space)
}

fn tune_args<'a>(
    spec: &'a Path,
    space: &'a Path,
    state: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut v = vec![
        "tune",
        spec.to_str().unwrap(),
        "--space",
        space.to_str().unwrap(),
        "--dir",
        state.to_str().unwrap(),
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn bad_input_is_refused_before_any_training() {
    let tmp = tempfile::tempdir().unwrap();
    let (spec, space) = setup(tmp.path(), 1);
    let state = tmp.path().join("state");
    let bad_key = tmp.path().join("bad-key.toml");
    std::fs::write(
        &bad_key,
        "\"optimizer.lrr\" = { kind = \"log\", low = 1e-4, high = 1e-1 }\n",
    )
    .unwrap();
    let empty = tmp.path().join("empty.toml");
    std::fs::write(
        &empty,
        "\"optimizer.lr\" = { kind = \"linear\", low = 0.1, high = 0.01 }\n",
    )
    .unwrap();
    let cases: [(&Path, Vec<&str>, &str); 3] = [
        (&bad_key, vec![], "`optimizer.lrr` is not in the spec"),
        (&empty, vec![], "`optimizer.lr`: empty range"),
        (
            &space,
            vec!["--threads", "2", "--parallel", "3"],
            "--parallel: 3 trials at once on 2 cores",
        ),
    ];
    for (space, extra, want) in cases {
        let r = lepton(&tune_args(&spec, space, &state, &extra));
        assert_ne!(r.code, 0, "{r:?}");
        assert!(r.stderr.contains(want), "want `{want}`: {}", r.stderr);
        assert!(!state.exists(), "nothing written or trained for `{want}`");
    }
}

#[test]
fn asha_stops_trials_at_rungs_and_writes_the_results() {
    let tmp = tempfile::tempdir().unwrap();
    let (spec, space) = setup(tmp.path(), 9);
    let state = tmp.path().join("state");
    let r = lepton(&tune_args(
        &spec,
        &space,
        &state,
        &["--json", "--trials", "8", "--scheduler", "asha"],
    ))
    .success();
    let s = r.json();
    let trials = s["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 8);
    let stopped = trials.iter().filter(|t| t["status"] == "stopped").count();
    assert!(stopped > 0, "{s}");
    // Stopped trials end on a rung (1 or 3 epochs with eta 3 and 9 epochs).
    for t in trials.iter().filter(|t| t["status"] == "stopped") {
        let n = t["curve"].as_array().unwrap().len();
        assert!(n == 1 || n == 3, "{t}");
    }
    assert!(s["epochs_run"].as_u64().unwrap() < s["epochs_full"].as_u64().unwrap());
    for f in ["results.json", "best.toml", "curves.png"] {
        assert!(state.join(f).exists(), "{f}");
    }
}

#[test]
fn a_killed_search_resumes_without_rerunning_finished_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let (spec, space) = setup(tmp.path(), 30);
    let state = tmp.path().join("state");
    let trials = 6;
    let n = trials.to_string();
    let args = tune_args(&spec, &space, &state, &["--quiet", "--trials", &n]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lepton"))
        .args(&args)
        .env("LEPTON_THREADS", "1")
        .spawn()
        .unwrap();
    let results = |s: &Path| {
        (0..trials)
            .filter(|i| s.join(format!("trials/{i:04}/result.json")).exists())
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while results(&state) < 2 {
        assert!(Instant::now() < deadline, "no two trials finished in 300 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the search ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let finished = results(&state);
    assert!(finished < trials, "killed mid-way");
    let r = lepton(&tune_args(
        &spec,
        &space,
        &state,
        &["--json", "--trials", &n],
    ))
    .success();
    let s = r.json();
    assert_eq!(s["trials"].as_array().unwrap().len(), trials);
    assert_eq!(
        s["launched"].as_u64().unwrap() as usize,
        trials - finished,
        "only the unfinished trials are trained again"
    );
}
