//! The KServe / Triton Open Inference Protocol v2, with the binary tensor data extension that
//! the official `tritonclient[http]` uses by default.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::backend::Output;
use crate::error::ApiError;
use crate::inputs::parse_json;
use crate::offload;
use crate::state::AppState;
use crate::tensor_data::DataType;

const HEADER_LEN: &str = "inference-header-content-length";

#[utoipa::path(get, path = "/v2/health/live", tag = "v2", responses((status = 200)))]
pub async fn live() -> StatusCode {
    StatusCode::OK
}

#[utoipa::path(get, path = "/v2/health/ready", tag = "v2", responses((status = 200), (status = 503)))]
pub async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.inner.ready.load(std::sync::atomic::Ordering::Relaxed)
        && !state.inner.models.read().expect("lock").is_empty()
    {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[utoipa::path(get, path = "/v2", tag = "v2", responses((status = 200, description = "server metadata")))]
pub async fn server_metadata() -> Json<Value> {
    Json(
        json!({"name": "lepton", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]}),
    )
}

fn output_width(state: &AppState, name: &str) -> Result<usize, ApiError> {
    let s = state.model(name)?;
    Ok(s.backend.info().class_names.len().max(1))
}

#[utoipa::path(get, path = "/v2/models/{name}", tag = "v2", params(("name" = String, Path)), responses((status = 200), (status = 404)), security(("bearer" = [])))]
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = state.model(&name)?;
    let info = s.backend.info();
    let width = output_width(&state, &name)?;
    let mut shape: Vec<i64> = vec![-1];
    shape.extend(raw_shape(info).iter().map(|&d| d as i64));
    Ok(Json(json!({
        "name": name, "versions": ["1"], "platform": "lepton",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": shape}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, width]}],
        // Lepton's extension: what the input means (image size, table columns, text vocabulary).
        "input_schema": info.input_schema,
    })))
}

/// The per-sample shape of raw inputs: `[C, H, W]` pixels for images, `[columns]` for tables.
fn raw_shape(info: &crate::backend::ModelInfo) -> Vec<usize> {
    match info.input_schema.get("kind").and_then(Value::as_str) {
        Some("image") => ["channels", "height", "width"]
            .iter()
            .map(|k| info.input_schema[*k].as_u64().unwrap_or(1) as usize)
            .collect(),
        Some("tabular") => vec![info.input_schema["columns"].as_array().map_or(0, Vec::len)],
        _ => info.sample_shape.clone(),
    }
}

#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "v2", params(("name" = String, Path)), responses((status = 200), (status = 404)), security(("bearer" = [])))]
pub async fn model_ready(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.model(&name)?;
    Ok(StatusCode::OK)
}

