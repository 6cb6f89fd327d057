//! Bad specs fail before training, with errors that name the key, the line and the shapes.

use lepton_train::{train, NoopObserver, Spec};

use crate::common::{tabular_spec, write_csv};

const MNIST_SPEC: &str = r#"name = "m"
[data]
format = "mnist"
path = "../data/mnist"

[model]
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "linear"
in-features = 700
out-features = 10

[optimizer]
kind = "sgd"
lr = 0.1
"#;

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn typo_key_names_the_key_the_file_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = MNIST_SPEC.replace("lr = 0.1", "lr = 0.1\nmomentun = 0.9");
    let p = write(dir.path(), "typo.toml", &text);
    let err = Spec::from_file(&p).unwrap_err().to_string();
    assert!(
        err.contains("typo.toml") && err.contains("momentun") && err.contains("line 17"),
        "{err}"
    );
}

#[test]
fn wrong_type_names_the_key_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = MNIST_SPEC.replace("lr = 0.1", "lr = \"fast\"");
    let p = write(dir.path(), "wrong.toml", &text);
    let err = Spec::from_file(&p).unwrap_err().to_string();
    assert!(err.contains("line 16") && err.contains("fast"), "{err}");
    let text = MNIST_SPEC.replace("name = \"m\"", "name = \"m\"\nseed = -3");
    let err = Spec::from_file(&write(dir.path(), "seed.toml", &text))
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn out_of_range_value_names_the_key_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = MNIST_SPEC.replace("lr = 0.1", "lr = 0.1\nmomentum = 1.5");
    let err = Spec::from_file(&write(dir.path(), "m.toml", &text))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("optimizer.momentum (line 17)") && err.contains("1.5"),
        "{err}"
    );
    let text = format!("{MNIST_SPEC}\n[train]\nbatch-size = 0\n");
    let err = Spec::from_file(&write(dir.path(), "b.toml", &text))
        .unwrap_err()
        .to_string();
    assert!(err.contains("train.batch-size (line 19)"), "{err}");
}

#[test]
fn impossible_shape_fails_at_load_naming_the_layer_and_the_shapes() {
    // MNIST's input shape is known without reading the data: the check runs in from_file.
    let dir = tempfile::tempdir().unwrap();
    let err = Spec::from_file(&write(dir.path(), "shape.toml", MNIST_SPEC))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.layers[1] (line 9)") && err.contains("700") && err.contains("784"),
        "{err}"
    );
}

#[test]
fn impossible_shape_on_tabular_data_fails_before_training() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(&dir.path().join("t.csv"), 60);
    let text = tabular_spec("t.csv", 1, 5).replace("out-features = 3\n", "out-features = 4\n");
    let spec = Spec::from_file(&write(dir.path(), "t.toml", &text)).unwrap();
    let run = dir.path().join("run");
    let err = train(&spec, &run, &mut NoopObserver)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.layers[4]") && err.contains("[4]") && err.contains("3 classes"),
        "{err}"
    );
    assert!(!run.join("checkpoints").exists(), "nothing is trained");
}

#[test]
fn resolved_spec_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(&dir.path().join("t.csv"), 60);
    let spec = Spec::from_file(&write(dir.path(), "t.toml", &tabular_spec("t.csv", 1, 5))).unwrap();
    let toml = spec.to_toml().unwrap();
    assert!(
        toml.contains("batch-size = 16") && toml.contains("eval-batch-size = 1000"),
        "{toml}"
    );
    // Written elsewhere, the resolved spec still finds the data (absolute paths).
    let other = tempfile::tempdir().unwrap();
    let again = Spec::from_file(&write(other.path(), "t.toml", &toml)).unwrap();
    assert_eq!(
        again.resolve(&again.data.path),
        spec.resolve(&spec.data.path)
    );
    assert_eq!(again.train, spec.train);
    assert_eq!(again.optimizer, spec.optimizer);
}

#[test]
fn every_example_spec_parses_and_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        // `[finetune]` specs are lepton-finetune's (checked by its own tests).
        let finetune = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .any(|l| l.trim() == "[finetune]")
        };
        if p.extension().is_some_and(|e| e == "toml") && !finetune(&p) {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let spec = match Spec::from_file(&p) {
                Ok(spec) => spec,
                Err(e) => panic!("{}: {e}", p.display()),
            };
            let data = spec.resolve(&spec.data.path);
            if !data.exists() {
                // A fetched asset that is not committed (data/shakespeare/input.txt): the fetch
                // script must produce exactly this file.
                let rel = data
                    .strip_prefix(std::path::absolute(dir.join("..")).unwrap())
                    .unwrap_or_else(|_| panic!("{name}: data path {} is missing", data.display()));
                let script =
                    std::fs::read_to_string(dir.join("../scripts/fetch-assets.sh")).unwrap();
                assert!(
                    script.contains(&*rel.to_string_lossy()),
                    "{name}: data path {} is missing and no fetch-assets.sh function writes it",
                    data.display()
                );
            }
            n += 1;
        }
    }
    assert!(n >= 6, "found {n} example specs");
}

/// Finding 7 (issue 12): huge sizes in a spec are spec errors naming the key and its line,
/// found at load time (no data read, nothing allocated), never an abort.
#[test]
fn absurd_sizes_are_spec_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            MNIST_SPEC.replace("out-features = 10", "out-features = 1000000000000"),
            "model.layers[1].out-features",
        ),
        // Every number under the integer limit, the weights over lepton-nn's parameter budget.
        (
            MNIST_SPEC.replace(
                "in-features = 700\nout-features = 10",
                "out-features = 16777216",
            ),
            "model.layers[1].out-features",
        ),
        (
            MNIST_SPEC.replace("lr = 0.1", "lr = 0.1\n[train]\nepochs = 1000000000000"),
            "train.epochs",
        ),
        (
            MNIST_SPEC.replace("lr = 0.1", "lr = 0.1\n[train]\nbatch-size = 1099511627776"),
            "train.batch-size",
        ),
        (
            MNIST_SPEC.replace(
                "lr = 0.1",
                "lr = 0.1\n[train]\neval-batch-size = 1099511627776",
            ),
            "train.eval-batch-size",
        ),
        // Each number is allowed and the parameters fit lepton-nn's budget (823M values), but
        // a step does not: 1M-wide activations x 65,536 samples.
        (
            MNIST_SPEC
                .replace(
                    "in-features = 700\nout-features = 10",
                    "out-features = 1048576",
                )
                .replace("lr = 0.1", "lr = 0.1\n[train]\nbatch-size = 65536"),
            "train.batch-size",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let p = write(dir.path(), &format!("absurd{i}.toml"), text);
        let err = Spec::from_file(&p).unwrap_err().to_string();
        assert!(
            err.contains(&format!("absurd{i}.toml")) && err.contains(key) && err.contains("line"),
            "case {i}: {err}"
        );
    }
}

/// A spec changed after parsing (the CLI's `--epochs`) is validated again by `train`, before
/// anything is written.
#[test]
fn train_revalidates_a_changed_spec() {
    let dir = tempfile::tempdir().unwrap();
    write_csv(&dir.path().join("t.csv"), 40);
    let p = write(dir.path(), "t.toml", &tabular_spec("t.csv", 1, 5));
    let mut spec = Spec::from_file(&p).unwrap();
    spec.train.epochs = u64::MAX;
    let run = dir.path().join("run");
    let err = train(&spec, &run, &mut NoopObserver)
        .unwrap_err()
        .to_string();
    assert!(err.contains("train.epochs"), "{err}");
    assert!(!run.exists());
}
