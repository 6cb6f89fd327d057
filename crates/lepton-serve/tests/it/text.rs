//! Text photons served: a character language model answers generation requests (JSON and
//! SSE, on `/v1/models/{name}/generate` and `/v1/completions`), a text classifier answers
//! predict with texts or token ids; bad input gets 4xx naming the part.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use http_body_util::BodyExt;
use lepton_data::{Preprocessor, Vocab};
use lepton_nn::{LossSpec, Model, ModelSpec};
use lepton_photon::serving::PhotonBackend;
use lepton_photon::{GenerateConfig, Generator, Photon, PhotonContents};
use lepton_serve::{AppState, ServeConfig, Tokens};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{json_req, send};

const TEXT: &str = "to be or not to be, that is the question\n";
const MAX_LEN: usize = 12;

/// Write a random-weight text photon: a language model without `classes`, else a classifier.
pub fn write_text_photon(path: &Path, classes: &[&str]) {
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
        metrics: json!({}),
    };
    Photon::write(path, &contents, &weights).unwrap();
}

fn text_state(dir: &Path, cfg: ServeConfig) -> AppState {
    write_text_photon(&dir.join("lm.photon"), &[]);
    write_text_photon(&dir.join("cls.photon"), &["no", "yes"]);
    let state = AppState::new(
        cfg,
        Tokens::load(None, None).unwrap(),
        Some(photon_loader()),
    );
    state.load("lm", &dir.join("lm.photon")).unwrap();
    state.load("cls", &dir.join("cls.photon")).unwrap();
    state
}

fn sse_text(body: &[u8]) -> (String, Vec<Value>) {
    let data: Vec<String> = String::from_utf8(body.to_vec())
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    (text, chunks)
}

fn local(dir: &Path, prompt: &str, cfg: &GenerateConfig) -> String {
    let model = Photon::open(&dir.join("lm.photon"))
        .unwrap()
        .model()
        .unwrap();
    Generator::new(&model)
        .unwrap()
        .generate(prompt, cfg, |_| ControlFlow::Continue(()))
        .unwrap()
        .text
}

#[tokio::test]
async fn a_served_language_model_streams_what_the_generator_makes() {
    let dir = tempfile::tempdir().unwrap();
    let st = text_state(dir.path(), ServeConfig::default());
    let want = local(
        dir.path(),
        "to be",
        &GenerateConfig::new(30)
            .with_temperature(1.3)
            .with_top_k(8)
            .with_seed(42),
    );
    assert_eq!(want.chars().count(), 30);
    let body = json!({"prompt": "to be", "max_tokens": 30, "temperature": 1.3, "top_k": 8, "seed": 42, "stream": true});
    let (s, resp, bytes) = send(
        &st,
        json_req("POST", "/v1/models/lm/generate", &body.to_string(), None),
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&bytes));
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (text, chunks) = sse_text(&bytes);
    assert_eq!(text, want);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
    // The same through /v1/completions, and as one JSON answer.
    let body = json!({"model": "lm", "prompt": "to be", "max_tokens": 30, "temperature": 1.3, "top_k": 8, "seed": 42});
    let (s, _, bytes) = send(
        &st,
        json_req("POST", "/v1/completions", &body.to_string(), None),
    )
    .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["choices"][0]["text"], want.as_str());
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 30);
    // Greedy with a stop string.
    let greedy = local(dir.path(), "to", &GenerateConfig::new(20));
    let stop: String = greedy.chars().skip(3).take(1).collect();
    let body = json!({"prompt": "to", "max_tokens": 20, "temperature": 0, "stop": stop});
    let (s, _, bytes) = send(
        &st,
        json_req("POST", "/v1/models/lm/generate", &body.to_string(), None),
    )
    .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        v["choices"][0]["text"],
        greedy[..greedy.find(&stop).unwrap()]
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // Metrics count the generation.
    let (_, _, bytes) = send(&st, json_req("GET", "/metrics", "", None)).await;
    let m = String::from_utf8(bytes).unwrap();
    assert!(
        m.contains("lepton_llm_time_to_first_token_seconds_count{model=\"lm\"} 3"),
        "{m}"
    );
}

