//! The scheduler thread: admission, KV growth and preemption, batched steps, streaming
//! (see the parent module's docs for the policy).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::prefix_cache::PrefixCache;
use super::{
    EngineConfig, FinishReason, GenerationEvent, Job, Shared, Timings, Usage, KV_BLOCK_TOKENS,
    MIN_RUN_TOKENS,
};
use crate::llama::{KvCache, Scratch, Step};
use crate::models::text_model::{Detokenizer, TextModel};
use crate::runtime::pool::Pool;
use crate::sampling::Sampler;

struct Sequence {
    job: Job,
    cache: KvCache,
    /// Prompt and generated tokens (the repetition penalty looks at all of them).
    tokens: Vec<u32>,
    /// Tokens to feed at the next step: the prompt (all tokens after a preemption), then the last
    /// sampled token.
    input: Vec<u32>,
    sampler: Sampler,
    detok: Detokenizer,
    /// Text not yet sent because it may begin a stop string.
    held: String,
    generated: usize,
    /// Tokens generated since the last admission (a preemption resets it).
    since_admit: usize,
    /// First admission.
    admitted: Instant,
    first_token: Option<Instant>,
}

impl Sequence {
    /// Most positions the cache ever holds: prompt + max_tokens.
    fn limit(&self) -> usize {
        self.job.prompt.len() + self.job.params.max_tokens
    }
}

/// A request the scheduler holds but does not run.
enum Waiting {
    New(Job),
    /// Paused to make room; resumes by prefilling all its tokens again.
    Preempted(Box<Sequence>),
}

impl Waiting {
    fn events(&self) -> &flume::Sender<GenerationEvent> {
        match self {
            Waiting::New(j) => &j.events,
            Waiting::Preempted(s) => &s.job.events,
        }
    }

    /// Positions reserved on admission: the prompt (all tokens so far after a preemption) plus a
    /// first block, at most prompt + max_tokens.
    fn reservation(&self) -> usize {
        match self {
            Waiting::New(j) => j.prompt.len() + j.params.max_tokens.min(KV_BLOCK_TOKENS),
            Waiting::Preempted(s) => (s.tokens.len() + KV_BLOCK_TOKENS).min(s.limit()),
        }
    }
}

enum Outcome {
    Continue,
    Finished,
    Cancelled,
}

pub(super) struct Scheduler {
    model: Arc<TextModel>,
    config: EngineConfig,
    queue: flume::Receiver<Job>,
    shared: Arc<Shared>,
    active: Vec<Sequence>,
    /// Taken from the channel, not running: waiting for room, deferred for a step, or preempted.
    pending: VecDeque<Waiting>,
    /// KV positions reserved by `active` (the sum of their cache capacities).
    kv_used: usize,
    prefixes: PrefixCache,
}

impl Scheduler {
    pub(super) fn new(
        model: Arc<TextModel>,
        config: EngineConfig,
        queue: flume::Receiver<Job>,
        shared: Arc<Shared>,
    ) -> Self {
        let prefixes = PrefixCache::new(config.prefix_cache_tokens);
        Self {
            model,
            config,
            queue,
            shared,
            active: Vec::new(),
            pending: VecDeque::new(),
            kv_used: 0,
            prefixes,
        }
    }

