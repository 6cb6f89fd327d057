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
//! - [`Engine::stats`] for metrics: queue depth, active sequences, KV-cache positions in use and
//!   capacity, prefix-cache use, and running totals (tokens, time to first token, decode steps,
//!   prefix-cache hits and reused positions).
//!
//! # Scheduling
//! One thread loops: admit queued requests while fewer than `max_batch` sequences run and the KV
//! budget has room for `prompt + max_tokens` positions (each sequence's cache is allocated once at
//! admission, see [`KvCache`]; the budget counts running sequences only, the prefix cache below
//! holds its positions on top of it); run one [`Llama::forward`] over every sequence — the prompt
//! of newly admitted ones (prefill, one pass, minus the prefix copied from the prefix cache) and
//! the last sampled token of the others (decode) —; sample one token per sequence, stream it, and
//! retire sequences that hit EOS, a stop string or `max_tokens`, or whose receiver is gone. Each sequence has its own seeded sampler and every
//! model row is computed independently of the batch, so a request's output does not depend on what
//! else is running.
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod prefix_cache;

use self::prefix_cache::PrefixCache;
use crate::llama::pool::Pool;
use crate::llama::{KvCache, Scratch, Step};
use crate::sampling::{Sampler, SamplingParams};
use crate::text_model::{Detokenizer, TextModel};
use crate::{Error, Result};

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_batch: 8,
            queue_capacity: 64,
            kv_cache_tokens: 32_768,
            prefix_cache_tokens: 4096,
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
}

/// A prompt and how to continue it.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// Prompt text (for chat, the rendered template: see [`TextModel::apply_chat_template`]).
    pub prompt: String,
    pub params: SamplingParams,
}

impl GenerationRequest {
    pub fn new(prompt: impl Into<String>, params: SamplingParams) -> Self {
        Self {
            prompt: prompt.into(),
            params,
        }
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
}

struct Job {
    prompt: Vec<u32>,
    params: SamplingParams,
    events: flume::Sender<GenerationEvent>,
    submitted: Instant,
    /// Held back once to reuse the prefill of a sequence admitted in the same step.
    deferred: bool,
}

struct Shared {
    stats: Mutex<EngineStats>,
    shutdown: AtomicBool,
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
        });
        let scheduler = Scheduler {
            model: model.clone(),
            config: config.clone(),
            queue: rx,
            shared: shared.clone(),
        };
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
        })
    }

    pub fn model(&self) -> &TextModel {
        &self.model
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn stats(&self) -> EngineStats {
        self.shared.stats().clone()
    }

    /// Validate and queue a request; see the module docs for the events.
    pub fn submit(&self, request: GenerationRequest) -> Result<flume::Receiver<GenerationEvent>> {
        let params = request.params;
        params.validate()?;
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
        };
        let queue = self.queue.as_ref().ok_or(Error::EngineStopped)?;
        // Count before sending so the scheduler's decrement never underflows.
        self.shared.stats().queue_depth += 1;
        match queue.try_send(job) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.shared.stats().queue_depth -= 1;
                match e {
                    flume::TrySendError::Full(_) => Err(Error::QueueFull {
                        capacity: self.config.queue_capacity,
                    }),
                    flume::TrySendError::Disconnected(_) => Err(Error::EngineStopped),
                }
            }
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

struct Sequence {
    job: Job,
    cache: KvCache,
    /// Prompt and generated tokens (the repetition penalty looks at all of them).
    tokens: Vec<u32>,
    /// Tokens to feed at the next step: the prompt, then the last sampled token.
    input: Vec<u32>,
    sampler: Sampler,
    detok: Detokenizer,
    /// Text not yet sent because it may begin a stop string.
    held: String,
    generated: usize,
    admitted: Instant,
    first_token: Option<Instant>,
}

enum Outcome {
    Continue,
    Finished,
    Cancelled,
}

struct Scheduler {
    model: Arc<TextModel>,
    config: EngineConfig,
    queue: flume::Receiver<Job>,
    shared: Arc<Shared>,
}

