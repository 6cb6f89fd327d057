//! Running a validated generation: collect the events into one JSON answer, or stream them as
//! server-sent events (`data: {chunk}` ... `data: [DONE]`). A client that goes away mid-stream
//! drops the event receiver, which cancels the sequence in the engine. Streams send a
//! `: keep-alive` comment every `llm.keep-alive-ms` without an event (while queued or between
//! slow tokens) and end after `llm.stream-timeout-ms` with an error event (the sequence is
//! cancelled); the queueing call itself (which tokenizes) runs on a blocking thread.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiError;
use crate::llm::{api_error, GenerationEvent, ServedLlm, Usage};
use crate::offload;
use crate::routes::openai::params::{Endpoint, ValidGeneration};
use crate::routes::openai::{response_id, unix_now};
use crate::state::AppState;

struct Shape {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
}

fn usage_json(u: &Usage) -> Value {
    json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
           "total_tokens": u.prompt_tokens + u.completion_tokens})
}

impl Shape {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Completions, _) => "text_completion",
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
        }
    }

    fn envelope(&self, chunk: bool, choices: Value) -> Value {
        json!({"id": self.id, "object": self.object(chunk), "created": self.created,
               "model": self.model, "system_fingerprint": null, "choices": choices})
    }

    /// A streamed piece of text (or the chat role announcement) with an optional finish reason.
    fn chunk(&self, text: Option<&str>, role: bool, finish: Option<&str>) -> Value {
        let choice = match self.endpoint {
            Endpoint::Completions => {
                json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish})
            }
            Endpoint::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
        };
        self.envelope(true, json!([choice]))
    }

    fn whole(&self, text: &str, finish: &str, usage: &Usage) -> Value {
        let choice = match self.endpoint {
            Endpoint::Completions => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish})
            }
            Endpoint::Chat => json!({"index": 0, "message": {"role": "assistant", "content": text},
                                     "logprobs": null, "finish_reason": finish}),
        };
        let mut v = self.envelope(false, json!([choice]));
        v["usage"] = usage_json(usage);
        v
    }
}

fn event(v: &Value) -> Result<Event, Infallible> {
    Ok(Event::default().data(v.to_string()))
}

/// Queue `v` on the model and answer (JSON or SSE).
pub async fn respond(
    state: AppState,
    served: Arc<ServedLlm>,
    v: ValidGeneration,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let slot = served.slot(&v.model)?;
    let llm = &state.inner.config.llm;
    let (keep_alive, timeout) = (
        Duration::from_millis(llm.keep_alive_ms),
        Duration::from_millis(llm.stream_timeout_ms),
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let model = Arc::clone(&served.model);
    let (prompt, params, adapter) = (v.prompt, v.params, v.adapter);
    let rx = offload::run(&state, "queueing the generation", move || {
        model.generate_with_adapter(adapter.as_deref(), prompt, params)
    })
    .await?
    .map_err(api_error)?;
    let shape = Shape {
        endpoint,
        id: response_id(match endpoint {
            Endpoint::Completions => "cmpl",
            Endpoint::Chat => "chatcmpl",
        }),
        created: unix_now(),
        model: v.model,
    };
    if !v.stream {
        let _slot = slot;
        let mut text = String::new();
        loop {
            let ev = tokio::time::timeout_at(deadline, rx.recv_async())
                .await
                .map_err(|_| ApiError::Timeout(timeout.as_millis() as u64))?;
            match ev {
                Ok(GenerationEvent::Token { text: t, .. }) => text.push_str(&t),
                Ok(GenerationEvent::Done {
                    finish_reason,
                    usage,
                    timings,
                }) => {
                    state
                        .inner
                        .metrics
                        .llm
                        .finished(&shape.model, &usage, &timings);
                    return Ok(
                        Json(shape.whole(&text, finish_reason.as_str(), &usage)).into_response()
                    );
                }
                Ok(GenerationEvent::Error(m)) => return Err(ApiError::Internal(m)),
                Err(_) => {
                    return Err(ApiError::Internal(
                        "the engine dropped the request without an answer".into(),
                    ))
                }
            }
        }
    }
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(64);
    let include_usage = v.include_usage;
    tokio::spawn(async move {
        let _slot = slot;
        if endpoint == Endpoint::Chat
            && tx
                .send(event(&shape.chunk(Some(""), true, None)))
                .await
                .is_err()
        {
            return;
        }
        loop {
            let ev = tokio::select! {
                ev = rx.recv_async() => ev,
                // The client went away: dropping `rx` (on return) cancels the sequence.
                _ = tx.closed() => return,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(model = %shape.model, timeout_ms = timeout.as_millis() as u64, "stream timed out; cancelling the sequence");
                    let msg = format!("the stream timed out after {} ms", timeout.as_millis());
                    let _ = tx
                        .send(event(&json!({"error": {"message": msg, "type": "timeout"}})))
                        .await;
                    let _ = tx.send(Ok(Event::default().data("[DONE]"))).await;
                    return;
                }
            };
            let send = match ev {
                Ok(GenerationEvent::Token { text, .. }) if text.is_empty() => continue,
                Ok(GenerationEvent::Token { text, .. }) => {
                    tx.send(event(&shape.chunk(Some(&text), false, None))).await
                }
                Ok(GenerationEvent::Done {
                    finish_reason,
                    usage,
                    timings,
                }) => {
                    state
                        .inner
                        .metrics
                        .llm
                        .finished(&shape.model, &usage, &timings);
                    let _ = tx
                        .send(event(&shape.chunk(
                            None,
                            false,
                            Some(finish_reason.as_str()),
                        )))
                        .await;
                    if include_usage {
                        let mut u = shape.envelope(true, json!([]));
                        u["usage"] = usage_json(&usage);
                        let _ = tx.send(event(&u)).await;
                    }
                    let _ = tx.send(Ok(Event::default().data("[DONE]"))).await;
                    return;
                }
                Ok(GenerationEvent::Error(m)) => {
                    tracing::error!(detail = %m, model = %shape.model, "generation failed mid-stream");
                    let _ = tx
                        .send(event(
                            &json!({"error": {"message": "internal error", "type": "internal"}}),
                        ))
                        .await;
                    let _ = tx.send(Ok(Event::default().data("[DONE]"))).await;
                    return;
                }
                Err(_) => return,
            };
            if send.is_err() {
                return;
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(out))
        .keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
        .into_response())
}
