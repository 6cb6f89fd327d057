//! The OpenAI-compatible routes on fake language models (no socket, `app(state).oneshot`), and
//! on the real all-MiniLM-L6-v2 / SmolLM2 files (fetched by `scripts/fetch-assets.sh models`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use lepton_serve::llm::{
    ChatMessage, Embedded, EngineStats, FinishReason, GenerationEvent, SamplingParams, Usage,
};
use lepton_serve::{AppState, LanguageModel, LlmInfo, LlmTask, ServeConfig, Tokens};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{json_req, send};

/// Embeddings: a 3-vector from the text's length, normalised.
struct FakeEmbedder(LlmInfo);

impl LanguageModel for FakeEmbedder {
    fn info(&self) -> &LlmInfo {
        &self.0
    }
    fn embed(&self, texts: &[String]) -> Result<Embedded, lepton_serve::InferError> {
        Ok(Embedded {
            vectors: texts
                .iter()
                .map(|t| {
                    let n = t.len() as f32;
                    let v = [1.0, n, n * n];
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    v.iter().map(|x| x / norm).collect()
                })
                .collect(),
            tokens: texts
                .iter()
                .map(|t| t.split_whitespace().count() + 2)
                .collect(),
        })
    }
}

/// Generation: word i of the answer is `w{(seed + i) % 5}`, one every `delay`; a prompt is one
/// token per whitespace-separated word; the context holds 64 tokens.
pub(crate) struct FakeGenerator {
    info: LlmInfo,
    delay: Duration,
    live: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
}

impl FakeGenerator {
    pub(crate) fn new(delay: Duration) -> Self {
        FakeGenerator {
            info: LlmInfo {
                task: LlmTask::Generation,
                context_length: 64,
                dimensions: 0,
                created: 1,
                max_prompt_bytes: 4096,
                precision: "Q4_K_M".into(),
            },
            delay,
            live: Arc::default(),
            cancelled: Arc::default(),
        }
    }
}

impl LanguageModel for FakeGenerator {
    fn info(&self) -> &LlmInfo {
        &self.info
    }
    fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<String, lepton_serve::InferError> {
        Ok(messages
            .iter()
            .map(|m| format!("<{}> {}", m.role, m.content))
            .collect::<Vec<_>>()
            .join(" ")
            + " <assistant>")
    }
    fn count_tokens(&self, text: &str) -> Result<usize, lepton_serve::InferError> {
        Ok(text.split_whitespace().count())
    }
    fn generate(
        &self,
        prompt: String,
        params: SamplingParams,
    ) -> Result<flume::Receiver<GenerationEvent>, lepton_serve::InferError> {
        let prompt_tokens = prompt.split_whitespace().count();
        if prompt_tokens + params.max_tokens > 64 {
            return Err(lepton_llm::Error::ContextOverflow {
                prompt_tokens,
                max_tokens: params.max_tokens,
                context_length: 64,
            }
            .into());
        }
        let (tx, rx) = flume::unbounded();
        let (delay, live, cancelled) = (self.delay, self.live.clone(), self.cancelled.clone());
        live.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            let seed = params.seed.unwrap_or(0);
            let mut text = String::new();
            let mut finish = FinishReason::Length;
            let mut n = 0;
            for i in 0..params.max_tokens {
                std::thread::sleep(delay);
                let piece = format!(" w{}", (seed + i as u64) % 5);
                n += 1;
                if params
                    .stop
                    .iter()
                    .any(|s| (text.clone() + &piece).contains(s.as_str()))
                {
                    finish = FinishReason::Stop;
                    break;
                }
                text.push_str(&piece);
                if tx
                    .send(GenerationEvent::Token {
                        id: i as u32,
                        text: piece,
                    })
                    .is_err()
                {
                    cancelled.fetch_add(1, Ordering::SeqCst);
                    live.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
            }
            let _ = tx.send(GenerationEvent::Done {
                finish_reason: finish,
                usage: Usage {
                    prompt_tokens,
                    completion_tokens: n,
                },
                timings: lepton_serve::llm::Timings {
                    queued: Duration::ZERO,
                    time_to_first_token: delay,
                    total: delay * n as u32,
                },
            });
            live.fetch_sub(1, Ordering::SeqCst);
        });
        Ok(rx)
    }
    fn stats(&self) -> Option<EngineStats> {
        Some(EngineStats {
            active_sequences: self.live.load(Ordering::SeqCst),
            kv_cache_tokens_capacity: 4096,
            ..Default::default()
        })
    }
}

