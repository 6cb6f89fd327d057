//! Prometheus metrics of the language models: time to first token, time per output token,
//! decode tokens/s per request, token counters (rate() gives tokens/s), and the engine's queue
//! depth, running sequences, KV-cache use and the prefix cache (hits, reused prompt tokens,
//! positions held), refreshed from [`LanguageModel::stats`] on scrape.
//!
//! [`LanguageModel::stats`]: crate::llm::LanguageModel::stats

use std::sync::atomic::Ordering;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::metric_labels::ModelLabels;

pub struct LlmMetrics {
    ttft: Family<ModelLabels, Histogram>,
    tpot: Family<ModelLabels, Histogram>,
    decode_rate: Family<ModelLabels, Histogram>,
    prompt_tokens: Family<ModelLabels, Counter>,
    generated_tokens: Family<ModelLabels, Counter>,
    embedded_inputs: Family<ModelLabels, Counter>,
    embedding_batch: Family<ModelLabels, Histogram>,
    queue: Family<ModelLabels, Gauge>,
    active: Family<ModelLabels, Gauge>,
    kv_used: Family<ModelLabels, Gauge>,
    kv_capacity: Family<ModelLabels, Gauge>,
    prefix_hits: Family<ModelLabels, Counter>,
    prefix_reused: Family<ModelLabels, Counter>,
    prefix_used: Family<ModelLabels, Gauge>,
    prefix_capacity: Family<ModelLabels, Gauge>,
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
            embedding_batch: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1.0, 2.0, 10))
            }),
            queue: Family::default(),
            active: Family::default(),
            kv_used: Family::default(),
            kv_capacity: Family::default(),
            prefix_hits: Family::default(),
            prefix_reused: Family::default(),
            prefix_used: Family::default(),
            prefix_capacity: Family::default(),
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
            "embedding_batch_texts",
            "Texts per embedding forward call (requests waiting together are batched)",
            m.embedding_batch.clone(),
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
        r.register(
            "prefix_cache_hits",
            "Requests that reused a prefix from the prefix cache",
            m.prefix_hits.clone(),
        );
        r.register(
            "prefix_cache_reused_tokens",
            "Prompt tokens copied from the prefix cache instead of computed",
            m.prefix_reused.clone(),
        );
        r.register(
            "prefix_cache_used_tokens",
            "Positions held by the prefix cache (on top of the KV-cache budget)",
            m.prefix_used.clone(),
        );
        r.register(
            "prefix_cache_capacity_tokens",
            "Prefix-cache budget in positions (0: disabled)",
            m.prefix_capacity.clone(),
        );
        m
    }

    /// A finished generation request.
    pub fn finished(
        &self,
        model: &str,
        usage: &lepton_infer::Usage,
        timings: &lepton_infer::Timings,
    ) {
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

    /// One embedding forward call of `texts` texts (several requests' when they were batched).
    pub fn embedding_batch(&self, model: &str, texts: usize) {
        self.embedding_batch
            .get_or_create(&l(model))
            .observe(texts as f64);
    }

    /// Engine state at scrape time.
    pub fn engine(&self, model: &str, s: &lepton_infer::EngineStats) {
        let k = l(model);
        self.queue.get_or_create(&k).set(s.queue_depth as i64);
        self.active.get_or_create(&k).set(s.active_sequences as i64);
        self.kv_used
            .get_or_create(&k)
            .set(s.kv_cache_tokens_used as i64);
        self.kv_capacity
            .get_or_create(&k)
            .set(s.kv_cache_tokens_capacity as i64);
        // The engine keeps running totals: the counters follow them (fetch_max, so concurrent
        // scrapes never count twice).
        self.prefix_hits
            .get_or_create(&k)
            .inner()
            .fetch_max(s.prefix_cache_hits, Ordering::Relaxed);
        self.prefix_reused
            .get_or_create(&k)
            .inner()
            .fetch_max(s.prefix_tokens_reused, Ordering::Relaxed);
        self.prefix_used
            .get_or_create(&k)
            .set(s.prefix_cache_tokens_used as i64);
        self.prefix_capacity
            .get_or_create(&k)
            .set(s.prefix_cache_tokens_capacity as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_cache_metrics_follow_the_engine_totals() {
        let mut registry = Registry::default();
        let m = LlmMetrics::register(&mut registry);
        let mut s = lepton_infer::EngineStats {
            prefix_cache_hits: 2,
            prefix_tokens_reused: 70,
            prefix_cache_tokens_used: 120,
            prefix_cache_tokens_capacity: 4096,
            ..Default::default()
        };
        m.engine("gen", &s);
        // A second scrape with the same totals counts nothing more.
        m.engine("gen", &s);
        s.prefix_cache_hits = 3;
        s.prefix_tokens_reused = 105;
        m.engine("gen", &s);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for needle in [
            "llm_prefix_cache_hits_total{model=\"gen\"} 3",
            "llm_prefix_cache_reused_tokens_total{model=\"gen\"} 105",
            "llm_prefix_cache_used_tokens{model=\"gen\"} 120",
            "llm_prefix_cache_capacity_tokens{model=\"gen\"} 4096",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
