//! Prometheus metrics of the language models: time to first token, time per output token,
//! decode tokens/s per request, token counters (rate() gives tokens/s), and the engine's queue
//! depth, running sequences and KV-cache use, refreshed from [`LanguageModel::stats`] on scrape.
//!
//! [`LanguageModel::stats`]: crate::llm::LanguageModel::stats

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::metrics::ModelLabels;

pub struct LlmMetrics {
    ttft: Family<ModelLabels, Histogram>,
    tpot: Family<ModelLabels, Histogram>,
    decode_rate: Family<ModelLabels, Histogram>,
    prompt_tokens: Family<ModelLabels, Counter>,
    generated_tokens: Family<ModelLabels, Counter>,
    embedded_inputs: Family<ModelLabels, Counter>,
    queue: Family<ModelLabels, Gauge>,
    active: Family<ModelLabels, Gauge>,
    kv_used: Family<ModelLabels, Gauge>,
    kv_capacity: Family<ModelLabels, Gauge>,
}

fn l(model: &str) -> ModelLabels {
    ModelLabels {
        model: model.into(),
    }
}

impl LlmMetrics {
    /// Create the metrics and register them (prefix `llm_`) in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = LlmMetrics {
            ttft: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.002, 2.0, 16))
            }),
            tpot: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            decode_rate: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1.0, 2.0, 16))
            }),
            prompt_tokens: Family::default(),
            generated_tokens: Family::default(),
            embedded_inputs: Family::default(),
            queue: Family::default(),
            active: Family::default(),
            kv_used: Family::default(),
            kv_capacity: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("llm");
        r.register(
            "time_to_first_token_seconds",
            "Request arrival to first generated token (queueing and prefill included)",
            m.ttft.clone(),
        );
        r.register(
            "time_per_output_token_seconds",
            "Mean time per generated token after the first, per request",
            m.tpot.clone(),
        );
        r.register(
            "decode_tokens_per_second",
            "Decode speed of each finished request (tokens after the first / their time)",
            m.decode_rate.clone(),
        );
        r.register(
            "prompt_tokens",
            "Prompt tokens processed",
            m.prompt_tokens.clone(),
        );
        r.register(
            "generated_tokens",
            "Tokens generated (rate() = tokens/s)",
            m.generated_tokens.clone(),
        );
        r.register(
            "embedded_inputs",
            "Texts embedded",
            m.embedded_inputs.clone(),
        );
        r.register(
            "queue_depth",
            "Generation requests waiting for the engine",
            m.queue.clone(),
        );
        r.register(
            "active_sequences",
            "Sequences in the running batch",
            m.active.clone(),
        );
        r.register(
            "kv_cache_used_tokens",
            "KV-cache positions in use",
            m.kv_used.clone(),
        );
        r.register(
            "kv_cache_capacity_tokens",
            "KV-cache budget in positions",
            m.kv_capacity.clone(),
        );
        m
    }

    /// A finished generation request.
    pub fn finished(&self, model: &str, usage: &lepton_llm::Usage, timings: &lepton_llm::Timings) {
        let k = l(model);
        self.ttft
            .get_or_create(&k)
            .observe(timings.time_to_first_token.as_secs_f64());
        if let Some(t) = timings.time_per_output_token(usage) {
            self.tpot.get_or_create(&k).observe(t.as_secs_f64());
            if t.as_secs_f64() > 0.0 {
                self.decode_rate
                    .get_or_create(&k)
                    .observe(1.0 / t.as_secs_f64());
            }
        }
        self.prompt_tokens
            .get_or_create(&k)
            .inc_by(usage.prompt_tokens as u64);
        self.generated_tokens
            .get_or_create(&k)
            .inc_by(usage.completion_tokens as u64);
    }

    /// An embeddings request.
    pub fn embedded(&self, model: &str, inputs: usize, tokens: usize) {
        self.embedded_inputs
            .get_or_create(&l(model))
            .inc_by(inputs as u64);
        self.prompt_tokens
            .get_or_create(&l(model))
            .inc_by(tokens as u64);
    }

    /// Engine state at scrape time.
    pub fn engine(&self, model: &str, s: &lepton_llm::EngineStats) {
        let k = l(model);
        self.queue.get_or_create(&k).set(s.queue_depth as i64);
        self.active.get_or_create(&k).set(s.active_sequences as i64);
        self.kv_used
            .get_or_create(&k)
            .set(s.kv_cache_tokens_used as i64);
        self.kv_capacity
            .get_or_create(&k)
            .set(s.kv_cache_tokens_capacity as i64);
    }
}
