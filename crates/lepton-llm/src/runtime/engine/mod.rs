//! The generation engine: continuous batching of many requests over one model.
//!
//! # Public API (used by lepton-serve's OpenAI routes; change only together with them)
//! - [`Engine::new`]`(model, `[`EngineConfig`]`)` starts a scheduler thread; dropping the engine stops it.
//! - [`Engine::submit`]`(`[`GenerationRequest`]`) -> Result<flume::Receiver<`[`GenerationEvent`]`>>`:
//!   validates the request (errors name the field: [`Error::InvalidRequest`],
//!   [`Error::ContextOverflow`]) and queues it; a full queue answers [`Error::QueueFull`] at once.
//!   The receiver yields `Token { id, text }` events (the `text` pieces are valid UTF-8 and
//!   concatenate to the completion), then exactly one `Done { finish_reason, usage, timings }` or
//!   `Error(message)`. Dropping the receiver cancels the request and frees its KV cache.
//!   Use `recv()` from threads or `recv_async().await` from tokio.
//! - [`Engine::stats`] for metrics: queue depth (every accepted request not running: in the
//!   channel, waiting for a batch slot or KV room, or preempted), active sequences, KV-cache
//!   positions reserved and capacity, prefix-cache use, and running totals (tokens, time to first
//!   token, decode steps, preemptions, prefix-cache hits and reused positions).
//!
//! # Scheduling
//! One thread loops: admit waiting requests (in arrival order) while fewer than `max_batch`
//! sequences run and the KV budget has room for the prompt plus a first block of
//! [`KV_BLOCK_TOKENS`] positions; run one [`Llama::forward`] over every sequence — the prompt of
//! newly admitted ones (prefill, one pass, minus the prefix copied from the prefix cache) and the
//! last sampled token of the others (decode) —; sample one token per sequence, stream it, and
//! retire sequences that hit EOS, a stop string or `max_tokens`, or whose receiver is gone. Each
//! sequence has its own seeded sampler and every model row is computed independently of the batch,
//! so a request's output does not depend on what else is running.
//!
//! # Admission and fairness (KV reserved as sequences grow, preemption)
//! A sequence's KV cache holds what it has used plus room to grow: it is doubled (at most to
//! prompt + `max_tokens`) when the next step needs more, so `max_tokens` is a limit, not a
//! reservation, and four long streams do not lock out a short request. The budget
//! (`kv_cache_tokens`) counts reserved positions of running sequences. When a sequence must grow
//! and the budget is spent, the running sequence holding the most positions is *preempted*: its
//! cache is freed and it waits at the back of the queue; when admitted again its prompt and the
//! tokens it generated so far are prefilled again (recomputation, as vLLM's default), and it goes
//! on with its own sampler, so its stream simply pauses. When a new request at the head of the
//! queue cannot be admitted (no batch slot or no KV room), a running sequence that holds more positions
//! than that request needs and has generated at least [`MIN_RUN_TOKENS`] since its admission is
//! preempted for it: a short request waits at most that many decode steps, however long the
//! running streams are (a preempted sequence waits for room instead, so long streams never take
//! turns preempting each other). Requests that are never preempted produce bit-identical output (their
//! cache is grown by exact copies).
//!
//! A request whose `max_tokens` was not given ([`GenerationRequest::with_default_max_tokens`]) gets
//! [`EngineConfig::default_max_tokens`] (not the rest of the context); above
//! [`EngineConfig::max_tokens_limit`] it is refused with [`Error::InvalidRequest`] naming
//! `max_tokens`.
//!
//! Text held back because it could be the start of a stop string is released with a later token
//! event; when generation ends with the end-of-sequence token such text comes in a `Token` event
//! carrying the EOS id (the EOS token's own text is never emitted).
//!
//! # Prefix cache (KV reuse)
//! Chat prompts mostly start the same way (the template's system prompt; in a multi-turn chat the
//! whole earlier conversation). The scheduler keeps the KV entries of earlier sequences in a store
//! of at most [`EngineConfig::prefix_cache_tokens`] positions (least recently used entries evicted
//! first): a sequence's prompt right after its prefill step (so requests arriving while it still
//! runs reuse it), and its prompt and generated tokens (the `cache.len()` positions fed through
//! the model) when it finishes; a cancelled sequence only leaves its prompt. On admission the
//! longest common prefix with any entry, at most the prompt's length - 1 (one token must run to give
//! logits), is copied into the new sequence's cache and only the rest of the prompt is prefilled. A
//! request that shares a longer prefix with a sequence admitted in the same step (clients arriving
//! together with the same system prompt) waits one step for that sequence's prompt to be stored.
//! Every row is computed independently of the batch and the copy is exact, so the output is
//! bit-identical to a run without the cache. The store's positions come on top of the KV budget
//! (`kv_cache_tokens`): the memory held is `kv_cache_tokens + prefix_cache_tokens` positions.
//!
//! [`Llama::forward`]: crate::llama::Llama::forward

