//! Bad input found by fuzzing (scripts/schemathesis.sh) and the remaining cases of issue 4's
//! acceptance 4: each answers a 4xx JSON error naming the request part, never a 5xx.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use lepton_serve::ServeConfig;
use serde_json::Value;

use crate::{json_req, send, state_with, Fake};

async fn expect(state: &lepton_serve::AppState, req: Request<Body>, want: u16, needle: &str) {
    let uri = req.uri().clone();
    let (s, _, body) = send(state, req).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(s, want, "{uri}: {text}");
    let v: Value =
        serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{uri}: not JSON: {text}"));
    assert!(
        v["error"].as_str().unwrap().contains(needle),
        "{uri}: {text} should mention {needle}"
    );
}

fn fake_state() -> lepton_serve::AppState {
    state_with(
        ServeConfig::default(),
        None,
        Arc::new(Fake::new(Duration::ZERO)),
    )
}

#[tokio::test]
async fn values_beyond_f32_are_refused() {
    let state = fake_state();
    // 1e300 is a finite JSON number but infinite as f32.
    let v1 = r#"{"inputs": [[1e300, 0, 0, 0]]}"#;
    expect(
        &state,
        json_req("POST", "/v1/models/fake/predict", v1, None),
        422,
        "inputs[0][0]",
    )
    .await;
    let v2 = r#"{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [0, 1e300, 0, 0]}]}"#;
    expect(
        &state,
        json_req("POST", "/v2/models/fake/infer", v2, None),
        422,
        "finite",
    )
    .await;
    // NaN sent as binary FP32.
    let header = r#"{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]}"#;
    let mut body = header.as_bytes().to_vec();
    for v in [0.0f32, f32::NAN, 0.0, 0.0] {
        body.extend(v.to_le_bytes());
    }
    let req = Request::post("/v2/models/fake/infer")
        .header("inference-header-content-length", header.len())
        .body(Body::from(body))
        .unwrap();
    expect(&state, req, 422, "value 1").await;
}

#[tokio::test]
async fn v2_shapes_that_overflow_or_do_not_fit() {
    let state = fake_state();
    let huge = r#"{"inputs": [{"name": "input", "shape": [4294967296, 4294967296, 16], "datatype": "FP32", "data": [0]}]}"#;
    expect(
        &state,
        json_req("POST", "/v2/models/fake/infer", huge, None),
        422,
        "too large",
    )
    .await;
    let zero =
        r#"{"inputs": [{"name": "input", "shape": [0, 4], "datatype": "FP32", "data": []}]}"#;
    expect(
        &state,
        json_req("POST", "/v2/models/fake/infer", zero, None),
        422,
        "does not fit",
    )
    .await;
    let neg = r#"{"inputs": [{"name": "input", "shape": [-1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}"#;
    expect(
        &state,
        json_req("POST", "/v2/models/fake/infer", neg, None),
        400,
        "shape",
    )
    .await;
    let two = r#"{"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}, {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}"#;
    expect(
        &state,
        json_req("POST", "/v2/models/fake/infer", two, None),
        422,
        "exactly one",
    )
    .await;
    let header = r#"{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 64}}]}"#;
    let req = Request::post("/v2/models/fake/infer")
        .header("inference-header-content-length", header.len())
        .body(Body::from(header.as_bytes().to_vec()))
        .unwrap();
    expect(&state, req, 400, "binary_data_size").await;
    let req = Request::post("/v2/models/fake/infer")
        .header("inference-header-content-length", "99999")
        .body(Body::from("{}"))
        .unwrap();
    expect(&state, req, 400, "inference-header-content-length").await;
}

#[tokio::test]
async fn unknown_models_on_every_route() {
    let state = state_with(
        ServeConfig::default(),
        Some("t:predict,admin"),
        Arc::new(Fake::new(Duration::ZERO)),
    );
    let infer = r#"{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}"#;
    for (method, uri, body) in [
        (
            "POST",
            "/v1/models/nope/predict",
            r#"{"inputs": [[0, 0, 0, 0]]}"#,
        ),
        ("POST", "/v2/models/nope/infer", infer),
        ("GET", "/v2/models/nope", ""),
        ("GET", "/v2/models/nope/ready", ""),
        ("DELETE", "/v1/admin/models/nope", ""),
    ] {
        expect(&state, json_req(method, uri, body, Some("t")), 404, "nope").await;
    }
}

/// Found by schemathesis: axum's own rejections (bad query, wrong method, bad path) answered
/// text/plain instead of the documented JSON error body.
#[tokio::test]
async fn framework_rejections_are_json_errors() {
    let state = fake_state();
    let body = r#"{"inputs": [[0, 0, 0, 0]]}"#;
    expect(
        &state,
        json_req("POST", "/v1/models/fake/predict?top_k=-1", body, None),
        400,
        "top_k",
    )
    .await;
    let (s, resp, bytes) = send(&state, json_req("GET", "/v1/models/fake/predict", "", None)).await;
    assert_eq!(s, 405);
    assert!(resp.headers().get("allow").is_some());
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["type"], "method_not_allowed");
    let req = Request::post("/v1/models/%FF%FE/predict")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let (s, resp, bytes) = send(&state, req).await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(serde_json::from_slice::<Value>(&bytes).unwrap()["error"].is_string());
}
