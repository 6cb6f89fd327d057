//! Text photons through the binary: `lepton generate` streams reproducible text, equal to what
//! `lepton serve` streams for the same request (acceptance 3 of issue 13); `lepton predict
//! --text` classifies; bad input exits 1 naming the part.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use lepton_data::{Preprocessor, Vocab};
use lepton_nn::{LossSpec, Model, ModelSpec};
use lepton_photon::{Photon, PhotonContents};

use crate::support::{lepton, s, Server};

const TEXT: &str = "to be or not to be, that is the question\n";
const MAX_LEN: usize = 12;

/// A random-weight character model: a language model without `classes`, else a classifier.
fn write_text_photon(path: &Path, classes: &[&str]) {
    let vocab = Vocab::chars_of(TEXT).unwrap();
    let (seq, out) = if classes.is_empty() {
        ("true", vocab.len())
    } else {
        ("false", classes.len())
    };
    let spec: ModelSpec = toml::from_str(&format!(
        r#"layers = [
            {{ type = "embedding", num-embeddings = {}, embedding-dim = 8 }},
            {{ type = "lstm", hidden-size = 16, return-sequences = {seq} }},
            {{ type = "linear", out-features = {out} }},
        ]"#,
        vocab.len()
    ))
    .unwrap();
    let varmap = VarMap::new();
    Model::new(
        &spec,
        &[MAX_LEN],
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    lepton_nn::init_seeded(&varmap, 3).unwrap();
    let weights: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let contents = PhotonContents {
        name: "text".into(),
        model: spec,
        input_shape: vec![MAX_LEN],
        loss: LossSpec::default(),
        preprocessor: Preprocessor::Text {
            vocab,
            max_len: MAX_LEN,
            class_names: classes.iter().map(|c| c.to_string()).collect(),
        },
        metrics: serde_json::json!({}),
    };
    Photon::write(path, &contents, &weights).unwrap();
}

fn generate(model: &Path, extra: &[&str]) -> String {
    let mut args = vec!["generate", s(model), "--prompt", "to be"];
    args.extend(extra);
    lepton(&args).success().stdout
}

#[test]
fn generate_streams_reproducible_text_from_a_photon_or_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let lm = dir.path().join("lm.photon");
    write_text_photon(&lm, &[]);
    let sampled = [
        "--max-tokens",
        "40",
        "--temperature",
        "1.2",
        "--top-k",
        "8",
        "--seed",
        "7",
    ];
    let a = generate(&lm, &sampled);
    assert_eq!(a.chars().count(), 40, "{a:?}");
    assert_eq!(a, generate(&lm, &sampled), "same seed, same text");
    let mut other = sampled;
    other[7] = "8";
    assert_ne!(a, generate(&lm, &other), "another seed, another text");
    // A run directory's model.photon is used the same way.
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::copy(&lm, run.join("model.photon")).unwrap();
    assert_eq!(a, generate(&run, &sampled));
    // --json: the text and the counts.
    let mut args = vec!["--json", "generate", s(&lm), "--prompt", "to be"];
    args.extend(sampled);
    let v = lepton(&args).success().json();
    assert_eq!(v["text"], a.as_str());
    assert_eq!(v["prompt_tokens"], 5);
    assert_eq!(v["completion_tokens"], 40);
    assert_eq!(v["finish_reason"], "length");
    assert_eq!(v["seed"], 7);
    // Without --seed a fresh one is drawn and reported: giving it back repeats the text.
    let v = lepton(&[
        "--json",
        "generate",
        s(&lm),
        "--prompt",
        "to",
        "--max-tokens",
        "30",
    ])
    .success()
    .json();
    let seed = v["seed"].as_u64().unwrap().to_string();
    let again = lepton(&[
        "--json",
        "generate",
        s(&lm),
        "--prompt",
        "to",
        "--max-tokens",
        "30",
        "--seed",
        &seed,
    ])
    .success()
    .json();
    assert_eq!(again["text"], v["text"]);
}