pub use lepton_infer::{EngineStats, FinishReason, GenerationEvent, Timings, Usage};

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

mod adapters;
mod prefix_cache;
mod scheduler;

pub use adapters::{valid_adapter_name, Adapter, MAX_ADAPTERS};

use self::scheduler::Scheduler;
use crate::models::text_model::TextModel;
use crate::sampling::SamplingParams;
use crate::{Error, Result};

/// Positions a sequence's KV cache first reserves beyond its prompt (or all of `max_tokens` when
/// that is less); it then doubles as the sequence grows.
pub const KV_BLOCK_TOKENS: usize = 256;

/// Tokens a sequence generates after each admission before it can be preempted to admit a waiting
/// request (so long streams make progress between preemptions).
pub const MIN_RUN_TOKENS: usize = 32;

/// Engine limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Most sequences decoded together. Default 8.
    pub max_batch: usize,
    /// Most requests waiting for admission; more are rejected with [`Error::QueueFull`]. Default 64.
    pub queue_capacity: usize,
    /// KV-cache budget in positions over all running sequences (each takes prompt + max_tokens).
    /// Default 32768 (about 1.5 GB for SmolLM2-135M).
    pub kv_cache_tokens: usize,
    /// Positions kept for prefix reuse (see the module docs), held in addition to
    /// `kv_cache_tokens`; 0 disables the prefix cache. Default 4096 (about 90 MB for SmolLM2-135M).
    pub prefix_cache_tokens: usize,
    /// `max_tokens` of a request that does not set it
    /// ([`GenerationRequest::with_default_max_tokens`]). Default 256.
    pub default_max_tokens: usize,
    /// Largest `max_tokens` a request may ask for; more is an [`Error::InvalidRequest`] naming
    /// `max_tokens`. Default 4096.
    pub max_tokens_limit: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_batch: 8,
            queue_capacity: 64,
            kv_cache_tokens: 32_768,
            prefix_cache_tokens: 4096,
            default_max_tokens: 256,
            max_tokens_limit: 4096,
        }
    }
}

impl EngineConfig {
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }
    pub fn with_queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }
    pub fn with_kv_cache_tokens(mut self, n: usize) -> Self {
        self.kv_cache_tokens = n.max(1);
        self
    }
    /// 0 disables the prefix cache.
    pub fn with_prefix_cache_tokens(mut self, n: usize) -> Self {
        self.prefix_cache_tokens = n;
        self
    }
    /// At least 1; lowered to `max_tokens_limit` if above it.
    pub fn with_default_max_tokens(mut self, n: usize) -> Self {
        self.default_max_tokens = n.max(1);
        self
    }
    /// At least 1.
    pub fn with_max_tokens_limit(mut self, n: usize) -> Self {
        self.max_tokens_limit = n.max(1);
        self
    }
}

/// A prompt and how to continue it.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// Prompt text (for chat, the rendered template: see [`TextModel::apply_chat_template`]).
    pub prompt: String,
    pub params: SamplingParams,
    /// The client did not give `max_tokens`: the engine's
    /// [`EngineConfig::default_max_tokens`] replaces `params.max_tokens`. Default false.
    pub default_max_tokens: bool,
    /// The LoRA adapter to run under ([`Engine::load_adapter`]); `None` (the default): the base.
    pub adapter: Option<String>,
}

impl GenerationRequest {
    /// A request whose `params.max_tokens` was given by the client.
    pub fn new(prompt: impl Into<String>, params: SamplingParams) -> Self {
        Self {
            prompt: prompt.into(),
            params,
            default_max_tokens: false,
            adapter: None,
        }
    }

    /// Run under the adapter loaded as `name` (see [`Engine::load_adapter`]).
    pub fn with_adapter(mut self, name: impl Into<String>) -> Self {
        self.adapter = Some(name.into());
        self
    }

    /// The client gave no `max_tokens`: use the engine's default (see the module docs).
    pub fn with_default_max_tokens(mut self) -> Self {
        self.default_max_tokens = true;
        self
    }
}

struct Job {
    prompt: Vec<u32>,
    params: SamplingParams,
    events: flume::Sender<GenerationEvent>,
    submitted: Instant,
    /// Held back once to reuse the prefill of a sequence admitted in the same step.
    deferred: bool,
    /// The adapter it runs under, held until it finishes.
    adapter: Option<Arc<Adapter>>,
}

impl Job {
    /// The prefix-cache key: 0 for the base, else the adapter's id.
    fn prefix_key(&self) -> u64 {
        self.adapter.as_ref().map_or(0, |a| a.id)
    }
}

struct Shared {
    stats: Mutex<EngineStats>,
    shutdown: AtomicBool,
    /// Requests the scheduler holds but does not run (waiting for room, deferred or preempted).
    waiting: AtomicUsize,
}

