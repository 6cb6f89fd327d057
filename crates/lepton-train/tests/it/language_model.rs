//! Language models on text (issue 13): the committed Shakespeare examples trained at toy size on
//! a small generated text, exact resume of the random windows, and the bad inputs refused before
//! training with the field named.

use std::path::{Path, PathBuf};

use lepton_train::{resume, train, Event, NoopObserver, Observer, Spec};
use sha2::{Digest, Sha256};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// A small text with structure a tiny model learns within a few dozen steps.
fn write_text(path: &Path, lines: usize) -> usize {
    let words = ["to be", "or not", "that is", "the question", "my lord"];
    let mut s = String::new();
    for i in 0..lines {
        s += &format!(
            "{}:\n{} {}.\n\n",
            ["HAMLET", "OPHELIA"][i % 2],
            words[i % 5],
            words[(i * 3 + 1) % 5]
        );
    }
    std::fs::write(path, &s).unwrap();
    let mut chars: Vec<char> = s.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    chars.len()
}

/// An example spec with toy sizes: its text swapped for `text`, the widths shrunk, the vocabulary
/// fields set to the text's, and `edit` applied to the TOML tree last.
fn toy_spec(
    root: &Path,
    example_file: &str,
    vocab: usize,
    edit: impl FnOnce(&mut toml::Table),
) -> PathBuf {
    let mut t: toml::Table = std::fs::read_to_string(example(example_file))
        .unwrap()
        .parse()
        .unwrap();
    let data = t["data"].as_table_mut().unwrap();
    data.insert("path".into(), "text.txt".into());
    data.insert("block-size".into(), 16.into());
    let layers = t["model"]["layers"].as_array().unwrap().clone();
    let layers: Vec<toml::Value> = layers
        .into_iter()
        .map(|mut l| {
            let l2 = l.as_table_mut().unwrap();
            for (k, v) in [
                ("num-embeddings", vocab as i64),
                ("embedding-dim", 16),
                ("hidden-size", 32),
                ("out-features", vocab as i64),
            ] {
                if l2.contains_key(k) {
                    l2.insert(k.into(), v.into());
                }
            }
            l
        })
        .collect();
    t["model"]
        .as_table_mut()
        .unwrap()
        .insert("layers".into(), layers.into());
    let train = t["train"].as_table_mut().unwrap();
    for (k, v) in [
        ("steps", 60),
        ("batch-size", 16),
        ("eval-interval", 20),
        ("eval-windows", 40),
        ("log-every", 10),
        ("checkpoint-every", 15),
    ] {
        train.insert(k.into(), v.into());
    }
    t.insert(
        "eval".into(),
        toml::Value::Table(toml::Table::from_iter([("plots".into(), false.into())])),
    );
    edit(&mut t);
    let path = root.join(example_file);
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    path
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The committed char-LSTM example at toy size: the validation loss falls, and the report and
/// `metrics.jsonl` hold perplexity and bits per character.
#[test]
fn shakespeare_lstm_example_trains_at_toy_size() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = write_text(&dir.path().join("text.txt"), 400);
    let spec = toy_spec(dir.path(), "shakespeare-lstm.toml", vocab, |t| {
        t["optimizer"]
            .as_table_mut()
            .unwrap()
            .insert("lr".into(), 1e-2.into());
        let train = t["train"].as_table_mut().unwrap();
        train.insert("steps".into(), 120.into());
        train.insert("eval-interval".into(), 40.into());
    });
    let spec = Spec::from_file(&spec).unwrap();
    let run = dir.path().join("run");
    let summary = train(&spec, &run, &mut NoopObserver).unwrap();
    assert_eq!(summary.steps, 120);
    assert_eq!(summary.epochs, 3, "one history entry per eval-interval");
    let report = json(&run.join("report.json"));
    assert_eq!(report["task"], "language-model");
    let loss = report["loss"].as_f64().unwrap();
    let ppl = report["perplexity"].as_f64().unwrap();
    let bpc = report["bits-per-char"].as_f64().unwrap();
    assert!((ppl - loss.exp()).abs() < 1e-9 * ppl);
    assert!((bpc - loss / std::f64::consts::LN_2).abs() < 1e-12);
    // Uniform guessing over the vocabulary costs ln(V) nats; the trained model is far below.
    assert!(loss < 0.5 * (vocab as f64).ln(), "{loss} vs ln {vocab}");
    let evals: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["kind"] == "epoch")
        .collect();
    assert_eq!(evals.len(), 3);
    let val: Vec<f64> = evals
        .iter()
        .map(|v| v["val_loss"].as_f64().unwrap())
        .collect();
    assert!(val[2] < val[0], "validation loss did not fall: {val:?}");
    for v in &evals {
        let l = v["val_loss"].as_f64().unwrap();
        assert!((v["val_perplexity"].as_f64().unwrap() - l.exp()).abs() < 1e-9 * l.exp());
        assert!(v["val_bits_per_token"].as_f64().is_some());
    }
    let step_lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["kind"] == "step")
        .collect();
    // Every log-every (10) and checkpoint-every (15) step writes a line.
    assert_eq!(step_lines.len(), 16);
    for v in &step_lines {
        let sps = v["samples_per_sec"].as_f64().unwrap();
        let tps = v["tokens_per_sec"].as_f64().unwrap();
        assert!(
            (tps - sps * 16.0).abs() <= 1e-9 * tps,
            "{tps} vs {sps} windows/s"
        );
    }
    let steps: Vec<u64> = evals.iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [40, 80, 120]);
    let pre = json(&run.join("preprocessor.json"));
    assert_eq!(pre["kind"], "text");
    assert_eq!(pre["max_len"], 16);
    assert_eq!(pre["class_names"], serde_json::json!([]));
}