/// Parse a v2 request body (JSON header of `json_len` bytes, then binary tensors) into the
/// request JSON, the model's features and the sample count. Cheap checks first: the datatype,
/// the shape against the model and the batch limit, the binary size against the shape; then
/// the values. Runs on a blocking thread.
fn decode_request(
    body: &[u8],
    json_len: usize,
    backend: &dyn crate::backend::Backend,
    limits: &crate::config::Limits,
) -> Result<(Value, Vec<f32>, usize), ApiError> {
    let req = parse_json(&body[..json_len], limits)?;
    let mut binary = &body[json_len..];
    let inputs = req
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::BadRequest("'inputs': expected an array of tensors".into()))?;
    if inputs.len() != 1 {
        return Err(ApiError::Unprocessable(format!(
            "'inputs': this model takes exactly one input tensor, got {}",
            inputs.len()
        )));
    }
    let t = &inputs[0];
    let tname = t.get("name").and_then(Value::as_str).unwrap_or("input");
    let what = format!("input '{tname}'");
    let dtype = DataType::parse(
        t.get("datatype")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::BadRequest(format!("{what}: missing 'datatype'")))?,
        &what,
    )?;
    let shape: Vec<usize> = t
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::BadRequest(format!("{what}: missing 'shape'")))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            ApiError::BadRequest(format!("{what}: 'shape' must be non-negative integers"))
        })?;
    let per = raw_shape(backend.info());
    let per_len: usize = per.iter().product();
    let model_shape = format!(
        "[N, {}]",
        per.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if shape.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "{what}: shape [] is a scalar; this model takes a batch of samples {model_shape}"
        )));
    }
    let total = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| ApiError::Unprocessable(format!("{what}: shape {shape:?} is too large")))?;
    let n = shape[0];
    if n == 0 || total / n != per_len {
        return Err(ApiError::Unprocessable(format!(
            "{what}: shape {shape:?} does not fit the model input {model_shape}"
        )));
    }
    if n > limits.max_batch_inputs {
        return Err(ApiError::PayloadTooLarge(format!(
            "{what}: {n} samples, the limit is {}",
            limits.max_batch_inputs
        )));
    }
    let values = match t.get("parameters").and_then(|p| p.get("binary_data_size")) {
        Some(size) => {
            let size = size
                .as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("{what}: binary_data_size must be a byte count"))
                })?;
            if size > binary.len() {
                return Err(ApiError::BadRequest(format!(
                    "{what}: binary_data_size {size} exceeds the {} bytes sent",
                    binary.len()
                )));
            }
            let want = total.checked_mul(dtype.size());
            if want != Some(size) {
                return Err(ApiError::Unprocessable(format!(
                    "{what}: shape {shape:?} of {} needs {} bytes, binary_data_size is {size}",
                    dtype.name(),
                    total as u128 * dtype.size() as u128
                )));
            }
            let (data, rest) = binary.split_at(size);
            binary = rest;
            dtype.from_binary(data, &what)?
        }
        None => {
            let mut v = Vec::new();
            dtype.from_json(
                t.get("data")
                    .ok_or_else(|| ApiError::BadRequest(format!("{what}: missing 'data'")))?,
                &mut v,
                &what,
            )?;
            v
        }
    };
    if !binary.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "{} bytes of binary data after the declared tensors",
            binary.len()
        )));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(ApiError::Unprocessable(format!(
            "{what}: value {i} is not a finite 32-bit float"
        )));
    }
    if values.len() != total {
        return Err(ApiError::Unprocessable(format!(
            "{what}: shape {shape:?} holds {total} values but {} were sent",
            values.len()
        )));
    }
    let mut features = Vec::with_capacity(values.len());
    for (i, raw) in values.chunks(per_len).enumerate() {
        features.extend(
            backend
                .raw_features(raw)
                .map_err(|e| crate::llm::input_error(&format!("{what}[{i}]"), e))?,
        );
    }
    Ok((req, features, n))
}

/// Inference: one input tensor `[N, ...]` of raw values (pixels 0-255 or table columns).
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "v2", params(("name" = String, Path)),
    request_body(content = Object, description = "Open Inference Protocol v2 request (JSON, or JSON header + binary tensors)"),
    responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422), (status = 429), (status = 503)),
    security(("bearer" = [])))]
pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let served = state.model(&name)?;
    let json_len = match headers.get(HEADER_LEN) {
        Some(v) => {
            let n: usize = v
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ApiError::BadRequest(format!("{HEADER_LEN}: not a number")))?;
            if n > body.len() {
                return Err(ApiError::BadRequest(format!(
                    "{HEADER_LEN} is {n} but the body has {} bytes",
                    body.len()
                )));
            }
            n
        }
        None => body.len(),
    };
    let (backend, limits) = (served.backend.clone(), state.inner.config.limits.clone());
    let (req, features, n) = offload::run(&state, "v2 request", move || {
        decode_request(&body, json_len, backend.as_ref(), &limits)
    })
    .await??;
    let info = served.backend.info();
    let outputs = served.batcher.submit(features, n).await?;
    let width = info.class_names.len().max(1);
    let mut data = Vec::with_capacity(n * width);
    for o in outputs {
        match o {
            Output::Probabilities(p) => data.extend(p),
            Output::Value(v) => data.push(v),
        }
    }
    let out_name = req
        .get("outputs")
        .and_then(Value::as_array)
        .and_then(|o| o.first())
        .and_then(|o| o.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("output")
        .to_string();
    let want_binary = req
        .get("outputs")
        .and_then(Value::as_array)
        .and_then(|o| o.first())
        .and_then(|o| o.get("parameters"))
        .and_then(|p| p.get("binary_data"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || req
            .get("parameters")
            .and_then(|p| p.get("binary_data_output"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let mut resp = json!({"model_name": name, "model_version": "1", "outputs": [{"name": out_name, "datatype": "FP32", "shape": [n, width]}]});
    if !id.is_null() {
        resp["id"] = id;
    }
    if want_binary {
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        resp["outputs"][0]["parameters"] = json!({"binary_data_size": bytes.len()});
        let header = serde_json::to_vec(&resp).map_err(|e| ApiError::Internal(e.to_string()))?;
        let hlen = header.len();
        let mut body = header;
        body.extend(bytes);
        let mut r = (StatusCode::OK, body).into_response();
        r.headers_mut().insert(HEADER_LEN, HeaderValue::from(hlen));
        r.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(r);
    }
    resp["outputs"][0]["data"] = json!(data);
    Ok(Json(resp).into_response())
}