impl Shared {
    fn stats(&self) -> std::sync::MutexGuard<'_, EngineStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The generation engine (see the module docs).
pub struct Engine {
    model: Arc<TextModel>,
    config: EngineConfig,
    queue: Option<flume::Sender<Job>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    adapters: adapters::Adapters,
}

impl Engine {
    pub fn new(model: impl Into<Arc<TextModel>>, config: EngineConfig) -> Result<Self> {
        let model = model.into();
        let (tx, rx) = flume::bounded(config.queue_capacity);
        let shared = Arc::new(Shared {
            stats: Mutex::new(EngineStats {
                kv_cache_tokens_capacity: config.kv_cache_tokens,
                prefix_cache_tokens_capacity: config.prefix_cache_tokens,
                ..Default::default()
            }),
            shutdown: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
        });
        let scheduler = Scheduler::new(model.clone(), config.clone(), rx, shared.clone());
        let thread = std::thread::Builder::new()
            .name("lepton-llm-engine".into())
            .spawn(move || scheduler.run())
            .map_err(|source| Error::Io {
                path: "<engine thread>".into(),
                source,
            })?;
        Ok(Self {
            model,
            config,
            queue: Some(tx),
            shared,
            thread: Some(thread),
            adapters: Default::default(),
        })
    }

    pub fn model(&self) -> &TextModel {
        &self.model
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Read the PEFT adapter folder `dir` (checked against this model: every tensor's shape, the
    /// targeted modules, the layer count) and register it as `name`, replacing an adapter of that
    /// name (requests running under the old one finish with it). Returns whether one was
    /// replaced. Reads the files: call it from a blocking thread.
    pub fn load_adapter(&self, name: &str, dir: &Path) -> Result<bool> {
        self.adapters.load(name, dir, self.model.llama().config())
    }

    /// Unregister adapter `name` (running requests finish with it); whether it was loaded.
    pub fn unload_adapter(&self, name: &str) -> bool {
        self.adapters.unload(name)
    }

    /// The loaded adapters, by name.
    pub fn adapters(&self) -> Vec<Arc<Adapter>> {
        self.adapters.all()
    }

    /// A snapshot; `queue_depth` counts requests in the channel plus those the scheduler holds
    /// without running them.
    pub fn stats(&self) -> EngineStats {
        let mut st = {
            let guard = self.shared.stats();
            let mut st = guard.clone();
            st.queue_depth = self.shared.waiting.load(Ordering::SeqCst);
            st
        };
        st.queue_depth += self.queue.as_ref().map_or(0, flume::Sender::len);
        st
    }

    /// Validate and queue a request; see the module docs for the events.
    pub fn submit(&self, request: GenerationRequest) -> Result<flume::Receiver<GenerationEvent>> {
        let mut params = request.params;
        if request.default_max_tokens {
            params.max_tokens = self
                .config
                .default_max_tokens
                .min(self.config.max_tokens_limit);
        }
        params.validate()?;
        let adapter = match &request.adapter {
            Some(name) => Some(self.adapters.get(name)?),
            None => None,
        };
        let prompt = self.model.tokenize(&request.prompt)?;
        if prompt.is_empty() {
            return Err(Error::InvalidRequest {
                field: "prompt",
                message: "the prompt is empty".into(),
            });
        }
        let context_length = self.model.context_length();
        if prompt.len().saturating_add(params.max_tokens) > context_length {
            return Err(Error::ContextOverflow {
                prompt_tokens: prompt.len(),
                max_tokens: params.max_tokens,
                context_length,
            });
        }
        if params.max_tokens > self.config.max_tokens_limit {
            return Err(Error::InvalidRequest {
                field: "max_tokens",
                message: format!(
                    "{} is above this engine's limit of {} tokens",
                    params.max_tokens, self.config.max_tokens_limit
                ),
            });
        }
        let need = prompt.len() + params.max_tokens;
        if need > self.config.kv_cache_tokens {
            return Err(Error::InvalidRequest {
                field: "max_tokens",
                message: format!(
                    "prompt + max_tokens = {need} positions exceed the engine's KV-cache budget of {}",
                    self.config.kv_cache_tokens
                ),
            });
        }
        let (events, rx) = flume::unbounded();
        let job = Job {
            prompt,
            params,
            events,
            submitted: Instant::now(),
            deferred: false,
            adapter,
        };
        let queue = self.queue.as_ref().ok_or(Error::EngineStopped)?;
        match queue.try_send(job) {
            Ok(()) => Ok(rx),
            Err(flume::TrySendError::Full(_)) => Err(Error::QueueFull {
                capacity: self.config.queue_capacity,
            }),
            Err(flume::TrySendError::Disconnected(_)) => Err(Error::EngineStopped),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_setters_keep_limits_positive() {
        let c = EngineConfig::default()
            .with_max_batch(0)
            .with_queue_capacity(3);
        assert_eq!((c.max_batch, c.queue_capacity), (1, 3));
        let c = EngineConfig::default()
            .with_default_max_tokens(0)
            .with_max_tokens_limit(0);
        assert_eq!((c.default_max_tokens, c.max_tokens_limit), (1, 1));
    }
}
