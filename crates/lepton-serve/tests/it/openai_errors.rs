//! Error bodies of the OpenAI-compatible routes: every bad request is a 4xx naming the request part,
//! in OpenAI's nested `{"error": {"message", "type", "param", "code"}}` shape (auth and rate-limit
//! errors too), against the fake models of `openai.rs`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use lepton_serve::{AppState, ServeConfig, Tokens};
use serde_json::{json, Value};

use crate::openai::{state, FakeGenerator};
use crate::{json_req, send};

#[tokio::test]
async fn bad_requests_get_4xx_naming_the_part() {
    let (st, _) = state(None, Duration::ZERO);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "/v1/completions",
            "{\"model\": \"gen\", \"prompt\": ".into(),
            400,
            "not valid JSON",
        ),
        (
            "/v1/completions",
            json!({"model": "nope", "prompt": "x"}).to_string(),
            404,
            "no language model named 'nope' (served: emb, gen)",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "x", "max_tokens": 1_000_000_000_000u64}).to_string(),
            400,
            "max_tokens: 1000000000000 exceeds the model's context length of 64",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "x", "max_tokens": 0}).to_string(),
            400,
            "max_tokens: must be at least 1",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "x", "max_tokens": -5}).to_string(),
            400,
            "max_tokens: invalid value",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "word ".repeat(70), "max_tokens": 8}).to_string(),
            400,
            "the prompt has 70 tokens",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "x", "temperature": "hot"}).to_string(),
            400,
            "temperature: invalid type",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "x", "temperature": 3}).to_string(),
            400,
            "temperature: 3 is outside [0, 2]",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "x", "top_p": 0}).to_string(),
            400,
            "top_p",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "x", "bogus": 1}).to_string(),
            400,
            "unknown field `bogus`",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "x", "n": 2}).to_string(),
            400,
            "n: only n = 1",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}).to_string(),
            400,
            "stop: 5 strings",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "messages": []}).to_string(),
            400,
            "messages: not accepted",
        ),
        (
            "/v1/completions",
            json!({"model": "emb", "prompt": "x"}).to_string(),
            400,
            "embeddings model",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gen", "messages": []}).to_string(),
            400,
            "messages: the conversation is empty",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gen", "messages": [{"role": "tool", "content": "x"}]}).to_string(),
            400,
            "messages[0].role",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gen", "messages": [{"role": "user", "content": "x"}], "tools": [{}]})
                .to_string(),
            400,
            "tools: not supported",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gen", "messages": [{"role": "user"}], "frequency_penalty": 0.5})
                .to_string(),
            400,
            "frequency_penalty",
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": []}).to_string(),
            400,
            "input: the array is empty",
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": [1, 2]}).to_string(),
            400,
            "token-id arrays",
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": "x", "dimensions": 7}).to_string(),
            400,
            "dimensions",
        ),
        (
            "/v1/embeddings",
            json!({"model": "gen", "input": "x"}).to_string(),
            400,
            "text-generation model",
        ),
    ];
    for (uri, body, status, needle) in cases {
        let (s, _, bytes) = send(&st, json_req("POST", uri, &body, None)).await;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(s, status, "{uri} {body}: {text}");
        assert!(text.contains(needle), "{uri} {body}: {text} lacks {needle}");
        assert_openai_error(&bytes, &format!("{uri} {body}"));
    }
    // Invalid UTF-8.
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(b"{\"model\": \"gen\", \"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}".to_vec()))
        .unwrap();
    let (s, _, bytes) = send(&st, req).await;
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&bytes).contains("not valid UTF-8 (at byte 59)"));
    assert_openai_error(&bytes, "invalid UTF-8");
}

/// The body is OpenAI's nested error object: `{"error": {"message", "type", "param", "code"}}`
/// with string message, type and code and a string or null param (issue 14, acceptance 5).
#[track_caller]
fn assert_openai_error(body: &[u8], what: &str) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
    let e = v["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: error is not an object: {v}"));
    let keys: Vec<&str> = e.keys().map(String::as_str).collect();
    assert_eq!(keys, ["code", "message", "param", "type"], "{what}: {v}");
    for k in ["message", "type", "code"] {
        assert!(e[k].is_string(), "{what}: {k} is not a string: {v}");
    }
    assert!(
        e["param"].is_string() || e["param"].is_null(),
        "{what}: {v}"
    );
    v
}

