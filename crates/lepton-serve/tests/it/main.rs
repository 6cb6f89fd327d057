//! Router tests without a socket (`app(state).oneshot`), on a fake backend: a 2x2 image model
//! whose output is a softmax over [sum, -sum] of its features.

mod adversarial;
mod alerts;
mod api;
mod bad_input;
mod deploy;
mod embed_batching;
mod explain;
mod hf_folder;
mod lora;
mod openai;
mod openai_errors;
mod text;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt;
use lepton_serve::{AppState, Backend, InferError, ModelInfo, Output, ServeConfig, Tokens};
use tower::ServiceExt;

pub struct Fake {
    info: ModelInfo,
    pub batches: Mutex<Vec<usize>>,
    pub delay: Duration,
    pub calls: AtomicUsize,
}

impl Fake {
    pub fn new(delay: Duration) -> Self {
        Fake {
            info: ModelInfo {
                name: "fake".into(),
                sample_shape: vec![1, 2, 2],
                class_names: vec!["pos".into(), "neg".into()],
                input_schema: serde_json::json!({"kind": "image", "channels": 1, "height": 2, "width": 2}),
                task: "classification".into(),
                metrics: serde_json::json!({}),
                version: "1".into(),
                precision: "f32".into(),
            },
            batches: Mutex::new(Vec::new()),
            delay,
            calls: AtomicUsize::new(0),
        }
    }
}

impl Backend for Fake {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn image_features(&self, img: &image::DynamicImage) -> Result<Vec<f32>, InferError> {
        let g = img
            .resize_exact(2, 2, image::imageops::FilterType::Nearest)
            .to_luma8();
        Ok(g.as_raw().iter().map(|&p| p as f32 / 255.0).collect())
    }
    fn raw_features(&self, raw: &[f32]) -> Result<Vec<f32>, InferError> {
        if raw.len() != 4 {
            return Err(InferError::bad_request(
                "inputs",
                format!("expected 4 pixel values, got {}", raw.len()),
            ));
        }
        Ok(raw.iter().map(|p| p / 255.0).collect())
    }
    fn row_features(&self, _row: &[(String, String)]) -> Result<Vec<f32>, InferError> {
        Err(InferError::bad_request("inputs", "this model takes images"))
    }
    fn predict(&self, features: &[f32], n: usize) -> Result<Vec<Output>, InferError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.batches.lock().unwrap().push(n);
        Ok(features
            .chunks(4)
            .map(|f| {
                let s: f32 = f.iter().sum();
                let (a, b) = (s.exp(), (-s).exp());
                Output::Probabilities(vec![a / (a + b), b / (a + b)])
            })
            .collect())
    }
}

pub fn state_with(cfg: ServeConfig, tokens: Option<&str>, fake: Arc<Fake>) -> AppState {
    let tokens = Tokens::load(None, tokens).unwrap();
    let state = AppState::new(cfg, tokens, None);
    state.insert("fake", fake, None);
    state
}

pub async fn send(state: &AppState, req: Request<Body>) -> (u16, Response<Body>, Vec<u8>) {
    let resp = lepton_serve::app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (status, Response::from_parts(parts, Body::empty()), bytes)
}

pub fn json_req(method: &str, uri: &str, body: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_string())).unwrap()
}
