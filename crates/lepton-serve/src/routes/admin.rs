//! Admin (scope `admin`): load, swap and unload models at runtime, only from the configured
//! models folder.

use std::path::{Component, Path as FsPath, PathBuf};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// Load (or replace) a model.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Name to serve it under (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// File name relative to the models folder.
    pub path: String,
}

/// Whether `n` can name a model or an adapter (no `:`, which separates them in requests).
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !n.starts_with('.')
}

/// Resolve `rel` inside `dir`, refusing absolute paths, `..`, and symlinks that leave the folder.
pub fn resolve_in(dir: &FsPath, rel: &str) -> Result<PathBuf, ApiError> {
    let p = FsPath::new(rel);
    if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(ApiError::BadRequest(format!(
            "path '{rel}': must be a plain relative path inside the models folder"
        )));
    }
    let base = dir
        .canonicalize()
        .map_err(|e| ApiError::Internal(format!("models folder {}: {e}", dir.display())))?;
    let full = base.join(p).canonicalize().map_err(|_| {
        ApiError::NotFound(format!("path '{rel}': no such file in the models folder"))
    })?;
    if !full.starts_with(&base) {
        return Err(ApiError::BadRequest(format!(
            "path '{rel}': leaves the models folder"
        )));
    }
    Ok(full)
}

#[utoipa::path(post, path = "/v1/admin/models", tag = "admin", request_body = LoadRequest,
    responses((status = 201), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)), security(("bearer" = [])))]
pub async fn load(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: LoadRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    if !valid_name(&req.name) {
        return Err(ApiError::BadRequest(format!(
            "name '{}': use 1-64 letters, digits, '-', '_' or '.'",
            req.name
        )));
    }
    let dir = state
        .inner
        .config
        .models_dir
        .clone()
        .ok_or(ApiError::Forbidden("admin"))?;
    let path = resolve_in(&dir, &req.path)?;
    let replaced = state.model(&req.name).is_ok();
    let st = state.clone();
    let name = req.name.clone();
    let p = path.clone();
    tokio::task::spawn_blocking(move || st.load(&name, &p))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Unprocessable(format!("path '{}': {}", req.path, e.chain())))?;
    tracing::info!(model = %req.name, path = %path.display(), replaced, "model loaded");
    Ok((
        StatusCode::CREATED,
        Json(json!({"loaded": req.name, "replaced": replaced})),
    ))
}

#[utoipa::path(delete, path = "/v1/admin/models/{name}", tag = "admin", params(("name" = String, Path)),
    responses((status = 200), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn unload(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if state.remove(&name) {
        tracing::info!(model = %name, "model unloaded");
        Ok(Json(json!({"unloaded": name})))
    } else {
        Err(ApiError::NotFound(format!("no model named '{name}'")))
    }
}