    pub(super) fn run(mut self) {
        let mut scratch = Scratch::default();
        let mut logits = Vec::new();
        let mut sampled = Vec::new();
        loop {
            if self.shared.shutdown.load(Ordering::SeqCst) {
                self.fail_all("the engine stopped");
                return;
            }
            if !self.admit() {
                return;
            }
            self.publish();
            if self.active.is_empty() {
                continue;
            }
            self.make_room();
            self.publish();
            // One forward pass over every sequence.
            let started = Instant::now();
            let result = {
                // Each sequence's adapter (none when no sequence has one: the base path).
                let held: Vec<_> = if self.active.iter().any(|s| s.job.adapter.is_some()) {
                    self.active.iter().map(|s| s.job.adapter.clone()).collect()
                } else {
                    Vec::new()
                };
                let adapters: Vec<_> = held.iter().map(|a| a.as_deref().map(|a| &a.lora)).collect();
                let mut steps: Vec<Step<'_>> = self
                    .active
                    .iter_mut()
                    .map(|s| Step {
                        tokens: &s.input,
                        cache: &mut s.cache,
                    })
                    .collect();
                self.model
                    .llama()
                    .forward_with(&mut steps, &adapters, &mut scratch, &mut logits)
            };
            {
                let mut st = self.shared.stats();
                st.steps += 1;
                st.step_seconds_sum += started.elapsed().as_secs_f64();
            }
            if let Err(e) = result {
                tracing::error!(error = %e, "forward pass failed");
                for s in self.active.drain(..) {
                    let _ = s
                        .job
                        .events
                        .send(GenerationEvent::Error(format!("generation failed: {e}")));
                }
                self.kv_used = 0;
                continue;
            }
            let vocab = self.model.llama().config().vocab_size;
            sample_all(&mut self.active, &mut logits, vocab, &mut sampled);
            let mut i = 0;
            let mut row = 0;
            while i < self.active.len() {
                if self.active[i].first_token.is_none() {
                    // Just prefilled: the prompt is in the cache.
                    let s = &self.active[i];
                    store_prefix(&mut self.prefixes, &s.job, &s.job.prompt, &s.cache);
                }
                let outcome = self.advance(i, sampled[row]);
                row += 1;
                match outcome {
                    Outcome::Continue => i += 1,
                    Outcome::Finished | Outcome::Cancelled => {
                        let s = self.active.remove(i);
                        if matches!(outcome, Outcome::Finished) {
                            let done = &s.tokens[..s.cache.len()];
                            store_prefix(&mut self.prefixes, &s.job, done, &s.cache);
                        }
                        self.kv_used -= s.cache.capacity();
                        if matches!(outcome, Outcome::Cancelled) {
                            self.shared.stats().requests_cancelled += 1;
                        }
                    }
                }
            }
            self.publish();
        }
    }

    /// Send `message` to every running and waiting request and drop them.
    fn fail_all(&mut self, message: &str) {
        for s in self.active.drain(..) {
            let _ = s.job.events.send(GenerationEvent::Error(message.into()));
        }
        for w in self.pending.drain(..) {
            let _ = w.events().send(GenerationEvent::Error(message.into()));
        }
        self.kv_used = 0;
        self.publish();
    }

    /// Publish the gauges (running, reserved KV, waiting, prefix cache).
    fn publish(&self) {
        // Under the stats lock, so a snapshot sees `waiting` and `active_sequences` together.
        let mut st = self.shared.stats();
        self.shared
            .waiting
            .store(self.pending.len(), Ordering::SeqCst);
        st.active_sequences = self.active.len();
        st.kv_cache_tokens_used = self.kv_used;
        st.prefix_cache_tokens_used = self.prefixes.used();
    }

    /// Take every request from the channel (blocking when there is nothing else to do), then
    /// admit waiting ones in order while a batch slot and KV room are free, preempting for the
    /// head of the queue when the policy allows. Returns false when the engine is gone.
    fn admit(&mut self) -> bool {
        loop {
            let idle = self.active.is_empty() && self.pending.is_empty();
            let next = if idle {
                self.queue.recv().map_err(|_| true)
            } else {
                self.queue
                    .try_recv()
                    .map_err(|e| e == flume::TryRecvError::Disconnected)
            };
            match next {
                Ok(job) => self.pending.push_back(Waiting::New(job)),
                Err(true) if idle => return false,
                Err(_) => break,
            }
        }
        let mut deferred = Vec::new();
        while let Some(head) = self.pending.pop_front() {
            if head.events().is_disconnected() {
                self.shared.stats().requests_cancelled += 1;
                continue;
            }
            let need = head.reservation();
            let slot = self.active.len() + deferred.len() < self.config.max_batch;
            let room = self.kv_used + need <= self.config.kv_cache_tokens;
            if !(slot && room) {
                let preempted = self.preempt_for(&head, need);
                self.pending.push_front(head);
                if preempted {
                    continue;
                }
                break;
            }
            match head {
                Waiting::New(mut job) => {
                    let key = job.prefix_key();
                    let stored = self.prefixes.lookup(key, &job.prompt).map_or(0, |(n, _)| n);
                    let prefilling = self
                        .active
                        .iter()
                        .filter(|s| s.first_token.is_none())
                        .map(|s| (s.job.prefix_key(), s.job.prompt.as_slice()));
                    if !job.deferred
                        && self
                            .prefixes
                            .worth_waiting(key, &job.prompt, stored, prefilling)
                    {
                        job.deferred = true;
                        deferred.push(job);
                        continue;
                    }
                    let tokens = job.prompt.clone();
                    let sequence = Sequence {
                        cache: self.model.llama().new_cache(0),
                        tokens,
                        input: Vec::new(),
                        sampler: Sampler::new(job.params.clone()),
                        detok: Detokenizer::default(),
                        held: String::new(),
                        generated: 0,
                        since_admit: 0,
                        admitted: Instant::now(),
                        first_token: None,
                        job,
                    };
                    self.start(sequence, need);
                }
                Waiting::Preempted(sequence) => self.start(*sequence, need),
            }
        }
        for job in deferred.into_iter().rev() {
            self.pending.push_front(Waiting::New(job));
        }
        true
    }

