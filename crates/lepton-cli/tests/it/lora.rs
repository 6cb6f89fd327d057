//! `lepton run BASE --lora NAME=PATH`: adapters served from the start (issue 15), and bad
//! `--lora` values refused with the option named. Uses SmolLM2 from `$LEPTON_MODELS` (default
//! `~/.cache/lepton-assets/models`, filled by `scripts/fetch-assets.sh models`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use lepton_llm::peft::{LoraModule, LoraPair, PeftAdapter, PeftConfig};

use crate::support::{lepton, model, s, Server};

fn smollm2() -> PathBuf {
    model("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A `lepton run` child process, killed when dropped.
#[test]
fn bad_lora_values_are_refused_naming_the_option() {
    let model = smollm2();
    let r = lepton(&["run", s(&model), "--lora", "no-equals-sign"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("--lora") && r.stderr.contains("NAME=PATH"),
        "{}",
        r.stderr
    );
    let r = lepton(&["run", s(&model), "--lora", "a:b=x"]);
    assert!(
        r.code != 0 && r.stderr.contains("adapter name 'a:b'"),
        "{}",
        r.stderr
    );
    let r = lepton(&["run", s(&model), "--lora", "a=x", "--lora", "a=y"]);
    assert!(
        r.code != 0 && r.stderr.contains("given twice"),
        "{}",
        r.stderr
    );
    // A folder that is not an adapter: refused at start, naming the option and the file.
    let dir = tempfile::tempdir().unwrap();
    let arg = format!("one={}", dir.path().display());
    let r = lepton(&["run", s(&model), "--lora", &arg, "--listen", "127.0.0.1:0"]);
    assert!(
        r.code != 0 && r.stderr.contains("--lora one=") && r.stderr.contains("adapter_config.json"),
        "{}",
        r.stderr
    );
}

#[test]
fn run_serves_lora_adapters_given_at_start() {
    let model = smollm2();
    let config = lepton_llm::TextModel::load(&model)
        .unwrap()
        .llama()
        .config()
        .clone();
    let dir = tempfile::tempdir().unwrap();
    let adapter_dir = dir.path().join("one");
    let mut pairs = BTreeMap::new();
    let mut state = 5u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    for layer in 0..config.num_layers {
        let (i, o) = LoraModule::VProj.features(&config);
        let a = (0..4 * i).map(|_| next()).collect();
        let b = (0..o * 4).map(|_| 0.1 * next()).collect();
        pairs.insert(
            (layer, LoraModule::VProj),
            LoraPair {
                a,
                b,
                rank: 4,
                in_features: i,
                out_features: o,
            },
        );
    }
    PeftAdapter::new(
        PeftConfig::new(4, 8.0, &[LoraModule::VProj]),
        pairs,
        &config,
    )
    .unwrap()
    .save(&adapter_dir)
    .unwrap();

    let lora = format!("one={}", adapter_dir.display());
    let server = Server::start(
        &adapter_dir,
        &["run", s(&model), "--name", "smol", "--lora", &lora],
        Duration::from_secs(180),
    );
    let base = server.base.clone();
    let models: serde_json::Value = ureq::get(&format!("{base}/v1/models"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let one = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "one")
        .unwrap_or_else(|| panic!("{models}"));
    assert_eq!(one["parent"], "smol");
    let smol = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "smol")
        .unwrap_or_else(|| panic!("{models}"));
    // The base's number format, as the GGUF header names it.
    assert_eq!(smol["precision"], "Q4_1", "{models}");
    let complete = |model: &str| -> String {
        let body = serde_json::json!({"model": model, "prompt": "The sea is", "max_tokens": 6, "temperature": 0});
        let v: serde_json::Value = ureq::post(&format!("{base}/v1/completions"))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        v["choices"][0]["text"].as_str().unwrap().to_owned()
    };
    assert_ne!(complete("smol:one"), complete("smol"));
}
