//! `/v1`: predict with a model, list models.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::header;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use std::sync::Arc;

use crate::backend::{Backend, Output};
use crate::config::Limits;
use crate::error::ApiError;
use crate::images::{decode_image, decode_small_image, decoded_bytes};
use crate::inputs::body_features;
use crate::offload;
use crate::routes::log_payload;
use crate::state::AppState;

/// JSON bodies up to this size are read on the request's own task: parsing 16 KiB (a few
/// thousand numbers) takes tens of microseconds, less than the hand-off to a blocking thread
/// and back; larger bodies are parsed off the async runtime ([`offload`]).
const INLINE_JSON_BYTES: usize = 16 * 1024;

/// Images that decode to at most this many bytes (64x64 RGBA), for a model whose input has at
/// most this many values, are decoded on the request's task, for the same reason: the header
/// checks bound the work before it starts.
const INLINE_IMAGE_BYTES: u64 = 16 * 1024;

/// Query parameters of `predict`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PredictQuery {
    /// How many labels to return per input (default 3).
    pub top_k: Option<usize>,
}

/// A JSON prediction request: `inputs` (raw numbers per sample: pixels 0-255 in C,H,W order,
/// or table columns in order) or `instances` (objects of named column values).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct PredictRequest {
    #[schema(value_type = Option<Vec<Vec<f32>>>)]
    pub inputs: Option<Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub instances: Option<Value>,
}

/// One label with its probability.
#[derive(Debug, Serialize, ToSchema)]
pub struct Scored {
    pub label: String,
    pub probability: f32,
}

/// The prediction for one input.
#[derive(Debug, Serialize, ToSchema)]
pub struct Prediction {
    /// Most probable label (classification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f32>,
    /// The `top_k` most probable labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top_k: Vec<Scored>,
    /// Predicted value (regression).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PredictResponse {
    pub model: String,
    pub predictions: Vec<Prediction>,
}

fn to_prediction(out: Output, classes: &[String], k: usize) -> Prediction {
    match out {
        Output::Value(v) => Prediction {
            label: None,
            probability: None,
            top_k: Vec::new(),
            value: Some(v),
        },
        Output::Probabilities(p) => {
            let mut idx: Vec<usize> = (0..p.len()).collect();
            idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
            let name = |i: usize| classes.get(i).cloned().unwrap_or_else(|| i.to_string());
            let top_k: Vec<Scored> = idx
                .iter()
                .take(k.max(1))
                .map(|&i| Scored {
                    label: name(i),
                    probability: p[i],
                })
                .collect();
            Prediction {
                label: Some(top_k[0].label.clone()),
                probability: Some(top_k[0].probability),
                top_k,
                value: None,
            }
        }
    }
}

/// Predict with a model: JSON (`inputs` / `instances`), a raw PNG/JPEG body, or multipart images.
#[utoipa::path(post, path = "/v1/models/{name}/predict", tag = "predict",
    params(("name" = String, Path, description = "model name"), PredictQuery),
    request_body(content = PredictRequest, description = "JSON inputs, or an image/png | image/jpeg body, or multipart/form-data with image parts"),
    responses((status = 200, body = PredictResponse), (status = 400, description = "malformed body"), (status = 401), (status = 403),
        (status = 404, description = "unknown model"), (status = 413), (status = 415), (status = 422, description = "inputs do not fit the model"),
        (status = 429), (status = 503)),
    security(("bearer" = [])))]