    /// Run `s` with a fresh cache of `reserve` positions, its prefix copied from the prefix cache
    /// when one matches; the rest of its tokens are prefilled at the next step.
    fn start(&mut self, mut s: Sequence, reserve: usize) {
        self.kv_used += reserve;
        s.cache = self.model.llama().new_cache(reserve);
        s.since_admit = 0;
        let mut reused = 0;
        if let Some((n, entry)) = self.prefixes.lookup(s.job.prefix_key(), &s.tokens) {
            match s.cache.copy_prefix_from(entry, n) {
                Ok(()) => reused = n,
                Err(e) => tracing::error!(error = %e, "prefix cache copy failed"),
            }
        }
        if reused > 0 {
            let mut st = self.shared.stats();
            st.prefix_cache_hits += 1;
            st.prefix_tokens_reused += reused as u64;
        }
        s.input = s.tokens[reused..].to_vec();
        self.active.push(s);
    }

    /// Pause running sequence `i`: free its cache and queue it at the back.
    fn preempt(&mut self, i: usize) {
        let mut s = self.active.remove(i);
        self.kv_used -= s.cache.capacity();
        s.cache = self.model.llama().new_cache(0);
        s.input.clear();
        self.shared.stats().requests_preempted += 1;
        self.pending.push_back(Waiting::Preempted(Box::new(s)));
    }

    /// Preempt one running sequence for a new request (never a preempted one: long streams do
    /// not take turns by preempting each other) that needs `need` positions: the one holding the
    /// most positions among those holding more than `need` that generated at least
    /// [`MIN_RUN_TOKENS`] since their admission. Returns whether one was preempted.
    fn preempt_for(&mut self, head: &Waiting, need: usize) -> bool {
        if !matches!(head, Waiting::New(_)) {
            return false;
        }
        let victim = self
            .active
            .iter()
            .enumerate()
            .filter(|(_, s)| s.cache.capacity() > need && s.since_admit >= MIN_RUN_TOKENS)
            .max_by_key(|(i, s)| (s.cache.capacity(), *i))
            .map(|(i, _)| i);
        match victim {
            Some(i) => {
                self.preempt(i);
                true
            }
            None => false,
        }
    }

    /// Grow every cache that is too small for its next step (doubling, at most to prompt +
    /// max_tokens); when the budget is spent, preempt the sequence holding the most positions
    /// (possibly the one growing) until the growth fits.
    fn make_room(&mut self) {
        let budget = self.config.kv_cache_tokens;
        let mut i = 0;
        while i < self.active.len() {
            let s = &self.active[i];
            let (cap, want, limit) = (s.cache.capacity(), s.cache.len() + s.input.len(), s.limit());
            if want <= cap {
                i += 1;
                continue;
            }
            let doubled = want.max(2 * cap).min(limit);
            let minimal = want.min(limit);
            let free = budget - self.kv_used;
            let grow_to = if doubled - cap <= free {
                Some(doubled)
            } else if minimal - cap <= free {
                Some(minimal)
            } else {
                None
            };
            match grow_to {
                Some(n) => {
                    self.active[i].cache.grow(n);
                    self.kv_used += n - cap;
                    i += 1;
                }
                None => {
                    let victim = self
                        .active
                        .iter()
                        .enumerate()
                        .max_by_key(|(j, s)| (s.cache.capacity(), *j))
                        .map_or(i, |(j, _)| j);
                    self.preempt(victim);
                    if victim < i {
                        i -= 1;
                    }
                    // victim == i: the next sequence moved to index i.
                }
            }
        }
    }

    /// Stream the sequence's next token and decide whether it goes on.
    fn advance(&mut self, i: usize, token: u32) -> Outcome {
        let model = self.model.clone();
        let s = &mut self.active[i];
        let now = Instant::now();
        let first = s.first_token.is_none();
        s.first_token.get_or_insert(now);
        s.generated += 1;
        s.since_admit += 1;
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
        if model.eos_token_ids().contains(&token) {
            finish = Some(FinishReason::Stop);
            text = std::mem::take(&mut s.held);
        } else {
            match s.detok.push(&model, token) {
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
            && model.eos_token_ids().contains(&token);
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
fn store_prefix(store: &mut PrefixCache, job: &Job, tokens: &[u32], cache: &KvCache) {
    if let Err(e) = store.insert(job.prefix_key(), tokens, cache) {
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
}