#[tokio::test]
async fn openai_error_bodies_are_nested_with_the_param() {
    let (st, _) = state(None, Duration::ZERO);
    let cases: Vec<(&str, Value, u16, Value, &str)> = vec![
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "x", "temperature": 3}),
            400,
            json!("temperature"),
            "invalid_request_error",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "x", "top_p": 0}),
            400,
            json!("top_p"),
            "invalid_request_error",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "word ".repeat(70), "max_tokens": 8}),
            400,
            json!("max_tokens"),
            "invalid_request_error",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gen", "messages": [{"role": "tool", "content": "x"}]}),
            400,
            json!("messages[0].role"),
            "invalid_request_error",
        ),
        (
            "/v1/completions",
            json!({"model": "gen", "prompt": "x", "temperature": "hot"}),
            400,
            json!("temperature"),
            "invalid_request_error",
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": "x", "dimensions": 7}),
            400,
            json!("dimensions"),
            "invalid_request_error",
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": ["a", ""]}),
            400,
            json!("input[1]"),
            "invalid_request_error",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            404,
            Value::Null,
            "not_found_error",
        ),
    ];
    for (uri, body, status, param, kind) in cases {
        let (s, _, bytes) = send(&st, json_req("POST", uri, &body.to_string(), None)).await;
        let v = assert_openai_error(&bytes, &format!("{uri} {body}"));
        assert_eq!(s, status, "{uri} {body}: {v}");
        assert_eq!(v["error"]["param"], param, "{uri} {body}: {v}");
        assert_eq!(v["error"]["type"], kind, "{uri} {body}: {v}");
    }
    // The router's own rejections on these paths: a wrong method.
    let (s, _, bytes) = send(&st, json_req("POST", "/v1/models", "{}", None)).await;
    assert_eq!(s, 405);
    assert_openai_error(&bytes, "POST /v1/models");
    // Other routes keep the flat shape.
    let (s, _, bytes) = send(&st, json_req("POST", "/v1/models/nope/predict", "{}", None)).await;
    assert_eq!(s, 404);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(v["error"].is_string(), "{v}");
    assert_eq!(v["type"], "not_found");
}

#[tokio::test]
async fn openai_auth_and_rate_limit_errors_are_nested() {
    let (st, _) = state(Some("pt:predict"), Duration::ZERO);
    let body = json!({"model": "emb", "input": "x"}).to_string();
    let (s, resp, bytes) = send(&st, json_req("POST", "/v1/embeddings", &body, None)).await;
    assert_eq!(s, 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let v = assert_openai_error(&bytes, "no token");
    assert_eq!(v["error"]["type"], "authentication_error");
    assert_eq!(v["error"]["code"], "unauthorized");
    let req = Request::get("/v1/models").body(Body::empty()).unwrap();
    let (s, _, bytes) = send(&st, req).await;
    assert_eq!(s, 401);
    assert_openai_error(&bytes, "GET /v1/models without a token");

    let mut cfg = ServeConfig::default();
    cfg.limits.rate_limit_per_sec = 0.001;
    cfg.limits.rate_limit_burst = 1.0;
    let st = AppState::new(cfg, Tokens::load(None, None).unwrap(), None);
    st.inner
        .llms
        .insert("gen", Arc::new(FakeGenerator::new(Duration::ZERO)), 4);
    let body = json!({"model": "gen", "prompt": "x", "max_tokens": 1}).to_string();
    let mut limited = None;
    for _ in 0..3 {
        let (s, resp, bytes) = send(&st, json_req("POST", "/v1/completions", &body, None)).await;
        if s == 429 {
            limited = Some((resp, bytes));
            break;
        }
    }
    let (resp, bytes) = limited.expect("a 429 within 3 requests at burst 1");
    assert!(resp.headers().contains_key("retry-after"));
    let v = assert_openai_error(&bytes, "rate limited");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limited");
}
