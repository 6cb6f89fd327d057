//! Admin (scope `admin`): load and unload LoRA adapters of a served language model at run time,
//! only from the configured models folder (the same path rules as model loading). Requests then
//! name an adapter as `"model": "base:adapter"` or `"adapter"`; `GET /v1/models` lists it with
//! `parent` = the base.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::llm::{api_error, InferError};
use crate::routes::admin::{resolve_in, valid_name};
use crate::state::AppState;

/// Load (or replace) a LoRA adapter of a served language model.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdapterRequest {
    /// Name requests use (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// PEFT adapter folder (`adapter_config.json`, `adapter_model.safetensors`) relative to the
    /// models folder.
    pub path: String,
}

#[utoipa::path(post, path = "/v1/admin/models/{model}/adapters", tag = "admin",
    params(("model" = String, Path, description = "a served text-generation model")),
    request_body = AdapterRequest,
    responses((status = 201), (status = 400), (status = 401), (status = 403), (status = 404),
        (status = 422, description = "the folder is not an adapter for this model (the file, field or tensor is named)")),
    security(("bearer" = [])))]
pub async fn load(
    State(state): State<AppState>,
    Path(model): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: AdapterRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    if !valid_name(&req.name) {
        return Err(ApiError::field(
            "name",
            format!("'{}': use 1-64 letters, digits, '-', '_' or '.'", req.name),
        ));
    }
    let dir = state
        .inner
        .config
        .models_dir
        .clone()
        .ok_or(ApiError::Forbidden("admin"))?;
    let served = state.inner.llms.get(&model)?;
    let path = resolve_in(&dir, &req.path)?;
    let (name, p) = (req.name.clone(), path.clone());
    let replaced = tokio::task::spawn_blocking(move || served.model.load_adapter(&name, &p))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| match e {
            InferError::BadRequest {
                field: "path",
                message,
            } => ApiError::Unprocessable(format!("path '{}': {message}", req.path)),
            other => api_error(other),
        })?;
    tracing::info!(%model, adapter = %req.name, path = %path.display(), replaced, "adapter loaded");
    Ok((
        StatusCode::CREATED,
        Json(json!({"loaded": req.name, "model": model, "replaced": replaced})),
    ))
}

#[utoipa::path(delete, path = "/v1/admin/models/{model}/adapters/{name}", tag = "admin",
    params(("model" = String, Path), ("name" = String, Path)),
    responses((status = 200), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn unload(
    State(state): State<AppState>,
    Path((model, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let served = state.inner.llms.get(&model)?;
    if served.model.unload_adapter(&name) {
        tracing::info!(%model, adapter = %name, "adapter unloaded");
        Ok(Json(json!({"unloaded": name, "model": model})))
    } else {
        Err(ApiError::NotFound(format!(
            "model '{model}' has no adapter named '{name}'"
        )))
    }
}
