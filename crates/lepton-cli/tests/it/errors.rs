//! Exit codes and error messages: 2 for a usage error (clap), 1 for a failed command, with a
//! message naming the file and the field; `--json` errors as one JSON object on stderr.

use lepton_photon::Photon;

use crate::support::{iris_spec, lepton, lepton_in, s};

#[test]
fn usage_errors_exit_2_and_say_what_is_wrong() {
    let run = lepton(&[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("Usage: lepton"), "{run:?}");
    let run = lepton(&["frobnicate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("unrecognized subcommand 'frobnicate'"),
        "{run:?}"
    );
    let run = lepton(&["train"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("<SPEC>"), "{run:?}");
    let run = lepton(&["predict", "--url", "http://127.0.0.1:1"]);
    assert_eq!(run.code, 2, "--url without --model: {run:?}");
    assert!(run.stderr.contains("--model"), "{run:?}");
    let run = lepton(&["--quiet", "--json", "inspect", "x.photon"]);
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn a_missing_file_exits_1_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["inspect", "missing.photon"],
        vec!["predict", "missing.photon", "digit.png"],
        vec!["eval", "missing.photon", "--data", "iris.csv"],
        vec!["train", "missing.toml"],
        vec!["data", "inspect", "missing.csv"],
    ] {
        let run = lepton_in(dir.path(), &args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        let name = args.iter().find(|a| a.starts_with("missing")).unwrap();
        assert!(
            run.stderr.starts_with("error: ") && run.stderr.contains(name),
            "{args:?} must name {name}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    }
}

#[test]
fn a_bad_spec_exits_1_naming_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(iris_spec(dir.path(), 1)).unwrap();
    let cases = [
        ("out-features = 16", "out-featurs = 16", "out-featurs"),
        ("lr = 1e-2", "lr = \"fast\"", "lr"),
        ("label = \"species\"", "label = \"colour\"", "colour"),
    ];
    for (from, to, field) in cases {
        let spec = dir.path().join("bad.toml");
        std::fs::write(&spec, good.replace(from, to)).unwrap();
        let run = lepton_in(dir.path(), &["train", "bad.toml", "--out", "run"]);
        assert_eq!(run.code, 1, "{to}: {run:?}");
        assert!(
            run.stderr.contains("bad.toml") && run.stderr.contains(field),
            "{to}: the error must name bad.toml and {field}: {}",
            run.stderr
        );
        assert!(!dir.path().join("run/model.photon").exists());
    }
}

#[test]
fn a_corrupted_photon_exits_1_naming_the_file_and_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("png.photon"),
        b"\x89PNG\r\n\x1a\nnot a model",
    )
    .unwrap();
    let run = lepton_in(dir.path(), &["inspect", "png.photon"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("png.photon") && run.stderr.contains("not a photon file"),
        "{}",
        run.stderr
    );
    let photon = crate::end_to_end::trained().join("model.photon");
    let mut bytes = std::fs::read(&photon).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    let bad = dir.path().join("flipped.photon");
    std::fs::write(&bad, &bytes).unwrap();
    for args in [
        vec!["inspect", s(&bad)],
        vec!["predict", s(&bad), "--csv", "rows.csv"],
        vec!["eval", s(&bad)],
    ] {
        let cmd = args[0];
        let run = lepton_in(dir.path(), &args);
        assert_eq!(run.code, 1, "{cmd}: {run:?}");
        assert!(
            run.stderr.contains("flipped.photon") && run.stderr.contains("weights checksum"),
            "{cmd}: {}",
            run.stderr
        );
    }
    // Valid checksums do not make a file trustworthy: see end_to_end's re-signed case.
    assert!(Photon::open(&photon).is_ok());
}

#[test]
fn json_errors_are_one_object_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let run = lepton_in(dir.path(), &["--json", "inspect", "missing.photon"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{run:?}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("missing.photon"),
        "{v}"
    );
    assert!(v["causes"].is_array(), "{v}");
}