#[test]
fn generate_refuses_bad_prompts_and_settings_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let lm = dir.path().join("lm.photon");
    write_text_photon(&lm, &[]);
    let cls = dir.path().join("cls.photon");
    write_text_photon(&cls, &["no", "yes"]);
    for (args, needle) in [
        (
            vec!["generate", s(&lm), "--prompt", "to bez"],
            "character 'z' (U+007A) at position 5",
        ),
        (vec!["generate", s(&lm), "--prompt", ""], "prompt: is empty"),
        (
            vec![
                "generate",
                s(&lm),
                "--prompt",
                "to",
                "--max-tokens",
                "70000",
            ],
            "max-tokens: is 70000; it must be 1 to 65536",
        ),
        (
            vec!["generate", s(&lm), "--prompt", "to", "--top-p", "0.5"],
            "--top-p: not supported",
        ),
        (
            vec!["generate", s(&cls), "--prompt", "to"],
            "is a text classifier, not a language model",
        ),
    ] {
        let r = lepton(&args);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn predict_classifies_texts_and_names_the_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let cls = dir.path().join("cls.photon");
    write_text_photon(&cls, &["no", "yes"]);
    let r = lepton(&[
        "--json",
        "predict",
        s(&cls),
        "--text",
        "to be",
        "--text",
        "question",
    ])
    .success();
    let lines = r.json_lines();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["input"], "text[1]");
    let p = lines[0]["prediction"]["probabilities"].as_array().unwrap();
    assert_eq!(p.len(), 2);
    let r = lepton(&["predict", s(&cls), "--text", "to", "--text", "to bez"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("inputs[1]") && r.stderr.contains("'z'"),
        "{}",
        r.stderr
    );
    let inspect = lepton(&["inspect", s(&cls)]).success().stdout;
    assert!(
        inspect.contains(r#"schema      {"kind":"text","vocab-size":15,"max-len":12}"#),
        "{inspect}"
    );
}

/// A `lepton serve` child process, killed when dropped.
#[test]
fn the_server_streams_the_same_text_as_lepton_generate() {
    let dir = tempfile::tempdir().unwrap();
    let lm = dir.path().join("lm.photon");
    write_text_photon(&lm, &[]);
    let cls = dir.path().join("cls.photon");
    write_text_photon(&cls, &["no", "yes"]);
    let cli = generate(
        &lm,
        &[
            "--max-tokens",
            "50",
            "--temperature",
            "0.9",
            "--top-k",
            "5",
            "--seed",
            "1234",
        ],
    );
    let server = Server::start(
        dir.path(),
        &["serve", s(&lm), s(&cls)],
        Duration::from_secs(30),
    );
    let base = server.base.clone();
    let body = serde_json::json!({"prompt": "to be", "max_tokens": 50, "temperature": 0.9,
        "top_k": 5, "seed": 1234, "stream": true});
    let mut resp = ureq::post(&format!("{base}/v1/models/lm/generate"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    let sse = resp.body_mut().read_to_string().unwrap();
    let served: String = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            serde_json::from_str::<serde_json::Value>(d).unwrap()["choices"][0]["text"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(served, cli, "{sse}");
    // A character outside the vocabulary is a 400 naming the prompt.
    let mut resp = ureq::post(&format!("{base}/v1/models/lm/generate"))
        .header("content-type", "application/json")
        .config()
        .http_status_as_error(false)
        .build()
        .send(r#"{"prompt": "zz"}"#)
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let text = resp.body_mut().read_to_string().unwrap();
    assert!(text.contains("prompt: input: character 'z'"), "{text}");
    // `lepton predict --url --text` gets the local prediction from the served classifier.
    let texts = ["--text", "to be", "--text", "question"];
    let mut local = vec!["--json", "predict", s(&cls)];
    local.extend(texts);
    let local = lepton(&local).success().json_lines();
    let mut remote = vec!["--json", "predict", "--url", &base, "--model", "cls"];
    remote.extend(texts);
    let remote = lepton(&remote).success().json_lines();
    assert_eq!(remote.len(), 2);
    for (l, r) in local.iter().zip(&remote) {
        let top = &l["prediction"]["top"][0];
        assert_eq!(r["prediction"]["label"], top[0], "{r}");
        let (a, b) = (
            r["prediction"]["probability"].as_f64().unwrap(),
            top[1].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-6, "{r} vs {l}");
    }
    assert_eq!(remote[1]["input"], "question");
    let r = lepton(&["predict", "--url", &base, "--model", "cls", "--text", "zz"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("422") && r.stderr.contains("inputs[0]"),
        "{}",
        r.stderr
    );
}