impl Scheduler {
    fn run(self) {
        let mut active: Vec<Sequence> = Vec::new();
        // Jobs taken from the queue but not admitted yet (no KV room, or deferred for a step).
        let mut pending: VecDeque<Job> = VecDeque::new();
        let mut scratch = Scratch::default();
        let mut logits = Vec::new();
        let mut sampled = Vec::new();
        let mut kv_used = 0usize;
        let mut prefixes = PrefixCache::new(self.config.prefix_cache_tokens);
        loop {
            if self.shared.shutdown.load(Ordering::SeqCst) {
                for s in active.drain(..) {
                    let _ = s
                        .job
                        .events
                        .send(GenerationEvent::Error("the engine stopped".into()));
                }
                for j in pending.drain(..) {
                    let _ = j
                        .events
                        .send(GenerationEvent::Error("the engine stopped".into()));
                }
                return;
            }
            // Admission.
            let mut deferred = Vec::new();
            while active.len() + deferred.len() < self.config.max_batch {
                let mut job = match pending.pop_front() {
                    Some(j) => j,
                    None => {
                        let next = if active.is_empty() {
                            self.queue.recv().map_err(|_| true)
                        } else {
                            self.queue
                                .try_recv()
                                .map_err(|e| e == flume::TryRecvError::Disconnected)
                        };
                        match next {
                            Ok(j) => {
                                self.shared.stats().queue_depth -= 1;
                                j
                            }
                            Err(true) if active.is_empty() => return,
                            Err(_) => break,
                        }
                    }
                };
                if job.events.is_disconnected() {
                    self.shared.stats().requests_cancelled += 1;
                    continue;
                }
                let need = job.prompt.len() + job.params.max_tokens;
                if kv_used + need > self.config.kv_cache_tokens {
                    pending.push_front(job);
                    break;
                }
                let stored = prefixes.lookup(&job.prompt).map_or(0, |(n, _)| n);
                let prefilling = active
                    .iter()
                    .filter(|s| s.first_token.is_none())
                    .map(|s| s.job.prompt.as_slice());
                if !job.deferred && prefixes.worth_waiting(&job.prompt, stored, prefilling) {
                    job.deferred = true;
                    deferred.push(job);
                    continue;
                }
                kv_used += need;
                let mut cache = self.model.llama().new_cache(need);
                let mut reused = 0;
                if let Some((n, entry)) = prefixes.lookup(&job.prompt) {
                    match cache.copy_prefix_from(entry, n) {
                        Ok(()) => reused = n,
                        Err(e) => tracing::error!(error = %e, "prefix cache copy failed"),
                    }
                }
                if reused > 0 {
                    let mut st = self.shared.stats();
                    st.prefix_cache_hits += 1;
                    st.prefix_tokens_reused += reused as u64;
                }
                active.push(Sequence {
                    cache,
                    tokens: job.prompt.clone(),
                    input: job.prompt[reused..].to_vec(),
                    sampler: Sampler::new(job.params.clone()),
                    detok: Detokenizer::default(),
                    held: String::new(),
                    generated: 0,
                    admitted: Instant::now(),
                    first_token: None,
                    job,
                });
            }
            for j in deferred.into_iter().rev() {
                pending.push_front(j);
            }
            {
                let mut st = self.shared.stats();
                st.active_sequences = active.len();
                st.kv_cache_tokens_used = kv_used;
            }
            if active.is_empty() {
                continue;
            }
            // One forward pass over every sequence.
            let started = Instant::now();
            let result = {
                let mut steps: Vec<Step<'_>> = active
                    .iter_mut()
                    .map(|s| Step {
                        tokens: &s.input,
                        cache: &mut s.cache,
                    })
                    .collect();
                self.model
                    .llama()
                    .forward(&mut steps, &mut scratch, &mut logits)
            };
            {
                let mut st = self.shared.stats();
                st.steps += 1;
                st.step_seconds_sum += started.elapsed().as_secs_f64();
            }
            if let Err(e) = result {
                tracing::error!(error = %e, "forward pass failed");
                for s in active.drain(..) {
                    let _ = s
                        .job
                        .events
                        .send(GenerationEvent::Error(format!("generation failed: {e}")));
                }
                kv_used = 0;
                continue;
            }
            let vocab = self.model.llama().config().vocab_size;
            sample_all(&mut active, &mut logits, vocab, &mut sampled);
            let mut i = 0;
            let mut row = 0;
            while i < active.len() {
                if active[i].first_token.is_none() {
                    // Just prefilled: the prompt is in the cache.
                    let s = &active[i];
                    store_prefix(&mut prefixes, &s.job.prompt, &s.cache);
                }
                let outcome = self.advance(&mut active[i], sampled[row]);
                row += 1;
                match outcome {
                    Outcome::Continue => i += 1,
                    Outcome::Finished | Outcome::Cancelled => {
                        let s = active.remove(i);
                        if matches!(outcome, Outcome::Finished) {
                            store_prefix(&mut prefixes, &s.tokens[..s.cache.len()], &s.cache);
                        }
                        kv_used -= s.cache.capacity();
                        let mut st = self.shared.stats();
                        if matches!(outcome, Outcome::Cancelled) {
                            st.requests_cancelled += 1;
                        }
                        st.active_sequences = active.len();
                        st.kv_cache_tokens_used = kv_used;
                    }
                }
            }
            self.shared.stats().prefix_cache_tokens_used = prefixes.used();
        }
    }

