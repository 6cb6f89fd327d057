//! `POST /v1/models/{name}/explain` on a real image photon: the same admission as predict (401,
//! 403 for a cross-site page, 413), field-named 400s for parameters over the `[explain]` limits, 422 for inputs that do
//! not fit, 404 for a model that cannot explain, and a good answer whose integrated gradients
//! add up to the score difference.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use lepton_data::Preprocessor;
use lepton_nn::{LossSpec, Model, ModelSpec};
use lepton_photon::serving::PhotonBackend;
use lepton_photon::{Photon, PhotonContents};
use lepton_serve::{AppState, ServeConfig, Tokens};
use serde_json::{json, Value};

use crate::{json_req, send, Fake};

/// A random-weight 1x6x6 image CNN with three classes.
fn write_image_photon(path: &Path) {
    let spec: ModelSpec = toml::from_str(
        r#"layers = [
            { type = "conv2d", out-channels = 4, kernel = 3, padding = 1 }, { type = "relu" },
            { type = "max-pool2d", kernel = 2 }, { type = "flatten" }, { type = "linear", out-features = 3 },
        ]"#,
    )
    .unwrap();
    let varmap = VarMap::new();
    Model::new(
        &spec,
        &[1, 6, 6],
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    lepton_nn::init_seeded(&varmap, 7).unwrap();
    let weights: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let contents = PhotonContents {
        name: "img".into(),
        model: spec,
        input_shape: vec![1, 6, 6],
        loss: LossSpec::default(),
        preprocessor: Preprocessor::Image {
            channels: 1,
            height: 6,
            width: 6,
            mean: vec![0.0],
            std: vec![1.0],
            class_names: vec!["a".into(), "b".into(), "c".into()],
        },
        metrics: json!({}),
    };
    Photon::write(path, &contents, &weights).unwrap();
}

fn state(dir: &Path, cfg: ServeConfig) -> AppState {
    write_image_photon(&dir.join("img.photon"));
    let state = AppState::new(
        cfg,
        Tokens::load(None, Some("pt:predict;at:admin")).unwrap(),
        Some(lepton_serve::loader(|path, name| {
            PhotonBackend::open(path, name).map(|b| Arc::new(b) as Arc<dyn lepton_serve::Backend>)
        })),
    );
    state.load("img", &dir.join("img.photon")).unwrap();
    state.insert("fake", Arc::new(Fake::new(Duration::ZERO)), None);
    state
}

fn pixels() -> Vec<u32> {
    (0..36).map(|i| (i * 37 % 256) as u32).collect()
}

async fn post(state: &AppState, model: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
    let uri = format!("/v1/models/{model}/explain");
    let (s, _, bytes) = send(state, json_req("POST", &uri, &body.to_string(), token)).await;
    (s, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn explain_answers_with_complete_integrated_gradients_behind_the_predict_token() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), ServeConfig::default());
    let body = json!({
        "inputs": [pixels()], "method": "integrated-gradients", "steps": 128, "target": 2
    });
    assert_eq!(post(&state, "img", &body, None).await.0, 401);
    assert_eq!(post(&state, "img", &body, Some("wrong")).await.0, 401);
    // As on predict: an admin token may predict, a cross-site page may not (403).
    assert_eq!(post(&state, "img", &body, Some("at")).await.0, 200);
    let mut r = json_req(
        "POST",
        "/v1/models/img/explain",
        &body.to_string(),
        Some("pt"),
    );
    r.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    assert_eq!(send(&state, r).await.0, 403);
    let (s, v) = post(&state, "img", &body, Some("pt")).await;
    assert_eq!(s, 200, "{v}");
    let e = &v["explanation"];
    assert_eq!(e["method"], "integrated-gradients");
    assert_eq!(e["target"], 2);
    assert_eq!(e["shape"], json!([1, 6, 6]));
    let a: Vec<f64> = serde_json::from_value(e["attributions"].clone()).unwrap();
    assert_eq!(a.len(), 36);
    let c = &e["checks"];
    let delta = c["score-input"].as_f64().unwrap() - c["score-baseline"].as_f64().unwrap();
    assert!(
        (a.iter().sum::<f64>() - delta).abs() < 1e-3 * delta.abs().max(1.0),
        "{c}"
    );
    // The default target is the predicted class; occlusion and saliency answer too.
    for method in ["saliency", "gradient-x-input", "occlusion"] {
        let (s, v) = post(
            &state,
            "img",
            &json!({ "inputs": [pixels()], "method": method, "window": 2 })
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    if method != "occlusion" {
                        o.remove("window");
                    }
                    Value::Object(o)
                })
                .unwrap(),
            Some("pt"),
        )
        .await;
        assert_eq!(s, 200, "{method}: {v}");
        assert_eq!(
            v["explanation"]["attributions"].as_array().unwrap().len(),
            36
        );
    }
    // Explanations are timed per model and method beside the request counters predict has.
    let (_, _, body) = send(&state, json_req("GET", "/metrics", "", None)).await;
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains(
            "lepton_explanation_duration_seconds_count{model=\"img\",method=\"integrated-gradients\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "lepton_explanation_duration_seconds_count{model=\"img\",method=\"occlusion\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("lepton_requests_total{model=\"img\",route=\"/v1/models/{name}/explain\",status=\"200\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn explain_refuses_work_over_the_limits_and_inputs_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServeConfig::default();
    cfg.limits.max_body_bytes = 2000;
    cfg.explain.max_steps = 100;
    let state = state(dir.path(), cfg);
    let t = Some("pt");
    // Above the configured step limit: 400 naming the field, before any model call.
    let (s, v) = post(
        &state,
        "img",
        &json!({ "inputs": [pixels()], "method": "integrated-gradients", "steps": 101 }),
        t,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("steps"), "{v}");
    // Too many occlusion windows for a 1-pixel stride? Not here (6x6); a window that does not fit is named.
    let (s, v) = post(
        &state,
        "img",
        &json!({ "inputs": [pixels()], "method": "occlusion", "window": 7 }),
        t,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("window"), "{v}");
    // An unknown parameter and an unknown method are named.
    for (body, needle) in [
        (
            json!({ "inputs": [pixels()], "method": "saliency", "stepz": 3 }),
            "stepz",
        ),
        (json!({ "inputs": [pixels()], "method": "lime" }), "lime"),
        (
            json!({ "inputs": [pixels()], "method": "saliency", "target": 9 }),
            "target",
        ),
        (
            json!({ "inputs": [pixels()], "method": "permutation" }),
            "permutation",
        ),
    ] {
        let (s, v) = post(&state, "img", &body, t).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{body}: {v}");
    }
    // Inputs that do not fit the model, or more than one sample: 422 naming the inputs.
    for body in [
        json!({ "inputs": [[1, 2, 3]], "method": "saliency" }),
        json!({ "inputs": [pixels(), pixels()], "method": "saliency" }),
    ] {
        let (s, v) = post(&state, "img", &body, t).await;
        assert_eq!(s, 422, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains("inputs"), "{v}");
    }
    // A body over the limit: 413 from the route's guard.
    let big = json!({ "inputs": [vec![255u32; 1000]], "method": "saliency" });
    assert_eq!(post(&state, "img", &big, t).await.0, 413);
    // A model without explanations: 404; an unknown model: 404.
    let body = json!({ "inputs": [[1, 2, 3, 4]], "method": "saliency" });
    assert_eq!(post(&state, "fake", &body, t).await.0, 404);
    assert_eq!(post(&state, "nope", &body, t).await.0, 404);
}