pub(crate) fn state(tokens: Option<&str>, delay: Duration) -> (AppState, Arc<FakeGenerator>) {
    let state = AppState::new(
        ServeConfig::default(),
        Tokens::load(None, tokens).unwrap(),
        None,
    );
    let gen = Arc::new(FakeGenerator::new(delay));
    state.inner.llms.insert("gen", gen.clone(), 16);
    let emb = FakeEmbedder(LlmInfo {
        task: LlmTask::Embeddings,
        context_length: 16,
        dimensions: 3,
        created: 1,
        max_prompt_bytes: usize::MAX,
        precision: "I8+F32".into(),
    });
    state.inner.llms.insert("emb", Arc::new(emb), 16);
    (state, gen)
}

pub(crate) async fn post(state: &AppState, uri: &str, body: Value) -> (u16, Value) {
    let (s, _, bytes) = send(state, json_req("POST", uri, &body.to_string(), None)).await;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (s, v)
}

/// The `data:` payloads of an SSE body.
fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8(body.to_vec())
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let (st, _) = state(None, Duration::ZERO);
    let (s, v) = post(
        &st,
        "/v1/embeddings",
        json!({"model": "emb", "input": ["ab", "abcd"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 3);
    assert_eq!(v["usage"]["prompt_tokens"], 6);
    let (s, v) = post(
        &st,
        "/v1/embeddings",
        json!({"model": "emb", "input": "ab", "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // 3 f32 = 12 bytes = 16 base64 characters; [1, 2, 4] / sqrt(21) starts with 0.2182 = 0x3E5F...
    let b = v["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(b.len(), 16);
    let first = (1.0f32 / 21f32.sqrt()).to_le_bytes();
    assert_eq!(&b[..4], &lepton_serve::routes::openai::base64(&first)[..4]);
}

#[tokio::test]
async fn completions_usage_stop_seed_and_length() {
    let (st, _) = state(None, Duration::ZERO);
    let (s, v) = post(
        &st,
        "/v1/completions",
        json!({"model": "gen", "prompt": "one two three", "max_tokens": 4, "seed": 1}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], " w1 w2 w3 w4");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})
    );
    let (s, v) = post(
        &st,
        "/v1/completions",
        json!({"model": "gen", "prompt": ["x"], "max_tokens": 10, "seed": 0, "stop": ["w3"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], " w0 w1 w2");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // Default max_tokens for completions is OpenAI's 16.
    let (_, v) = post(
        &st,
        "/v1/completions",
        json!({"model": "gen", "prompt": "x"}),
    )
    .await;
    assert_eq!(v["usage"]["completion_tokens"], 16);
}

#[tokio::test]
async fn chat_plain_and_streaming_with_usage() {
    let (st, _) = state(None, Duration::ZERO);
    let msgs = json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]);
    let (s, v) = post(
        &st,
        "/v1/chat/completions",
        json!({"model": "gen", "messages": msgs, "max_completion_tokens": 3, "seed": 2, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], " w2 w3 w4");
    // "<system> be brief <user> hi <assistant>" is 6 tokens.
    assert_eq!(v["usage"]["prompt_tokens"], 6);

    let body = json!({"model": "gen", "messages": msgs, "max_tokens": 3, "seed": 2, "stream": true, "stream_options": {"include_usage": true}});
    let (s, resp, bytes) = send(
        &st,
        json_req("POST", "/v1/chat/completions", &body.to_string(), None),
    )
    .await;
    assert_eq!(s, 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let data = sse_data(&bytes);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, " w2 w3 w4");
    let n = chunks.len();
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], 3);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));

    // Completions stream too.
    let body = json!({"model": "gen", "prompt": "a", "max_tokens": 2, "stream": true});
    let (_, _, bytes) = send(
        &st,
        json_req("POST", "/v1/completions", &body.to_string(), None),
    )
    .await;
    let data = sse_data(&bytes);
    assert_eq!(data.len(), 4, "{data:?}"); // two pieces, the finish chunk, [DONE]
    let c: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(c["choices"][0]["text"], " w0");
}