    /// Stream the sequence's next token and decide whether it goes on.
    fn advance(&self, s: &mut Sequence, token: u32) -> Outcome {
        let now = Instant::now();
        let first = s.first_token.is_none();
        s.first_token.get_or_insert(now);
        s.generated += 1;
        s.tokens.push(token);
        s.input.clear();
        s.input.push(token);
        {
            let mut st = self.shared.stats();
            st.generated_tokens_total += 1;
            if first {
                st.prompt_tokens_total += s.job.prompt.len() as u64;
            }
        }
        let params = s.sampler.params();
        let mut finish = None;
        let text;
        if self.model.eos_token_ids().contains(&token) {
            finish = Some(FinishReason::Stop);
            text = std::mem::take(&mut s.held);
        } else {
            match s.detok.push(&self.model, token) {
                Ok(t) => s.held.push_str(&t),
                Err(e) => {
                    let _ = s.job.events.send(GenerationEvent::Error(e.to_string()));
                    return Outcome::Finished;
                }
            }
            let stop_at = params
                .stop
                .iter()
                .filter_map(|st| s.held.find(st.as_str()))
                .min();
            if let Some(at) = stop_at {
                s.held.truncate(at);
                text = std::mem::take(&mut s.held);
                finish = Some(FinishReason::Stop);
            } else if s.generated >= params.max_tokens {
                text = std::mem::take(&mut s.held);
                finish = Some(FinishReason::Length);
            } else {
                // Keep the longest tail that could still grow into a stop string.
                let keep = params
                    .stop
                    .iter()
                    .map(|st| longest_prefix_suffix(&s.held, st))
                    .max()
                    .unwrap_or(0);
                let cut = s.held.len() - keep;
                text = s.held[..cut].to_owned();
                s.held.drain(..cut);
            }
        }
        let is_eos_only = finish == Some(FinishReason::Stop)
            && text.is_empty()
            && self.model.eos_token_ids().contains(&token);
        if !is_eos_only
            && s.job
                .events
                .send(GenerationEvent::Token { id: token, text })
                .is_err()
        {
            return Outcome::Cancelled;
        }
        match finish {
            Some(reason) => {
                let timings = Timings {
                    queued: s.admitted - s.job.submitted,
                    time_to_first_token: s.first_token.unwrap_or(now) - s.job.submitted,
                    total: now - s.job.submitted,
                };
                {
                    let mut st = self.shared.stats();
                    st.requests_finished += 1;
                    st.time_to_first_token_seconds_sum += timings.time_to_first_token.as_secs_f64();
                }
                let _ = s.job.events.send(GenerationEvent::Done {
                    finish_reason: reason,
                    usage: Usage {
                        prompt_tokens: s.job.prompt.len(),
                        completion_tokens: s.generated,
                    },
                    timings,
                });
                Outcome::Finished
            }
            None if s.job.events.is_disconnected() => Outcome::Cancelled,
            None => Outcome::Continue,
        }
    }
}

/// Keep `tokens` (the first `tokens.len()` positions of `cache`) for reuse; a failure only costs
/// the reuse, so it is logged.
fn store_prefix(store: &mut PrefixCache, tokens: &[u32], cache: &KvCache) {
    if let Err(e) = store.insert(tokens, cache) {
        tracing::error!(error = %e, "prefix cache insert failed");
    }
}

/// Sample every sequence's next token from its row of `logits` (the rows in `active`'s order),
/// sequences dealt over the decoder's thread team; each uses only its own sampler and logits.
fn sample_all(active: &mut [Sequence], logits: &mut [f32], vocab: usize, out: &mut Vec<u32>) {
    out.clear();
    out.resize(active.len(), 0);
    if active.len() == 1 {
        out[0] = active[0]
            .sampler
            .sample(&mut logits[..vocab], &active[0].tokens);
        return;
    }
    struct Shared(*mut Sequence, *mut f32, *mut u32);
    // SAFETY: each index below is used by exactly one part.
    unsafe impl Sync for Shared {}
    let shared = Shared(active.as_mut_ptr(), logits.as_mut_ptr(), out.as_mut_ptr());
    let n = active.len();
    let pool = Pool::global();
    let parts = pool.threads();
    pool.run(&|part| {
        let shared = &shared;
        for i in (part..n).step_by(parts) {
            // SAFETY: sequence i, logits row i and out[i] belong to this part only.
            unsafe {
                let s = &mut *shared.0.add(i);
                let row = std::slice::from_raw_parts_mut(shared.1.add(i * vocab), vocab);
                *shared.2.add(i) = s.sampler.sample(row, &s.tokens);
            }
        }
    });
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop` (on a char boundary).
fn longest_prefix_suffix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && stop.as_bytes().starts_with(&text.as_bytes()[start..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_suffix_overlap() {
        assert_eq!(longest_prefix_suffix("hello wo", "world"), 2);
        assert_eq!(longest_prefix_suffix("hello", "world"), 0);
        assert_eq!(longest_prefix_suffix("ab", "abc"), 2);
        // A complete match is not a proper prefix (the caller has already looked for it).
        assert_eq!(longest_prefix_suffix("xabc", "abc"), 0);
        assert_eq!(longest_prefix_suffix("é", "\u{e9}x"), 2);
    }

    #[test]
    fn config_setters_keep_limits_positive() {
        let c = EngineConfig::default()
            .with_max_batch(0)
            .with_queue_capacity(3);
        assert_eq!((c.max_batch, c.queue_capacity), (1, 3));
    }
}
