//! LoRA adapters served over SmolLM2 (issue 15, acceptance 5): loaded at start or by the admin
//! routes (admin scope, inside the models folder), picked per request with `"model":
//! "base:adapter"` or `"adapter"`, listed by `/v1/models` with `parent`, unloaded at run time.
//! The adapters are random (small non-zero `B`), written with the `safetensors` crate through
//! `lepton_llm::peft`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use lepton_llm::gguf::LlamaConfig;
use lepton_llm::peft::{LoraModule, LoraPair, PeftAdapter, PeftConfig};
use lepton_serve::{AppState, LanguageModel, ServeConfig, Tokens};
use serde_json::{json, Value};

use crate::openai::{model_path, real_model_config};
use crate::{json_req, send};

fn lcg(state: &mut u64) -> f32 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

/// A random q_proj/v_proj adapter of rank 8 for `c`, written to `dir`.
fn write_adapter(dir: &Path, c: &LlamaConfig, seed: u64) {
    let modules = [LoraModule::QProj, LoraModule::VProj];
    let mut state = seed;
    let mut pairs = BTreeMap::new();
    for layer in 0..c.num_layers {
        for m in modules {
            let (i, o) = m.features(c);
            pairs.insert(
                (layer, m),
                LoraPair {
                    a: (0..8 * i).map(|_| lcg(&mut state)).collect(),
                    b: (0..o * 8).map(|_| 0.1 * lcg(&mut state)).collect(),
                    rank: 8,
                    in_features: i,
                    out_features: o,
                },
            );
        }
    }
    let adapter = PeftAdapter::new(PeftConfig::new(8, 16.0, &modules), pairs, c).unwrap();
    adapter.save(dir).unwrap();
}

fn smol() -> Arc<dyn LanguageModel> {
    let engine = lepton_llm::EngineConfig::default().with_kv_cache_tokens(4096);
    lepton_llm::load_language_model(&model_path("SmolLM2-135M-Instruct.Q4_1.gguf"), engine).unwrap()
}

