//! `lepton runs list|show|compare|export` over run directories made by `lepton train`, and
//! `lepton ui --help`.

use crate::support::{iris_spec, lepton, lepton_in, s};

/// Two trained runs in `dir/runs`: `a` (3 epochs) and `b` (2 epochs, seed 1).
fn two_runs(dir: &std::path::Path) {
    let spec = iris_spec(dir, 3);
    lepton_in(dir, &["train", s(&spec), "--out", "runs/a", "--no-export"]).success();
    lepton_in(
        dir,
        &[
            "train",
            s(&spec),
            "--out",
            "runs/b",
            "--epochs",
            "2",
            "--seed",
            "1",
        ],
    )
    .success();
}

#[test]
fn runs_list_show_compare_export() {
    let dir = tempfile::tempdir().unwrap();
    two_runs(dir.path());

    let list = lepton_in(dir.path(), &["runs", "list", "--json", "--sort", "epochs"]).success();
    let runs = list.json();
    let rows: Vec<(&str, u64, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap(),
                r["epochs"].as_u64().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("a", 3, "done"), ("b", 2, "done")]);
    assert!(runs[0]["photon_bytes"].is_null() && runs[1]["photon_bytes"].as_u64().unwrap() > 0);

    let table = lepton_in(dir.path(), &["runs", "list", "--filter", "b"]).success();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", table.stdout);
    assert!(
        lines[0].starts_with("NAME") && lines[1].contains("2/2"),
        "{}",
        table.stdout
    );

    let show = lepton_in(dir.path(), &["runs", "show", "runs/a"]).success();
    assert!(
        show.stdout.contains("epochs            3 of 3"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("confusion-matrix.png"),
        "{}",
        show.stdout
    );

    let cmp = lepton_in(
        dir.path(),
        &["runs", "compare", "runs/a", "runs/b", "--json"],
    )
    .success();
    let c = cmp.json();
    let keys: Vec<&String> = c["differences"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["seed", "train.epochs"], "{c}");
    assert_eq!(c["runs"], serde_json::json!(["runs/a", "runs/b"]));

    let export = lepton_in(
        dir.path(),
        &[
            "runs",
            "export",
            "--tensorboard",
            "runs/a",
            "-o",
            "tb",
            "--json",
        ],
    )
    .success();
    let file = export.json()["file"].as_str().unwrap().to_owned();
    assert!(file.contains("events.out.tfevents."), "{file}");
    assert!(dir.path().join(&file).is_file() || std::path::Path::new(&file).is_file());
}

#[test]
fn truncated_metrics_line_warns_with_file_and_line_and_lists_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("runs/partial");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("spec.toml"),
        "name = \"partial\"\n[train]\nepochs = 5\n",
    )
    .unwrap();
    std::fs::write(
        run.join("metrics.jsonl"),
        concat!(
            r#"{"kind":"epoch","epoch":0,"step":5,"best":true,"monitored":0.5,"seconds":1.0}"#,
            "\n",
            r#"{"kind":"epoch","epo"#,
            "\n",
            r#"{"kind":"epoch","epoch":1,"step":10,"best":true,"monitored":0.75,"seconds":1.0}"#,
            "\n",
        ),
    )
    .unwrap();
    std::fs::write(run.join("report.json"), "{\"accuracy\": ").unwrap();
    let out = lepton_in(dir.path(), &["runs", "list"]).success();
    assert!(
        out.stdout.contains("partial") && out.stdout.contains("2/5"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("0.7500"),
        "best from metrics.jsonl: {out:?}"
    );
    assert!(
        out.stderr.contains("metrics.jsonl line 2"),
        "warning names the file and line: {out:?}"
    );
    assert!(out.stderr.contains("report.json"), "{out:?}");
}

#[test]
fn runs_errors_name_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = lepton_in(dir.path(), &["runs", "show", "nowhere"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nowhere"), "{out:?}");
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let out = lepton_in(dir.path(), &["runs", "show", "empty"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("spec.toml"), "{out:?}");
    let out = lepton_in(dir.path(), &["runs", "list", "empty", "--sort", "speed"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("speed"), "{out:?}");
}

#[test]
fn ui_and_runs_help_have_examples() {
    for cmd in [
        &["ui", "--help"][..],
        &["runs", "list", "--help"],
        &["runs", "export", "--help"],
    ] {
        let out = lepton(cmd).success();
        assert!(out.stdout.contains("Example:"), "{cmd:?}: {}", out.stdout);
    }
}