struct CopyAt {
    step: u64,
    run: PathBuf,
    to: PathBuf,
}

impl Observer for CopyAt {
    fn event(&mut self, e: Event<'_>) {
        if let Event::Checkpoint { step, .. } = e {
            if step == self.step && !self.to.exists() {
                copy_dir(&self.run, &self.to);
            }
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Resuming from a checkpoint in the middle of an evaluation interval draws the same windows:
/// the final weights and optimizer state equal the uninterrupted run's bit for bit.
#[test]
fn language_model_resume_draws_the_same_windows() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = write_text(&dir.path().join("text.txt"), 200);
    let spec = toy_spec(dir.path(), "shakespeare-lstm.toml", vocab, |t| {
        t["train"]
            .as_table_mut()
            .unwrap()
            .insert("steps".into(), 30.into());
        // The learning curves of a language model are drawn by step.
        t.remove("eval");
    });
    let spec = Spec::from_file(&spec).unwrap();
    let run = dir.path().join("run");
    let copy = dir.path().join("killed-at-15");
    let mut obs = CopyAt {
        step: 15,
        run: run.clone(),
        to: copy.clone(),
    };
    let full = train(&spec, &run, &mut obs).unwrap();
    assert!(copy.join("checkpoints/last.json").exists());
    let resumed = resume(&copy, &mut NoopObserver).unwrap();
    assert_eq!(resumed.steps, full.steps);
    assert_eq!(
        sha256(&copy.join("checkpoints/last.safetensors")),
        sha256(&run.join("checkpoints/last.safetensors"))
    );
    assert_eq!(
        json(&copy.join("report.json")),
        json(&run.join("report.json"))
    );
    assert!(run.join("learning-curves.png").exists());
    assert!(!run.join("confusion-matrix.png").exists());
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("| perplexity |") && md.contains("| bits-per-char |"),
        "{md}"
    );
}

/// The error of training `spec` (built with `edit`) on `text`, before any step runs.
fn refused(
    text: &str,
    vocab_override: Option<usize>,
    edit: impl FnOnce(&mut toml::Table),
) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("text.txt"), text).unwrap();
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    let vocab = vocab_override.unwrap_or(chars.len().max(1));
    let path = toy_spec(dir.path(), "shakespeare-lstm.toml", vocab, edit);
    let err = match Spec::from_file(&path) {
        Err(e) => e,
        Ok(spec) => train(&spec, &dir.path().join("run"), &mut NoopObserver).unwrap_err(),
    };
    assert!(
        !dir.path().join("run/metrics.jsonl").exists()
            || std::fs::read_to_string(dir.path().join("run/metrics.jsonl"))
                .unwrap()
                .is_empty(),
        "training started"
    );
    let mut s = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(e) = src {
        s += &format!(": {e}");
        src = e.source();
    }
    eprintln!("{s}");
    s
}

fn long_text() -> String {
    "the quick brown fox jumps over the lazy dog. ".repeat(20)
}

#[test]
fn empty_text_is_refused_naming_the_file() {
    let e = refused("", Some(3), |_| {});
    assert!(e.contains("text.txt") && e.contains("empty"), "{e}");
}

#[test]
fn block_larger_than_the_validation_part_is_refused() {
    // 900 characters: the 10 % validation part holds 90, fewer than block-size + 1 = 129.
    let e = refused(&long_text(), None, |t| {
        t["data"]
            .as_table_mut()
            .unwrap()
            .insert("block-size".into(), 128.into());
    });
    assert!(
        e.contains("data.block-size") && e.contains("validation part"),
        "{e}"
    );
    let e = refused(&long_text(), None, |t| {
        t["data"]
            .as_table_mut()
            .unwrap()
            .insert("block-size".into(), 2000.into());
    });
    assert!(
        e.contains("data.block-size") && e.contains("training part"),
        "{e}"
    );
}

