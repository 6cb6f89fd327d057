//! The body of `/v1/completions` and `/v1/chat/completions` and its validation into a
//! [`ValidGeneration`]: OpenAI's fields (and `top_k`, `repetition_penalty` as extensions), unknown
//! fields refused, unsupported features refused by name rather than ignored.

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::llm::{api_error, ChatMessage, LlmInfo, LlmTask, SamplingParams, ServedLlm};

/// `stop`: one string or up to four.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// Streaming options.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a last chunk with the `usage` counts before `data: [DONE]`.
    pub include_usage: Option<bool>,
}

/// Message content: a string or text parts.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentPart {
    /// Only `text`.
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// One chat message.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// `system`, `developer` (treated as system), `user` or `assistant`.
    pub role: String,
    pub content: Option<Content>,
    pub name: Option<String>,
}

impl Message {
    fn content_bytes(&self) -> usize {
        match &self.content {
            None => 0,
            Some(Content::Text(s)) => s.len(),
            Some(Content::Parts(p)) => p
                .iter()
                .filter_map(|p| p.text.as_ref())
                .map(String::len)
                .sum(),
        }
    }
}

/// A completions or chat-completions request (`prompt` for the first, `messages` for the second).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerationBody {
    /// A served text-generation model, or one of its LoRA adapters as `base:adapter` or
    /// `adapter` (see `GET /v1/models`).
    pub model: String,
    /// `/v1/completions`: the prompt (a string, or an array holding one string).
    #[schema(value_type = Option<String>)]
    pub prompt: Option<Value>,
    /// `/v1/chat/completions`: the conversation, rendered with the model's chat template.
    pub messages: Option<Vec<Message>>,
    /// Most tokens to generate. Default: 16 for completions; for chat the engine's default
    /// (`SamplingParams::default().max_tokens`, 256), or what is left of the context if less.
    pub max_tokens: Option<u64>,
    /// Chat alias of `max_tokens`.
    pub max_completion_tokens: Option<u64>,
    /// 0 (greedy) to 2. Default 1.
    pub temperature: Option<f32>,
    /// Nucleus mass in (0, 1]. Default 1.
    pub top_p: Option<f32>,
    /// Keep the k most likely tokens; 0 = off (extension). Default 0.
    pub top_k: Option<u64>,
    /// Penalty on tokens already in the sequence, in (0, 10]; 1 = off (extension). Default 1.
    pub repetition_penalty: Option<f32>,
    /// Only 1.
    pub n: Option<u64>,
    /// Stream the answer as server-sent events, ending with `data: [DONE]`.
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// Up to 4 strings; generation stops before the first one (not returned).
    pub stop: Option<Stop>,
    /// Same seed and request = same output.
    pub seed: Option<i64>,
    /// Only 0 (use `repetition_penalty`).
    pub frequency_penalty: Option<f32>,
    /// Only 0 (use `repetition_penalty`).
    pub presence_penalty: Option<f32>,
    /// Not supported (must be absent, null or false/0).
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub top_logprobs: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub logit_bias: Option<Value>,
    /// Not supported (must be absent or false).
    pub echo: Option<bool>,
    /// Only 1.
    pub best_of: Option<u64>,
    /// Not supported.
    pub suffix: Option<String>,
    /// Not supported (must be absent or empty).
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    /// Only `{"type": "text"}`.
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Value>,
    /// Ignored.
    pub user: Option<String>,
}

/// A checked generation request.
#[derive(Debug, Clone)]
pub struct ValidGeneration {
    pub model: String,
    /// The LoRA adapter the request named (`"base:name"` or `"name"`); set by the route.
    pub adapter: Option<String>,
    pub prompt: String,
    pub params: SamplingParams,
    pub stream: bool,
    pub include_usage: bool,
}

fn bad(field: &str, msg: impl std::fmt::Display) -> ApiError {
    ApiError::field(field, msg)
}