#[tokio::test]
async fn tokens_are_required_when_configured() {
    let (st, _) = state(Some("pt:predict"), Duration::ZERO);
    let body = json!({"model": "emb", "input": "x"}).to_string();
    let (s, _, _) = send(&st, json_req("POST", "/v1/embeddings", &body, None)).await;
    assert_eq!(s, 401);
    let (s, _, _) = send(&st, json_req("POST", "/v1/embeddings", &body, Some("pt"))).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_the_sequence() {
    let (st, gen) = state(None, Duration::from_millis(5));
    let body = json!({"model": "gen", "prompt": "x", "max_tokens": 60, "stream": true}).to_string();
    let resp = lepton_serve::app(st.clone())
        .oneshot(json_req("POST", "/v1/completions", &body, None))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    drop(body); // the client goes away after the first chunk
    for _ in 0..200 {
        if gen.live.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gen.live.load(Ordering::SeqCst), 0, "the sequence leaked");
    assert_eq!(gen.cancelled.load(Ordering::SeqCst), 1);
    // The slot was released too.
    assert_eq!(st.inner.llms.get("gen").unwrap().in_flight(), 0);
}

#[tokio::test]
async fn models_list_and_llm_metrics() {
    let (st, _) = state(None, Duration::from_millis(1));
    let (s, _, bytes) = send(&st, json_req("GET", "/v1/models", "", None)).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["emb", "gen"]);
    assert_eq!(v["data"][1]["task"], "text-generation");
    assert_eq!(v["data"][0]["dimensions"], 3);
    // Each model's number format, as the backend reports it.
    assert_eq!(v["data"][0]["precision"], "I8+F32");
    assert_eq!(v["data"][1]["precision"], "Q4_K_M");
    post(
        &st,
        "/v1/completions",
        json!({"model": "gen", "prompt": "x", "max_tokens": 3}),
    )
    .await;
    let (_, _, bytes) = send(&st, json_req("GET", "/metrics", "", None)).await;
    let m = String::from_utf8(bytes).unwrap();
    for needle in [
        "lepton_llm_time_to_first_token_seconds_count{model=\"gen\"} 1",
        "lepton_llm_time_per_output_token_seconds_count{model=\"gen\"} 1",
        "lepton_llm_generated_tokens_total{model=\"gen\"} 3",
        "lepton_llm_kv_cache_capacity_tokens{model=\"gen\"} 4096",
        "lepton_llm_queue_depth{model=\"gen\"} 0",
        "lepton_llm_decode_tokens_per_second_count{model=\"gen\"} 1",
        "lepton_requests_total{model=\"gen\",route=\"/v1/completions\",status=\"200\"} 1",
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
}

#[tokio::test]
async fn openapi_lists_the_openai_routes() {
    let (st, _) = state(None, Duration::ZERO);
    let (_, _, bytes) = send(&st, json_req("GET", "/openapi.json", "", None)).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    for p in ["/v1/embeddings", "/v1/completions", "/v1/chat/completions"] {
        assert!(v["paths"][p]["post"].is_object(), "{p} missing");
    }
}

/// The server configuration of the real-model tests: the default, with a generous request
/// timeout (the default 10 s is a service objective, not something these tests check, and a
/// loaded shared machine can exceed it).
pub(crate) fn real_model_config() -> ServeConfig {
    let mut cfg = ServeConfig::default();
    cfg.limits.request_timeout_ms = 300_000;
    cfg
}

pub(crate) fn model_path(name: &str) -> std::path::PathBuf {
    let root = match (
        std::env::var_os("LEPTON_MODELS"),
        std::env::var_os("LEPTON_ASSETS"),
    ) {
        (Some(m), _) => std::path::PathBuf::from(m),
        (None, Some(a)) => std::path::PathBuf::from(a).join("models"),
        (None, None) => std::path::PathBuf::from(std::env::var_os("HOME").expect(
            "HOME is not set: set LEPTON_MODELS to the folder printed by `scripts/fetch-assets.sh models`",
        ))
        .join(".cache/lepton-assets/models"),
    };
    let p = root.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `scripts/fetch-assets.sh models`",
        p.display()
    );
    p
}