#[test]
fn vocabulary_mismatches_name_the_layer_field() {
    let text = long_text();
    let vocab = {
        let mut c: Vec<char> = text.chars().collect();
        c.sort_unstable();
        c.dedup();
        c.len()
    };
    // The text has more characters than the embedding has rows.
    let e = refused(&text, Some(vocab), |t| {
        t["model"]["layers"][0]
            .as_table_mut()
            .unwrap()
            .insert("num-embeddings".into(), ((vocab - 3) as i64).into());
    });
    assert!(
        e.contains("model.layers[0].num-embeddings") && e.contains(&format!("{vocab} tokens")),
        "{e}"
    );
    let e = refused(&text, Some(vocab), |t| {
        t["model"]["layers"][2]
            .as_table_mut()
            .unwrap()
            .insert("out-features".into(), 7.into());
    });
    assert!(e.contains("model.layers[2].out-features"), "{e}");
    // A recurrent layer that returns only its last state gives no per-position logits.
    let e = refused(&text, Some(vocab), |t| {
        t["model"]["layers"][1]
            .as_table_mut()
            .unwrap()
            .insert("return-sequences".into(), false.into());
    });
    assert!(e.contains("model.layers[2]") && e.contains("[16, "), "{e}");
}

#[test]
fn missing_block_size_is_refused_at_parse_time() {
    let e = refused(&long_text(), None, |t| {
        t["data"].as_table_mut().unwrap().remove("block-size");
    });
    assert!(e.contains("data.block-size"), "{e}");
}

/// The committed GPT example (nanoGPT's recipe: positional table, transformer blocks, tied output
/// layer) at toy size: it trains through the same trainer and its validation loss falls.
#[test]
fn shakespeare_gpt_example_trains_at_toy_size() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = write_text(&dir.path().join("text.txt"), 400);
    let spec = toy_spec(dir.path(), "shakespeare-gpt.toml", vocab, |t| {
        let layers = t["model"]["layers"].as_array_mut().unwrap();
        assert_eq!(
            layers[7]["tie"].as_integer(),
            Some(0),
            "tied to the embedding"
        );
        layers[1]
            .as_table_mut()
            .unwrap()
            .insert("max-len".into(), 16.into());
        t["optimizer"]
            .as_table_mut()
            .unwrap()
            .insert("lr".into(), 1e-2.into());
        let train = t["train"].as_table_mut().unwrap();
        train.insert("steps".into(), 120.into());
        train.insert("eval-interval".into(), 40.into());
        t["schedule"]
            .as_table_mut()
            .unwrap()
            .insert("warmup-steps".into(), 10.into());
    });
    let spec = Spec::from_file(&spec).unwrap();
    let run = dir.path().join("run");
    let summary = train(&spec, &run, &mut NoopObserver).unwrap();
    assert_eq!(summary.steps, 120);
    let report = json(&run.join("report.json"));
    assert_eq!(report["task"], "language-model");
    let loss = report["loss"].as_f64().unwrap();
    assert!(loss < 0.5 * (vocab as f64).ln(), "{loss} vs ln {vocab}");
    let val: Vec<f64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "epoch")
        .map(|v| v["val_loss"].as_f64().unwrap())
        .collect();
    assert!(val[2] < val[0], "validation loss did not fall: {val:?}");
}

/// k-fold would cut the text into folds without respecting its order: refused, naming the field.
#[test]
fn cross_validation_of_text_is_refused_naming_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = write_text(&dir.path().join("text.txt"), 50);
    let spec = Spec::from_file(&toy_spec(
        dir.path(),
        "shakespeare-lstm.toml",
        vocab,
        |_| {},
    ))
    .unwrap();
    let e = lepton_train::cross_validate(&spec, 3, &mut NoopObserver)
        .unwrap_err()
        .to_string();
    assert!(e.contains("data.format") && e.contains("text"), "{e}");
}

/// `epochs` means nothing to a language model (it counts steps): set anyway, it is refused
/// instead of being ignored.
#[test]
fn epochs_for_a_language_model_are_refused() {
    let e = refused(&long_text(), None, |t| {
        t["train"]
            .as_table_mut()
            .unwrap()
            .insert("epochs".into(), 3.into());
    });
    assert!(
        e.contains("train.epochs") && e.contains("train.steps"),
        "{e}"
    );
}
