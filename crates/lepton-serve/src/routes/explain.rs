//! `POST /v1/models/{name}/explain`: an attribution for one input. The same admission as predict
//! (token with the `predict` scope, rate limit, body limit: the route's [`super::guard::Policy`]),
//! the request checked against the `[explain]` limits before any model call (400 naming the field),
//! and the forward/backward passes on the blocking pool, never on the async runtime.
//!
//! Body: `{"inputs": [sample], "method": "integrated-gradients", "target": 3, "steps": 64, ...}`
//! (one sample as in predict: raw numbers, or `instances` with one object of named columns;
//! `background` rows of raw numbers for kernel SHAP); the other fields are
//! `lepton_explain::ExplainRequest`'s. Answer: `{"model", "explanation": {"method", "target",
//! "shape", "attributions", "score", "params", "checks"}}`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::inputs::{json_features, parse_json};
use crate::llm::{api_error, input_error};
use crate::offload;
use crate::routes::log_payload;
use crate::state::AppState;

/// The fields that carry data; everything else is the explanation request.
const DATA_FIELDS: [&str; 3] = ["inputs", "instances", "background"];

/// Explain one prediction; see the module docs.
#[utoipa::path(post, path = "/v1/models/{name}/explain", tag = "predict",
    params(("name" = String, Path, description = "model name")),
    request_body(content = Object, description = "one input (`inputs` or `instances`), `method` and its parameters"),
    responses((status = 200, description = "the attribution"), (status = 400, description = "a parameter above its limit or invalid, named"),
        (status = 401), (status = 403), (status = 404, description = "unknown model, or a model that cannot explain"), (status = 413),
        (status = 415), (status = 422, description = "inputs do not fit the model"), (status = 429)),
    security(("bearer" = [])))]
pub async fn explain(
    State(state): State<AppState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let served = state.model(&name)?;
    let limits = state.inner.config.limits.clone();
    let explain_limits = state.inner.config.explain.clone();
    let backend = served.backend.clone();
    let st = state.clone();
    let model = name.clone();
    let answer = offload::run(&state, "explanation", move || {
        let body = parse_json(&bytes, &limits)?;
        log_payload(&st, &model, &body);
        let (features, n) = json_features(&body, backend.as_ref(), &limits)?;
        if n != 1 {
            return Err(ApiError::Unprocessable(format!(
                "inputs: one sample per explanation, got {n}"
            )));
        }
        let mut background = Vec::new();
        if let Some(rows) = body.get("background") {
            let rows = rows.as_array().ok_or_else(|| {
                ApiError::Unprocessable("background: expected an array of rows".into())
            })?;
            if rows.len() > explain_limits.max_background {
                return Err(ApiError::field(
                    "background",
                    format!(
                        "{} rows is above the limit of {}",
                        rows.len(),
                        explain_limits.max_background
                    ),
                ));
            }
            let (f, _) = json_features(&json!({ "inputs": rows }), backend.as_ref(), &limits)
                .map_err(|e| match e {
                    ApiError::Unprocessable(m) => {
                        ApiError::Unprocessable(m.replacen("inputs", "background", 1))
                    }
                    other => other,
                })?;
            background = f;
        }
        let mut request = body.as_object().cloned().unwrap_or_default();
        for k in DATA_FIELDS {
            request.remove(k);
        }
        let started = std::time::Instant::now();
        let answer = backend
            .explain(
                &features,
                &background,
                &Value::Object(request),
                &explain_limits,
            )
            .map_err(|e| match e {
                e @ lepton_infer::InferError::BadRequest {
                    field: "inputs", ..
                } => input_error("inputs", e),
                other => api_error(other),
            })?;
        // Timed per model and method, as predict's forward passes are; the method label is the
        // backend's own name for it (a fixed set), never the request's text.
        if let Some(method) = answer.get("method").and_then(Value::as_str) {
            st.inner
                .metrics
                .observe_explanation(&model, method, started.elapsed().as_secs_f64());
        }
        Ok(answer)
    })
    .await??;
    Ok(Json(json!({ "model": name, "explanation": answer })))
}