#[tokio::test]
async fn models_list_shows_the_text_input_schema() {
    let dir = tempfile::tempdir().unwrap();
    let st = text_state(dir.path(), ServeConfig::default());
    let (s, _, bytes) = send(&st, json_req("GET", "/v1/models", "", None)).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "a language model is listed once: {v}");
    let vocab = Vocab::chars_of(TEXT).unwrap().len();
    let lm = data.iter().find(|m| m["id"] == "lm").unwrap();
    assert_eq!(
        lm["input"],
        json!({"kind": "text", "vocab-size": vocab, "max-len": MAX_LEN})
    );
    assert_eq!(lm["task"], "text-generation");
    assert_eq!(lm["max_tokens"], 2048);
    let cls = data.iter().find(|m| m["id"] == "cls").unwrap();
    assert_eq!(cls["classes"], json!(["no", "yes"]));
    assert_eq!(cls["input"]["kind"], "text");
    let (s, _, bytes) = send(&st, json_req("GET", "/v2/models/cls", "", None)).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        v["input_schema"],
        json!({"kind": "text", "vocab-size": vocab, "max-len": MAX_LEN})
    );
    let (_, _, bytes) = send(&st, json_req("GET", "/openapi.json", "", None)).await;
    let api: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(api["paths"]["/v1/models/{name}/generate"]["post"].is_object());
    // Unloading the language model takes it off the generation routes too.
    assert!(st.remove("lm"));
    let body = json!({"model": "lm", "prompt": "to"}).to_string();
    let (s, _, _) = send(&st, json_req("POST", "/v1/completions", &body, None)).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_text_classifier_predicts_texts_and_token_ids() {
    let dir = tempfile::tempdir().unwrap();
    let st = text_state(dir.path(), ServeConfig::default());
    let model = Photon::open(&dir.path().join("cls.photon"))
        .unwrap()
        .model()
        .unwrap();
    let want = model
        .predict_texts(&["to be".into(), "question".into()], 1)
        .unwrap();
    let ids = Vocab::chars_of(TEXT).unwrap().encode("question").unwrap();
    let body = json!({"inputs": ["to be", ids]}).to_string();
    let (s, _, bytes) = send(
        &st,
        json_req("POST", "/v1/models/cls/predict?top_k=2", &body, None),
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&bytes));
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    for (i, w) in want.iter().enumerate() {
        let lepton_photon::Prediction::Classes { top, .. } = w else {
            panic!()
        };
        assert_eq!(v["predictions"][i]["label"], top[0].0.as_str());
        let p = v["predictions"][i]["probability"].as_f64().unwrap();
        assert!((p - top[0].1 as f64).abs() < 1e-6, "{v}");
    }
}

#[tokio::test]
async fn bad_text_input_gets_4xx_naming_the_part() {
    let dir = tempfile::tempdir().unwrap();
    let st = text_state(dir.path(), ServeConfig::default());
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v1/models/cls/predict",
            json!({"inputs": ["to be", [0, 1, 999]]}),
            422,
            "inputs[1]: input: token id 999 at position 2 is outside the vocabulary",
        ),
        (
            "/v1/models/cls/predict",
            json!({"inputs": ["to be or not to be"]}),
            422,
            "inputs[0]: input: expected 1 to 12 tokens, got 18",
        ),
        (
            "/v1/models/cls/predict",
            json!({"inputs": ["to", "to bez"]}),
            422,
            "inputs[1]: input: character 'z' (U+007A) at position 5",
        ),
        (
            "/v1/models/cls/predict",
            json!({"inputs": [""]}),
            422,
            "inputs[0]: the text is empty",
        ),
        (
            "/v1/models/cls/predict",
            json!({"inputs": [[1.5]]}),
            422,
            "inputs[0]: input: value 1.5 at position 0 is not a token id",
        ),
        (
            "/v1/models/lm/predict",
            json!({"inputs": ["to be"]}),
            422,
            "inputs[0]: 'lm' is a language model",
        ),
        (
            "/v1/models/lm/generate",
            json!({"prompt": "to bez"}),
            400,
            "prompt: input: character 'z' (U+007A) at position 5",
        ),
        (
            "/v1/models/lm/generate",
            json!({"prompt": ""}),
            400,
            "prompt: the prompt is empty",
        ),
        (
            "/v1/models/lm/generate",
            json!({"max_tokens": 3}),
            400,
            "missing field `prompt`",
        ),
        (
            "/v1/models/lm/generate",
            json!({"prompt": "to", "max_tokens": 2049}),
            400,
            "max_tokens: 2049 is above this server's limit of 2048",
        ),
        (
            "/v1/models/lm/generate",
            json!({"prompt": "to", "max_tokens": 0}),
            400,
            "max_tokens: must be at least 1",
        ),
        (
            "/v1/models/lm/generate",
            json!({"prompt": "to", "temperature": 3}),
            400,
            "temperature: 3 is outside [0, 2]",
        ),
        (
            "/v1/models/lm/generate",
            json!({"prompt": "to", "top_p": 0.5}),
            400,
            "unknown field `top_p`",
        ),
        (
            "/v1/completions",
            json!({"model": "lm", "prompt": "to", "top_p": 0.5}),
            400,
            "top_p: not supported by photon language models",
        ),
        (
            "/v1/completions",
            json!({"model": "lm", "prompt": "to", "max_tokens": 5000}),
            400,
            "max_tokens: 5000 exceeds",
        ),
        (
            "/v1/models/cls/generate",
            json!({"prompt": "to"}),
            400,
            "model: 'cls' is a classification model and does not generate text",
        ),
        (
            "/v1/models/nope/generate",
            json!({"prompt": "to"}),
            404,
            "no model named 'nope'",
        ),
    ];
    for (uri, body, status, needle) in cases {
        let (s, _, bytes) = send(&st, json_req("POST", uri, &body.to_string(), None)).await;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(s, status, "{uri} {body}: {text}");
        assert!(text.contains(needle), "{uri} {body}: {text}");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        // The OpenAI routes nest the error object; the others keep `{"error", "type"}`.
        if lepton_serve::routes::openai::error::is_openai(uri) {
            assert!(v["error"]["type"].is_string(), "{text}");
        } else {
            assert!(v["type"].is_string(), "{text}");
        }
    }
}