fn smol_config() -> LlamaConfig {
    let m = lepton_llm::TextModel::load(model_path("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    m.llama().config().clone()
}

async fn call(st: &AppState, method: &str, uri: &str, body: Value, token: &str) -> (u16, Value) {
    let (s, _, bytes) = send(st, json_req(method, uri, &body.to_string(), Some(token))).await;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (s, v)
}

/// The greedy completion of `prompt` under `model` (a base or adapter name).
async fn complete(st: &AppState, model: &str, prompt: &str) -> String {
    let body = json!({"model": model, "prompt": prompt, "max_tokens": 10, "temperature": 0});
    let (s, v) = call(st, "POST", "/v1/completions", body, "pt").await;
    assert_eq!(s, 200, "{model}: {v}");
    assert_eq!(v["model"], model);
    v["choices"][0]["text"].as_str().unwrap().to_owned()
}

fn error_message(v: &Value) -> &str {
    v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not the OpenAI error shape: {v}"))
}

const SEA: &str = "The sea is";
const CITY: &str = "My favourite city is";

#[tokio::test]
async fn adapters_are_hot_loaded_picked_per_request_listed_and_unloaded() {
    let dir = tempfile::tempdir().unwrap();
    let c = smol_config();
    write_adapter(&dir.path().join("one"), &c, 1);
    write_adapter(&dir.path().join("two"), &c, 2);
    let mut other = c.clone();
    other.intermediate_size = 1024;
    std::fs::create_dir(dir.path().join("foreign")).unwrap();
    {
        // An adapter for another base: its MLP is narrower.
        let mut pairs = BTreeMap::new();
        for layer in 0..other.num_layers {
            let (i, o) = LoraModule::UpProj.features(&other);
            pairs.insert(
                (layer, LoraModule::UpProj),
                LoraPair {
                    a: vec![0.01; 4 * i],
                    b: vec![0.01; o * 4],
                    rank: 4,
                    in_features: i,
                    out_features: o,
                },
            );
        }
        PeftAdapter::new(
            PeftConfig::new(4, 8.0, &[LoraModule::UpProj]),
            pairs,
            &other,
        )
        .unwrap()
        .save(&dir.path().join("foreign"))
        .unwrap();
    }
    write_adapter(&dir.path().join("c_attn"), &c, 3);
    let cfg_path = dir.path().join("c_attn/adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .unwrap()
        .replace("\"v_proj\"", "\"c_attn\"");
    std::fs::write(&cfg_path, text).unwrap();

    let tokens = || Tokens::load(None, Some("pt:predict;at:admin")).unwrap();
    let plain = AppState::new(real_model_config(), tokens(), None);
    plain.inner.llms.insert("smol", smol(), 16);
    let cfg = ServeConfig {
        models_dir: Some(dir.path().to_path_buf()),
        ..real_model_config()
    };
    let st = AppState::new(cfg, tokens(), None);
    st.inner.llms.insert("smol", smol(), 16);
    let base_sea = complete(&plain, "smol", SEA).await;
    let base_city = complete(&plain, "smol", CITY).await;

    // Unknown adapter: 404 in the OpenAI error shape, naming what is served.
    let body = json!({"model": "smol:one", "prompt": SEA, "max_tokens": 4});
    let (s, v) = call(&st, "POST", "/v1/completions", body, "pt").await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"]["type"], "not_found_error", "{v}");
    assert!(error_message(&v).contains("'smol:one'"), "{v}");

    // Hot load: admin scope only, then the adapter changes the answer of requests naming it.
    let load = |name: &str, path: &str| json!({"name": name, "path": path});
    let uri = "/v1/admin/models/smol/adapters";
    assert_eq!(
        call(&st, "POST", uri, load("one", "one"), "pt").await.0,
        403
    );
    let (s, v) = call(&st, "POST", uri, load("one", "one"), "at").await;
    assert_eq!((s, &v["replaced"]), (201, &json!(false)), "{v}");
    let one_sea = complete(&st, "smol:one", SEA).await;
    assert_ne!(one_sea, base_sea, "the adapter changed nothing");
    assert_eq!(complete(&st, "one", SEA).await, one_sea);
    // The base, right after the adapter ran the same prompt: bit-identical to no adapters.
    assert_eq!(complete(&st, "smol", SEA).await, base_sea);

    // Listed as vLLM lists adapters.
    let (_, _, bytes) = send(&st, json_req("GET", "/v1/models", "", Some("pt"))).await;
    let list: Value = serde_json::from_slice(&bytes).unwrap();
    let entry = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "one")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(
        (&entry["parent"], &entry["lora_rank"]),
        (&json!("smol"), &json!(8))
    );

    // Two adapters and the base at once: each equals its solo output.
    let (s, v) = call(&st, "POST", uri, load("two", "two"), "at").await;
    assert_eq!(s, 201, "{v}");
    let jobs = [
        ("smol:one", CITY),
        ("two", SEA),
        ("smol", CITY),
        ("smol:two", CITY),
    ];
    let mut solo = Vec::new();
    for (m, p) in jobs {
        solo.push(complete(&st, m, p).await);
    }
    assert_eq!(solo[2], base_city);
    assert_ne!(solo[0], solo[3]);
    let (a, b, c2, d) = tokio::join!(
        complete(&st, jobs[0].0, jobs[0].1),
        complete(&st, jobs[1].0, jobs[1].1),
        complete(&st, jobs[2].0, jobs[2].1),
        complete(&st, jobs[3].0, jobs[3].1),
    );
    assert_eq!([a, b, c2, d], solo.as_slice());

    // Requests per adapter in the metrics (labels bounded by the loaded adapters).
    let (_, _, bytes) = send(&st, json_req("GET", "/metrics", "", Some("pt"))).await;
    let metrics = String::from_utf8(bytes).unwrap();
    for label in ["model=\"smol:one\"", "model=\"smol:two\"", "model=\"smol\""] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("lepton_requests_total{") && l.contains(label)),
            "{label} missing"
        );
    }

    // Unloading restores the base answer for the name's requests: 404, the base unchanged.
    let del = "/v1/admin/models/smol/adapters/one";
    assert_eq!(call(&st, "DELETE", del, json!(null), "pt").await.0, 403);
    assert_eq!(call(&st, "DELETE", del, json!(null), "at").await.0, 200);
    assert_eq!(call(&st, "DELETE", del, json!(null), "at").await.0, 404);
    let body = json!({"model": "one", "prompt": SEA, "max_tokens": 4});
    let (s, v) = call(&st, "POST", "/v1/completions", body, "pt").await;
    assert_eq!(s, 404, "{v}");
    assert!(
        error_message(&v).contains("smol:two"),
        "lists what is loaded: {v}"
    );
    assert_eq!(complete(&st, "smol", SEA).await, base_sea);

    // Bad adapters: named tensor or module, 422; paths outside the folder, 400; unknown base, 404.
    let (s, v) = call(&st, "POST", uri, load("bad", "foreign"), "at").await;
    assert_eq!(s, 422, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("base_model.model.model.layers.0.mlp.up_proj.lora_B.weight"),
        "{msg}"
    );
    let (s, v) = call(&st, "POST", uri, load("bad", "c_attn"), "at").await;
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("\"c_attn\""), "{v}");
    assert_eq!(
        call(&st, "POST", uri, load("bad", "../x"), "at").await.0,
        400
    );
    assert_eq!(
        call(&st, "POST", uri, load("a:b", "two"), "at").await.0,
        400
    );
    let other_base = "/v1/admin/models/nope/adapters";
    assert_eq!(
        call(&st, "POST", other_base, load("x", "two"), "at")
            .await
            .0,
        404
    );
    let names: Vec<_> = st.inner.llms.get("smol").unwrap().model.adapters();
    assert_eq!(names.len(), 1, "only 'two' is loaded");
}
