//! `serve.toml`: the server configuration. Every field has a documented default; unknown keys
//! are errors. Precedence: command line > environment > file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeConfig {
    /// Address to listen on. Default 127.0.0.1:8080.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Allow a non-loopback address without any token. Default false.
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub limits: Limits,
    /// Batching and worker defaults for every model.
    #[serde(default)]
    pub batching: BatchConfig,
    /// Per-model overrides of `batching`, by model name.
    #[serde(default)]
    pub models: BTreeMap<String, BatchConfig>,
    #[serde(default)]
    pub logging: LogConfig,
    /// Folder from which the admin API may load models. Default: none (admin loads refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models_dir: Option<PathBuf>,
    #[serde(default)]
    pub alerts: AlertConfig,
    /// Threads one forward pass may use (candle's CPU thread pool; the `CANDLE_NUM_THREADS`
    /// environment variable wins when set). Default 1: requests run in parallel across the
    /// workers instead, which on a small CPU is about twice as fast as several workers sharing
    /// candle's spinning pool (bench/RESULTS.md, issue 4).
    #[serde(default = "one")]
    pub compute_threads: usize,
}

fn one() -> usize {
    1
}

impl Default for ServeConfig {
    fn default() -> Self {
        toml::from_str("").expect("the empty config is valid")
    }
}

/// API tokens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthConfig {
    /// File with one token per line: `TOKEN scopes` or `sha256:HEX scopes`, scopes comma-separated
    /// (`predict`, `admin`); `#` starts a comment. Re-read when it changes (rotation without restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
}

/// Request limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Limits {
    /// Largest request body in bytes. Default 8 MiB.
    pub max_body_bytes: usize,
    /// Largest image side in pixels, checked from the header before decoding. Default 4096.
    pub max_image_side: u32,
    /// Largest decoded image in pixels. Default 16 Mi.
    pub max_image_pixels: u64,
    /// Deepest JSON nesting accepted. Default 32.
    pub max_json_depth: usize,
    /// Most inputs in one request. Default 1024.
    pub max_batch_inputs: usize,
    /// Per-request timeout in milliseconds. Default 10000.
    pub request_timeout_ms: u64,
    /// Requests per second per token (or per client address without auth); 0 = unlimited. Default 0.
    pub rate_limit_per_sec: f64,
    /// Burst size of the rate limit. Default 50.
    pub rate_limit_burst: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_image_side: 4096,
            max_image_pixels: 16 << 20,
            max_json_depth: 32,
            max_batch_inputs: 1024,
            request_timeout_ms: 10_000,
            rate_limit_per_sec: 0.0,
            rate_limit_burst: 50.0,
        }
    }
}

/// Dynamic batching and the elastic worker pool of one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BatchConfig {
    /// Most samples merged into one forward pass. Default 32; 1 turns batching off.
    pub max_batch_size: usize,
    /// Longest wait for more requests once one is queued, in microseconds. Default 2000.
    pub max_wait_us: u64,
    /// Most samples waiting; beyond it requests get 503 at once. Default 1024.
    pub queue_capacity: usize,
    /// Fewest inference workers. Default 1.
    pub min_workers: usize,
    /// Most inference workers. Default: the number of cores.
    pub max_workers: usize,
    /// A worker idle this long (ms) retires while above `min-workers`. Default 2000.
    pub idle_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_wait_us: 2000,
            queue_capacity: 1024,
            min_workers: 1,
            max_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            idle_ms: 2000,
        }
    }
}

impl BatchConfig {
    pub fn validate(&self, name: &str) -> Result<(), String> {
        if self.max_batch_size == 0
            || self.queue_capacity == 0
            || self.min_workers == 0
            || self.max_workers < self.min_workers
        {
            return Err(format!("{name}: need max-batch-size >= 1, queue-capacity >= 1 and 1 <= min-workers <= max-workers"));
        }
        Ok(())
    }
}

/// Access logs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogConfig {
    /// Log request payloads (masked). Default false: payloads are never logged.
    #[serde(default)]
    pub log_payloads: bool,
    /// JSON keys whose values are masked in logged payloads (e-mail addresses and runs of 4+
    /// digits are always masked).
    #[serde(default)]
    pub mask_keys: Vec<String>,
}

/// In-process alerting: the same rules as `deploy/prometheus-rules.yml`, evaluated every
/// `interval-s`; each change of a rule's state is logged and POSTed as JSON to `webhook` (see
/// `alerts.rs` for the body).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct AlertConfig {
    /// `http://` URL to POST alert state changes to. Default: none (alerts only logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Extra attempts after a failed webhook delivery (doubling back-off from 250 ms). Default 3.
    pub webhook_retries: u32,
    /// Timeout of one webhook attempt in milliseconds. Default 2000.
    pub webhook_timeout_ms: u64,
    /// Evaluation period in seconds. Default 30.
    pub interval_s: u64,
    /// p99 latency objective in ms. Default 250.
    pub latency_p99_ms: f64,
    /// Highest tolerated fraction of 5xx responses. Default 0.01.
    pub error_rate: f64,
    /// Queue fill fraction that counts as saturated. Default 0.8.
    pub queue_saturation: f64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            webhook: None,
            webhook_retries: 3,
            webhook_timeout_ms: 2000,
            interval_s: 30,
            latency_p99_ms: 250.0,
            error_rate: 0.01,
            queue_saturation: 0.8,
        }
    }
}

impl ServeConfig {
    /// Read a config file; errors name the file and the key.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cfg: ServeConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.compute_threads == 0 {
            return Err("compute-threads: must be at least 1".into());
        }
        self.batching.validate("batching")?;
        for (name, b) in &self.models {
            b.validate(&format!("models.{name}"))?;
        }
        if let Some(url) = &self.alerts.webhook {
            if !url.starts_with("http://") {
                return Err(format!("alerts.webhook '{url}': only http:// URLs are supported (put a TLS proxy in front for https)"));
            }
        }
        Ok(())
    }

    pub fn batch_for(&self, model: &str) -> BatchConfig {
        self.models
            .get(model)
            .cloned()
            .unwrap_or_else(|| self.batching.clone())
    }
}
