//! Prometheus metrics (`/metrics`, OpenMetrics text) and the numbers the in-process alert rules
//! read.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use crate::metric_labels::{ExplainLabels, ModelLabels, RequestLabels, RouteLabels};

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    batch_size: Family<ModelLabels, Histogram>,
    inference: Family<ModelLabels, Histogram>,
    explanation: Family<ExplainLabels, Histogram>,
    queue: Family<ModelLabels, Gauge>,
    workers: Family<ModelLabels, Gauge>,
    load_seconds: Family<ModelLabels, Gauge<f64, AtomicU64>>,
    rejected: Family<ModelLabels, Counter>,
    memory: Gauge,
    connections: Gauge,
    refused_connections: Counter,
    /// Language-model metrics (`lepton_llm_*`).
    pub llm: crate::llm_metrics::LlmMetrics,
    /// Recent (latency seconds, is 5xx) pairs for the alert rules.
    recent: Mutex<VecDeque<(f64, bool)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lepton");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let batch_size = Family::<ModelLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1.0, 2.0, 10))
        });
        let inference = Family::<ModelLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00005, 2.0, 18))
        });
        let explanation = Family::<ExplainLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 20))
        });
        let queue = Family::<ModelLabels, Gauge>::default();
        let workers = Family::<ModelLabels, Gauge>::default();
        let load_seconds = Family::<ModelLabels, Gauge<f64, AtomicU64>>::default();
        let rejected = Family::<ModelLabels, Counter>::default();
        let memory = Gauge::default();
        let connections = Gauge::default();
        let refused_connections = Counter::default();
        registry.register(
            "open_connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "closed_connections_by_limit",
            "Connections closed by the header-read or idle timeout, the connection cap or the drain deadline",
            refused_connections.clone(),
        );
        registry.register(
            "requests",
            "HTTP requests by model, route and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency",
            latency.clone(),
        );
        registry.register("batch_size", "Samples per forward pass", batch_size.clone());
        registry.register(
            "inference_duration_seconds",
            "Time of one batched forward pass",
            inference.clone(),
        );
        registry.register(
            "explanation_duration_seconds",
            "Compute time of one explanation (all its forward and backward passes)",
            explanation.clone(),
        );
        registry.register("queue_depth", "Samples waiting for a worker", queue.clone());
        registry.register(
            "workers",
            "Inference workers in the elastic pool",
            workers.clone(),
        );
        registry.register(
            "model_load_seconds",
            "Time to load and verify a model package",
            load_seconds.clone(),
        );
        registry.register(
            "rejected",
            "Requests shed because the queue was full",
            rejected.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the server process",
            memory.clone(),
        );
        let llm = crate::llm_metrics::LlmMetrics::register(&mut registry);
        Self {
            llm,
            registry,
            requests,
            latency,
            batch_size,
            inference,
            explanation,
            queue,
            workers,
            load_seconds,
            rejected,
            memory,
            connections,
            refused_connections,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    pub fn request(&self, model: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                model: model.into(),
                route: route.into(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                model: model.into(),
                route: route.into(),
            })
            .observe(seconds);
        let mut r = self.recent.lock().expect("metrics lock");
        r.push_back((seconds, status >= 500));
        if r.len() > 10_000 {
            r.pop_front();
        }
    }

    pub fn observe_batch(&self, model: &str, samples: usize, seconds: f64) {
        let l = ModelLabels {
            model: model.into(),
        };
        self.batch_size.get_or_create(&l).observe(samples as f64);
        self.inference.get_or_create(&l).observe(seconds);
    }

    pub fn observe_explanation(&self, model: &str, method: &str, seconds: f64) {
        self.explanation
            .get_or_create(&ExplainLabels {
                model: model.into(),
                method: method.into(),
            })
            .observe(seconds);
    }

    pub fn set_queue(&self, model: &str, depth: i64) {
        self.queue
            .get_or_create(&ModelLabels {
                model: model.into(),
            })
            .set(depth);
    }

    pub fn set_workers(&self, model: &str, n: i64) {
        self.workers
            .get_or_create(&ModelLabels {
                model: model.into(),
            })
            .set(n);
    }

    pub fn model_loaded(&self, model: &str, seconds: f64) {
        self.load_seconds
            .get_or_create(&ModelLabels {
                model: model.into(),
            })
            .set(seconds);
    }

    pub fn rejected(&self, model: &str) {
        self.rejected
            .get_or_create(&ModelLabels {
                model: model.into(),
            })
            .inc();
    }

    /// A client connection opened (`+1`) or closed (`-1`).
    pub fn connections(&self, delta: i64) {
        self.connections.inc_by(delta);
    }

    /// A connection closed by a server limit (timeouts, cap, drain).
    pub fn connection_cut(&self) {
        self.refused_connections.inc();
    }

    /// Take the recent request window: (p99 latency in seconds, 5xx fraction, count).
    pub fn drain_window(&self) -> (f64, f64, usize) {
        let mut r = self.recent.lock().expect("metrics lock");
        let n = r.len();
        if n == 0 {
            return (0.0, 0.0, 0);
        }
        let mut lat: Vec<f64> = r.iter().map(|x| x.0).collect();
        lat.sort_by(f64::total_cmp);
        let p99 = lat[((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1];
        let errors = r.iter().filter(|x| x.1).count() as f64 / n as f64;
        r.clear();
        (p99, errors, n)
    }

    /// The OpenMetrics text.
    pub fn render(&self) -> String {
        self.memory.set(resident_bytes());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Resident set size from /proc/self/statm (0 where unavailable).
pub fn resident_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<i64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}