/// Start a streamed 65,536-token generation (far longer than any test) and read its first chunk.
async fn long_stream(st: &AppState) -> axum::body::Body {
    let body = json!({"prompt": "to", "max_tokens": lepton_photon::MAX_NEW_TOKENS, "stream": true})
        .to_string();
    let resp = lepton_serve::app(st.clone())
        .oneshot(json_req("POST", "/v1/models/lm/generate", &body, None))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    body
}

fn long_config() -> ServeConfig {
    let mut cfg = ServeConfig::default();
    cfg.llm.max_tokens = lepton_photon::MAX_NEW_TOKENS;
    cfg.llm.generation_concurrency = 1;
    cfg.limits.cpu_concurrency = 1;
    cfg
}

#[tokio::test]
async fn a_client_that_goes_away_stops_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let st = text_state(dir.path(), long_config());
    let body = long_stream(&st).await;
    // The generation holds the only generation permit while it runs.
    assert_eq!(st.inner.generation.available_permits(), 0);
    drop(body);
    // A cancelled generation gives its permit back long before 65,536 tokens are made.
    let started = Instant::now();
    while st.inner.generation.available_permits() == 0 && started.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        st.inner.generation.available_permits(),
        1,
        "the generation kept running"
    );
    assert_eq!(st.inner.llms.get("lm").unwrap().in_flight(), 0);
}

#[tokio::test]
async fn a_long_generation_does_not_starve_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let st = text_state(dir.path(), long_config());
    let _stream = long_stream(&st).await;
    assert_eq!(st.inner.generation.available_permits(), 0);
    // The one request-parsing permit is free: a prediction is answered while it runs.
    let body = json!({"inputs": ["to be"]}).to_string();
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        send(&st, json_req("POST", "/v1/models/cls/predict", &body, None)),
    )
    .await
    .expect("predict waited for the generation");
    assert_eq!(answer.0, 200);
}

#[tokio::test]
async fn generation_needs_a_token_like_predict() {
    let dir = tempfile::tempdir().unwrap();
    write_text_photon(&dir.path().join("lm.photon"), &[]);
    let state = AppState::new(
        ServeConfig::default(),
        Tokens::load(None, Some("secret:predict")).unwrap(),
        Some(photon_loader()),
    );
    state.load("lm", &dir.path().join("lm.photon")).unwrap();
    let body = json!({"prompt": "to", "max_tokens": 3, "seed": 1}).to_string();
    for (uri, b) in [
        ("/v1/models/lm/generate", body.clone()),
        (
            "/v1/completions",
            json!({"model": "lm", "prompt": "to", "max_tokens": 3}).to_string(),
        ),
    ] {
        let (s, _, _) = send(&state, json_req("POST", uri, &b, None)).await;
        assert_eq!(s, 401, "{uri}");
        let (s, _, _) = send(&state, json_req("POST", uri, &b, Some("wrong"))).await;
        assert_eq!(s, 401, "{uri}");
        let (s, _, bytes) = send(&state, json_req("POST", uri, &b, Some("secret"))).await;
        assert_eq!(s, 200, "{uri}: {}", String::from_utf8_lossy(&bytes));
    }
}

/// The loader `lepton serve` uses for `.photon` files.
fn photon_loader() -> lepton_serve::Loader {
    lepton_serve::loader(|path, name| {
        PhotonBackend::open(path, name).map(|b| Arc::new(b) as Arc<dyn lepton_serve::Backend>)
    })
}
