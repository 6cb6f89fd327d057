//! Generation requests and events, as the engines and the server agree on them: a chat
//! [`ChatMessage`], the per-request [`SamplingParams`], the [`GenerationEvent`]s a request's
//! receiver gets, and an engine's [`EngineStats`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{InferError, Result};

/// Most tokens one generation may ask for, whatever the model (a bound on `llm.max-tokens`).
pub const MAX_NEW_TOKENS: usize = 1 << 16;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (passed to the template as is).
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Per-request generation settings (OpenAI names; defaults as OpenAI's API).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 = greedy (argmax). Default 1.0. Must be in [0, 100].
    pub temperature: f32,
    /// Nucleus sampling mass in (0, 1]; 1 = off. Default 1.0.
    pub top_p: f32,
    /// Keep only the k most likely tokens; 0 = off. Default 0.
    pub top_k: usize,
    /// Most tokens to generate. Default 256. Prompt + max_tokens must fit the context length.
    pub max_tokens: usize,
    /// RNG seed; `None` draws one from the OS. Same seed + same prompt = same output, batched or not.
    pub seed: Option<u64>,
    /// Generation stops before the first occurrence of any of these strings (not emitted). Default none.
    pub stop: Vec<String>,
    /// Penalty > 1 discourages tokens already in the sequence; 1 = off. Default 1.0. Must be in (0, 10].
    pub repetition_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_tokens: 256,
            seed: None,
            stop: Vec::new(),
            repetition_penalty: 1.0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding of at most `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            max_tokens,
            ..Self::default()
        }
    }

    /// Check the ranges; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |field: &'static str, message: String| Err(InferError::BadRequest { field, message });
        if !(0.0..=100.0).contains(&self.temperature) {
            return bad(
                "temperature",
                format!("{} is not in [0, 100]", self.temperature),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("{} is not in (0, 1]", self.top_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty <= 10.0) {
            return bad(
                "repetition_penalty",
                format!("{} is not in (0, 10]", self.repetition_penalty),
            );
        }
        if self.max_tokens == 0 {
            return bad("max_tokens", "must be at least 1".into());
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop", "stop strings must not be empty".into());
        }
        Ok(())
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl FinishReason {
    /// OpenAI's name: `stop` or `length`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Generated tokens, the end-of-sequence token included.
    pub completion_tokens: usize,
}

/// Where a finished request's time went.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Timings {
    /// Submit → admitted to the batch.
    pub queued: Duration,
    /// Submit → first token sampled (queueing and prefill included).
    pub time_to_first_token: Duration,
    /// Submit → done.
    pub total: Duration,
}

impl Timings {
    /// Mean time per output token after the first.
    pub fn time_per_output_token(&self, usage: &Usage) -> Option<Duration> {
        (usage.completion_tokens > 1)
            .then(|| (self.total - self.time_to_first_token) / (usage.completion_tokens as u32 - 1))
    }
}

/// What a request's receiver gets.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// A generated token and the text it completes (may be empty while a character or a possible
    /// stop string is incomplete).
    Token { id: u32, text: String },
    /// The last event of a successful request.
    Done {
        finish_reason: FinishReason,
        usage: Usage,
        timings: Timings,
    },
    /// The request failed after it was accepted (the last event).
    Error(String),
}

/// A snapshot of the engine's state and running totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineStats {
    pub queue_depth: usize,
    pub active_sequences: usize,
    pub kv_cache_tokens_used: usize,
    pub kv_cache_tokens_capacity: usize,
    pub requests_finished: u64,
    pub requests_cancelled: u64,
    pub prompt_tokens_total: u64,
    pub generated_tokens_total: u64,
    /// Sum over finished requests of the time to first token, in seconds.
    pub time_to_first_token_seconds_sum: f64,
    /// Forward passes run, and their total time in seconds.
    pub steps: u64,
    pub step_seconds_sum: f64,
    /// Requests admitted with a prefix copied from the prefix cache, and the positions copied
    /// (prompt tokens not run through the model).
    pub prefix_cache_hits: u64,
    pub prefix_tokens_reused: u64,
    /// Positions held by the prefix cache, and its budget.
    pub prefix_cache_tokens_used: usize,
    pub prefix_cache_tokens_capacity: usize,
    /// Times a running sequence was paused (its KV cache freed) to make room, see the module docs.
    pub requests_preempted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_field() {
        let e = SamplingParams {
            top_p: 0.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(
            matches!(e, InferError::BadRequest { field: "top_p", .. }),
            "{e}"
        );
        assert!(SamplingParams::greedy(0).validate().is_err());
        assert!(SamplingParams::greedy(1).validate().is_ok());
    }

    #[test]
    fn time_per_output_token_excludes_the_first() {
        let t = Timings {
            queued: Duration::ZERO,
            time_to_first_token: Duration::from_millis(100),
            total: Duration::from_millis(400),
        };
        let usage = Usage {
            prompt_tokens: 5,
            completion_tokens: 4,
        };
        assert_eq!(
            t.time_per_output_token(&usage),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            t.time_per_output_token(&Usage {
                prompt_tokens: 5,
                completion_tokens: 1
            }),
            None
        );
    }
}