fn is_set(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// Which endpoint a body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

impl GenerationBody {
    /// The cheapest check, before any template rendering or tokenization: the prompt's (or the
    /// messages' contents') length in bytes against `limit`.
    pub fn check_prompt_bytes(&self, endpoint: Endpoint, limit: usize) -> Result<(), ApiError> {
        let (field, bytes) = match endpoint {
            Endpoint::Completions => (
                "prompt",
                match &self.prompt {
                    Some(Value::String(s)) => s.len(),
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::len).sum(),
                    _ => 0,
                },
            ),
            Endpoint::Chat => (
                "messages",
                self.messages
                    .iter()
                    .flatten()
                    .map(Message::content_bytes)
                    .sum(),
            ),
        };
        if bytes > limit {
            return Err(bad(
                field,
                format!("{bytes} bytes of text, the limit is {limit} (it cannot fit the model's context)"),
            ));
        }
        Ok(())
    }

    /// Check every field against the endpoint and the model; render the chat template. This
    /// renders and may tokenize: run it on a blocking thread ([`crate::offload`]).
    pub fn validate(
        self,
        endpoint: Endpoint,
        served: &ServedLlm,
    ) -> Result<ValidGeneration, ApiError> {
        let info: &LlmInfo = served.model.info();
        if info.task != LlmTask::Generation {
            return Err(bad(
                "model",
                format!(
                    "'{}' is an embeddings model; use /v1/embeddings",
                    self.model
                ),
            ));
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(bad("n", "only n = 1 is supported"));
        }
        if self.best_of.is_some_and(|n| n != 1) {
            return Err(bad("best_of", "only best_of = 1 is supported"));
        }
        for (field, v) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if v.is_some_and(|v| v != 0.0) {
                return Err(bad(field, "not supported; use repetition_penalty"));
            }
        }
        for (field, v) in [
            ("logprobs", &self.logprobs),
            ("top_logprobs", &self.top_logprobs),
            ("logit_bias", &self.logit_bias),
            ("tools", &self.tools),
            ("tool_choice", &self.tool_choice),
        ] {
            if is_set(v)
                && !(field == "tool_choice" && v.as_ref().and_then(|v| v.as_str()) == Some("none"))
            {
                return Err(bad(field, "not supported by this server"));
            }
        }
        if self.echo == Some(true) {
            return Err(bad("echo", "not supported"));
        }
        if self.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(bad("suffix", "not supported"));
        }
        if let Some(rf) = &self.response_format {
            if rf.get("type").and_then(|t| t.as_str()) != Some("text") {
                return Err(bad(
                    "response_format",
                    "only {\"type\": \"text\"} is supported",
                ));
            }
        }
        if self.stream_options.is_some() && self.stream != Some(true) {
            return Err(bad("stream_options", "only allowed with stream: true"));
        }
        let prompt = match endpoint {
            Endpoint::Completions => {
                if self.messages.is_some() {
                    return Err(bad("messages", "not accepted by /v1/completions (send prompt, or use /v1/chat/completions)"));
                }
                match &self.prompt {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                        a[0].as_str().unwrap_or_default().to_string()
                    }
                    Some(Value::Array(a)) if a.len() > 1 => {
                        return Err(bad("prompt", "only one prompt per request is supported"))
                    }
                    None => return Err(bad("prompt", "missing field")),
                    Some(_) => return Err(bad("prompt", "expected a string")),
                }
            }
            Endpoint::Chat => {
                if self.prompt.is_some() {
                    return Err(bad("prompt", "not accepted by /v1/chat/completions (send messages, or use /v1/completions)"));
                }
                let msgs = self
                    .messages
                    .as_ref()
                    .ok_or_else(|| bad("messages", "missing field"))?;
                if msgs.is_empty() {
                    return Err(bad("messages", "the conversation is empty"));
                }
                let mut out = Vec::with_capacity(msgs.len());
                for (i, m) in msgs.iter().enumerate() {
                    let role = match m.role.as_str() {
                        "system" | "developer" => "system",
                        "user" => "user",
                        "assistant" => "assistant",
                        other => {
                            return Err(bad(
                                &format!("messages[{i}].role"),
                                format!(
                                "'{other}' is not supported (system, developer, user, assistant)"
                            ),
                            ))
                        }
                    };
                    let content = match &m.content {
                        None => String::new(),
                        Some(Content::Text(s)) => s.clone(),
                        Some(Content::Parts(parts)) => {
                            let mut s = String::new();
                            for (j, p) in parts.iter().enumerate() {
                                match (p.kind.as_str(), &p.text) {
                                    ("text", Some(t)) => s.push_str(t),
                                    _ => {
                                        return Err(bad(
                                            &format!("messages[{i}].content[{j}]"),
                                            "only text parts are supported",
                                        ))
                                    }
                                }
                            }
                            s
                        }
                    };
                    out.push(ChatMessage::new(role, content));
                }
                served.model.chat_prompt(&out).map_err(api_error)?
            }
        };
        if prompt.is_empty() {
            return Err(bad("prompt", "the prompt is empty"));
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(bad(
                "temperature",
                format!("{temperature} is outside [0, 2]"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(bad("top_p", format!("{top_p} is outside (0, 1]")));
        }
        let repetition_penalty = self.repetition_penalty.unwrap_or(1.0);
        if !(repetition_penalty > 0.0 && repetition_penalty <= 10.0) {
            return Err(bad(
                "repetition_penalty",
                format!("{repetition_penalty} is outside (0, 10]"),
            ));
        }
        let top_k = self.top_k.unwrap_or(0);
        if top_k > 1_000_000 {
            return Err(bad(
                "top_k",
                format!("{top_k} is larger than any vocabulary"),
            ));
        }
        let stop = match self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        };
        if stop.len() > 4 {
            return Err(bad("stop", format!("{} strings, at most 4", stop.len())));
        }
        if let Some(i) = stop.iter().position(|s| s.is_empty() || s.len() > 256) {
            return Err(bad(&format!("stop[{i}]"), "must be 1 to 256 bytes"));
        }
        let ctx = info.context_length;
        let max_tokens = match (self.max_tokens, self.max_completion_tokens) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "max_completion_tokens",
                    "give max_tokens or max_completion_tokens, not both",
                ))
            }
            (Some(n), None) => Some(("max_tokens", n)),
            (None, Some(n)) => Some(("max_completion_tokens", n)),
            (None, None) => None,
        };
        let max_tokens = match max_tokens {
            Some((field, 0)) => return Err(bad(field, "must be at least 1")),
            Some((field, n)) if n > ctx as u64 => {
                return Err(bad(
                    field,
                    format!("{n} exceeds the model's context length of {ctx} tokens"),
                ))
            }
            Some((_, n)) => n as usize,
            None if endpoint == Endpoint::Completions => 16,
            None => {
                let used = served.model.count_tokens(&prompt).map_err(api_error)?;
                if used >= ctx {
                    return Err(bad(
                        "messages",
                        format!("the conversation has {used} tokens; the context holds {ctx}"),
                    ));
                }
                (ctx - used).min(SamplingParams::default().max_tokens)
            }
        };
        Ok(ValidGeneration {
            model: self.model,
            adapter: None,
            prompt,
            params: SamplingParams {
                temperature,
                top_p,
                top_k: top_k as usize,
                max_tokens,
                seed: self.seed.map(|s| s as u64),
                stop,
                repetition_penalty,
            },
            stream: self.stream.unwrap_or(false),
            include_usage: self
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        })
    }
}