pub async fn predict(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<PredictQuery>, QueryRejection>,
    req: Request,
) -> Result<Json<PredictResponse>, ApiError> {
    let served = state.model(&name)?;
    let Query(q) =
        q.map_err(|e| ApiError::BadRequest(format!("query string: {}", e.body_text())))?;
    let limits = state.inner.config.limits.clone();
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let backend = served.backend.clone();
    let (features, n) = if ctype.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("multipart body: {e}")))?;
        let mut features = Vec::new();
        let mut n = 0;
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| ApiError::BadRequest(format!("multipart body: {e}")))?
        {
            n += 1;
            if n > limits.max_batch_inputs {
                return Err(ApiError::PayloadTooLarge(format!(
                    "more than {} images",
                    limits.max_batch_inputs
                )));
            }
            let what = format!("multipart part '{}'", field.name().unwrap_or("?"));
            let bytes = field
                .bytes()
                .await
                .map_err(|e| ApiError::BadRequest(format!("{what}: {e}")))?;
            features.extend(image_features(&state, &backend, bytes, &limits, what).await?);
        }
        if n == 0 {
            return Err(ApiError::BadRequest(
                "multipart body has no image parts".into(),
            ));
        }
        (features, n)
    } else {
        let bytes = Bytes::from_request(req, &state)
            .await
            .map_err(|e| ApiError::PayloadTooLarge(e.to_string()))?;
        if ctype.starts_with("image/") || ctype.starts_with("application/octet-stream") {
            let f = image_features(&state, &backend, bytes, &limits, "request body".into()).await?;
            (f, 1)
        } else {
            let st = state.clone();
            let model = name.clone();
            let inline = bytes.len() <= INLINE_JSON_BYTES;
            let features = move || {
                let log = |body: &Value| log_payload(&st, &model, body);
                let logs = st.inner.config.logging.log_payloads;
                let log: Option<&dyn Fn(&Value)> = if logs { Some(&log) } else { None };
                body_features(&bytes, backend.as_ref(), &limits, log)
            };
            if inline {
                features()?
            } else {
                offload::run(&state, "JSON body", features).await??
            }
        }
    };
    let outputs = served.batcher.submit(features, n).await?;
    let k = q.top_k.unwrap_or(3);
    let classes = &served.backend.info().class_names;
    Ok(Json(PredictResponse {
        model: name,
        predictions: outputs
            .into_iter()
            .map(|o| to_prediction(o, classes, k))
            .collect(),
    }))
}

/// Decode one image and turn it into features, on a blocking thread.
async fn image_features(
    state: &AppState,
    backend: &Arc<dyn Backend>,
    bytes: Bytes,
    limits: &Limits,
    what: String,
) -> Result<Vec<f32>, ApiError> {
    // Small on both sides: the image, and the model input it is resized to.
    let sample: usize = backend.info().sample_shape.iter().product();
    if sample as u64 <= INLINE_IMAGE_BYTES {
        if let Some(img) = decode_small_image(&bytes, limits, &what, INLINE_IMAGE_BYTES)? {
            return backend
                .image_features(&img)
                .map_err(|e| crate::llm::input_error(&what, e));
        }
    } else {
        // Refuse a bad header before waiting for a CPU permit.
        decoded_bytes(&bytes, limits, &what)?;
    }
    let (backend, limits) = (Arc::clone(backend), limits.clone());
    let features = move || {
        let img = decode_image(&bytes, &limits, &what)?;
        backend
            .image_features(&img)
            .map_err(|e| crate::llm::input_error(&what, e))
    };
    offload::run(state, "image decoding", features).await?
}

/// The served models.
#[utoipa::path(get, path = "/v1/models", tag = "models", responses((status = 200, description = "model list")), security(("bearer" = [])))]
pub async fn list_models(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let models = state.inner.models.read().expect("models lock");
    let data: Vec<Value> = models
        .iter()
        .map(|(name, s)| {
            let i = s.backend.info();
            json!({"id": name, "object": "model", "task": i.task, "classes": i.class_names, "input": i.input_schema,
                   "workers": s.batcher.worker_count(), "metrics": i.metrics, "version": i.version,
                   "precision": i.precision})
        })
        .collect();
    let photons: Vec<String> = models.keys().cloned().collect();
    drop(models);
    let mut data = data;
    for (name, s) in state.inner.llms.all() {
        if photons.contains(&name) {
            // A language-model photon, listed above with its input schema.
            let i = s.model.info();
            if let Some(entry) = data.iter_mut().find(|d| d["id"] == name.as_str()) {
                entry["max_tokens"] = json!(i.context_length);
            }
            continue;
        }
        let i = s.model.info();
        data.push(
            json!({"id": name, "object": "model", "created": i.created, "owned_by": "lepton",
                         "task": i.task.as_str(), "context_length": i.context_length,
                         "dimensions": (i.dimensions > 0).then_some(i.dimensions),
                         "precision": i.precision}),
        );
        // LoRA adapters, as vLLM lists them: their own id, `parent` the base model.
        for a in s.model.adapters() {
            data.push(
                json!({"id": a.name, "object": "model", "created": i.created,
                             "owned_by": "lepton", "parent": name, "root": name,
                             "task": i.task.as_str(), "context_length": i.context_length,
                             "lora_rank": a.rank, "parameters": a.parameters}),
            );
        }
    }
    Ok(Json(json!({"object": "list", "data": data})))
}
