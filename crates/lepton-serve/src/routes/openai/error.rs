//! OpenAI's error shape on the OpenAI routes: `{"error": {"message", "type", "param", "code"}}`.
//!
//! Every error response of `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and
//! `/v1/models` (the handlers', the route guard's — auth, rate limits, body limits — and axum's
//! rejections, already made JSON by `routes::json_error`) is rewritten by [`nest`] in the access
//! middleware, so no error path can leave the flat shape the other routes keep. `message` is the
//! flat body's `error`, `code` its `type` (`bad_request`, `rate_limited`, ...), `type` OpenAI's
//! class for the status (`invalid_request_error`, `authentication_error`, ...), and `param` the
//! request field when the error names one ([`ErrorParam`]), else `null`.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::error::ErrorParam;

/// Whether `path` is one of the OpenAI-compatible routes (any method: a 405 there is an
/// OpenAI client's error too).
pub fn is_openai(path: &str) -> bool {
    matches!(
        path,
        "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings" | "/v1/models"
    )
}

/// OpenAI's error class for a status code.
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    }
}

/// The nested OpenAI error body for a flat one (`{"error": message, "type": kind}`).
pub fn nested_body(status: StatusCode, flat: &Value, param: Option<&str>) -> Value {
    let message = match flat.get("error") {
        Some(Value::String(m)) => m.clone(),
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let code = flat.get("type").and_then(Value::as_str).unwrap_or("error");
    json!({
        "error": {
            "message": message,
            "type": error_type(status),
            "param": param,
            "code": code,
        }
    })
}

/// Rewrite an error response's flat JSON body into the nested OpenAI shape, keeping its status,
/// headers (`Retry-After`, `WWW-Authenticate`) and extensions.
pub async fn nest(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    // Error bodies are one short JSON object; a larger one is not ours to rewrite.
    let flat = axum::body::to_bytes(body, 64 * 1024)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null);
    let param = parts.extensions.get::<ErrorParam>().map(|p| p.0.clone());
    let body = nested_body(parts.status, &flat, param.as_deref()).to_string();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_openai_routes_are_nested() {
        for p in [
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/v1/models",
        ] {
            assert!(is_openai(p), "{p}");
        }
        for p in [
            "/v1/models/fake/predict",
            "/v1/models/lm/generate",
            "/v2/models/fake/infer",
            "/v1/admin/models",
        ] {
            assert!(!is_openai(p), "{p}");
        }
    }

    #[test]
    fn nested_body_carries_message_code_param_and_class() {
        let flat = json!({"error": "top_p: 2 is not in (0, 1]", "type": "bad_request"});
        let v = nested_body(StatusCode::BAD_REQUEST, &flat, Some("top_p"));
        assert_eq!(
            v,
            json!({"error": {
                "message": "top_p: 2 is not in (0, 1]",
                "type": "invalid_request_error",
                "param": "top_p",
                "code": "bad_request",
            }})
        );
        let v = nested_body(StatusCode::TOO_MANY_REQUESTS, &Value::Null, None);
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["message"], "Too Many Requests");
        assert!(v["error"]["param"].is_null());
    }
}