#[tokio::test]
async fn real_minilm_embeddings_through_the_router() {
    let st = AppState::new(
        crate::openai::real_model_config(),
        Tokens::load(None, None).unwrap(),
        None,
    );
    let model = lepton_llm::load_language_model(
        &model_path("all-MiniLM-L6-v2"),
        lepton_llm::EngineConfig::default(),
    )
    .unwrap();
    st.inner.llms.insert("minilm", model, 8);
    let (s, v) = post(
        &st,
        "/v1/embeddings",
        json!({"model": "minilm", "input": ["The new movie is awesome", "The new movie is so great"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let a: Vec<f32> = serde_json::from_value(v["data"][0]["embedding"].clone()).unwrap();
    let b: Vec<f32> = serde_json::from_value(v["data"][1]["embedding"].clone()).unwrap();
    assert!((lepton_llm::cosine(&a, &b) - 0.8939).abs() < 1e-3);
    assert_eq!(v["usage"]["prompt_tokens"], 7 + 8);
    let long = "word ".repeat(300);
    let (s, v) = post(
        &st,
        "/v1/embeddings",
        json!({"model": "minilm", "input": ["ok", long]}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input 1 has 302 tokens"),
        "{v}"
    );
}

#[tokio::test]
async fn real_smollm2_chat_stream_and_cancel_through_the_router() {
    let st = AppState::new(
        crate::openai::real_model_config(),
        Tokens::load(None, None).unwrap(),
        None,
    );
    let engine = lepton_llm::EngineConfig::default().with_kv_cache_tokens(4096);
    let model =
        lepton_llm::load_language_model(&model_path("SmolLM2-135M-Instruct.Q4_1.gguf"), engine)
            .unwrap();
    st.inner.llms.insert("smol", model.clone(), 8);
    // The byte bound checked before tokenization: context x the longest token (>= 64 bytes).
    let info = model.info();
    assert!(
        info.max_prompt_bytes >= info.context_length * 64
            && info.max_prompt_bytes <= info.context_length * 1024,
        "{} bytes for {} tokens",
        info.max_prompt_bytes,
        info.context_length
    );
    // With the template's default system prompt, llama.cpp's greedy answer to the bare question
    // is "L'Étoile, ..." (first-token lead 0.09 over "The"); asking for one word gives "The capital
    // of France is Paris." with leads of at least 0.6 per token, robust to rounding differences.
    let msgs =
        json!([{"role": "user", "content": "What is the capital of France? Answer in one word."}]);
    let (s, v) = post(
        &st,
        "/v1/chat/completions",
        json!({"model": "smol", "messages": msgs, "max_tokens": 12, "temperature": 0}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("Paris"), "{text}");
    let usage = &v["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 10, "{usage}");
    assert!(usage["completion_tokens"].as_u64().unwrap() <= 12);

    // Streaming gives the same text as the plain answer (greedy).
    let body = json!({"model": "smol", "messages": msgs, "max_tokens": 12, "temperature": 0, "stream": true});
    let (_, _, bytes) = send(
        &st,
        json_req("POST", "/v1/chat/completions", &body.to_string(), None),
    )
    .await;
    let data = sse_data(&bytes);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let streamed: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(streamed, text);

    // Over-long prompt: a clear 400, no sequence admitted.
    let long = "hello ".repeat(9000);
    let (s, v) = post(
        &st,
        "/v1/completions",
        json!({"model": "smol", "prompt": long, "max_tokens": 4}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{v}"
    );
    assert_eq!(v["error"]["param"], "max_tokens", "{v}");

    // A client that disconnects mid-stream frees its sequence in the engine.
    let body =
        json!({"model": "smol", "prompt": "Once upon a time", "max_tokens": 500, "stream": true})
            .to_string();
    let resp = lepton_serve::app(st.clone())
        .oneshot(json_req("POST", "/v1/completions", &body, None))
        .await
        .unwrap();
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    let mut stats = model.stats().unwrap();
    for _ in 0..300 {
        stats = model.stats().unwrap();
        if stats.active_sequences == 0 && stats.requests_cancelled == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.active_sequences, 0, "{stats:?}");
    assert_eq!(stats.kv_cache_tokens_used, 0, "{stats:?}");
    assert_eq!(stats.requests_cancelled, 1, "{stats:?}");
    assert!(stats.generated_tokens_total < 500, "{stats:?}");
}
