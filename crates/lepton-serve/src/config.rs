//! `serve.toml`: the server configuration. Every field has a documented default; unknown keys
//! are errors. Precedence: command line > environment > file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::serve_error::{Result, ServeError};

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
    /// The most work one `POST /v1/models/{name}/explain` may ask for (`[explain]`: max-steps
    /// 1024, max-positions 4096, max-shap-rows 2,000,000, max-background 1000 by default).
    #[serde(default)]
    pub explain: lepton_infer::ExplainLimits,
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
    /// Threads one forward pass may use: each inference worker runs its forward passes on a
    /// compute pool of this many threads, which is also candle's CPU thread count (the
    /// `CANDLE_NUM_THREADS` environment variable wins when set). Default 1: requests run in
    /// parallel across the workers (`max-workers`, default one per core) instead, which on a
    /// small CPU is faster than several workers sharing every core (bench/RESULTS.md, issues 4
    /// and 19).
    #[serde(default = "one")]
    pub compute_threads: usize,
    #[serde(default)]
    pub connections: ConnectionLimits,
    #[serde(default)]
    pub security: Security,
    #[serde(default)]
    pub llm: LlmLimits,
}

fn one() -> usize {
    1
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Connection-level limits (`[connections]`), enforced by the server's own accept loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ConnectionLimits {
    /// Most open client connections. At the cap, idle keep-alive connections are closed to make
    /// room, and new connections wait in the listen backlog. Keep it below the open-files limit
    /// (`ulimit -n`). Default 4096.
    pub max_connections: usize,
    /// Time from the first byte of a request to the end of its headers, in ms; a slower client
    /// (slowloris) is disconnected. Default 10000.
    pub header_read_timeout_ms: u64,
    /// Time a connection may stay open without a request in progress (before its first request
    /// and between keep-alive requests), in ms. Default 30000.
    pub idle_timeout_ms: u64,
    /// On SIGTERM / Ctrl-C: stop accepting, close idle and half-sent connections at once, let
    /// requests in progress finish for at most this long (ms), then close everything. Default
    /// 10000.
    pub drain_timeout_ms: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            drain_timeout_ms: 10_000,
        }
    }
}

/// Browser and proxy rules (`[security]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Security {
    /// Extra `Host` names accepted while serving a loopback address without tokens (where any
    /// other name is a DNS-rebinding attempt and gets 403). `localhost`, `*.localhost`,
    /// `127.0.0.1` and `[::1]` are always accepted. Default: none.
    pub allowed_hosts: Vec<String>,
    /// Extra origins (`scheme://host[:port]`) whose browser pages may send state-changing
    /// requests (POST, DELETE, ...). Requests carrying any other `Origin` (or `Sec-Fetch-Site:
    /// cross-site`) get 403. Always allowed: `http://` + the listen address and, for a loopback
    /// listen address, `http://localhost:PORT`, `http://127.0.0.1:PORT`, `http://[::1]:PORT`.
    /// Default: none.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies (IP addresses or CIDR ranges such as `10.0.0.0/8`) whose
    /// `X-Forwarded-For` header names the client for rate limiting: the right-most address in it
    /// that is not itself a trusted proxy. From any other peer the header is ignored. Default:
    /// none (the peer address is the client).
    pub trusted_proxies: Vec<String>,
}

/// Streaming limits of the language-model routes (`[llm]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct LlmLimits {
    /// Interval of the `: keep-alive` comments sent on a server-sent-event stream while it waits
    /// (queued, or between tokens), in ms. Default 15000.
    pub keep_alive_ms: u64,
    /// Longest a generation may run from submission to its last token, in ms; then the stream
    /// ends with an error event (or the JSON request gets 504) and the sequence is cancelled.
    /// Default 600000.
    pub stream_timeout_ms: u64,
    /// Most tokens one generation from a photon language model may produce: a request's
    /// `max_tokens` above it gets 400 naming the field (at most 65536). Default 2048.
    pub max_tokens: usize,
    /// Generations from photon language models running at once, each on a blocking thread;
    /// more wait their turn (within the model's slots, `queue-capacity`). A pool of its own, so
    /// long generations never hold the permits of `limits.cpu-concurrency` that request parsing
    /// needs. Default: the number of cores.
    pub generation_concurrency: usize,
    /// Most texts one embedding forward call takes: `/v1/embeddings` requests that wait at the
    /// same time are embedded together up to this many texts (a request is never split; one
    /// larger than this runs alone). Default 64.
    pub embedding_batch_texts: usize,
}

impl Default for LlmLimits {
    fn default() -> Self {
        Self {
            keep_alive_ms: 15_000,
            stream_timeout_ms: 600_000,
            max_tokens: 2048,
            generation_concurrency: cores(),
            embedding_batch_texts: 64,
        }
    }
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
    /// File with one token per line: `TOKEN [scopes] [# comment]` or `sha256:HEX [scopes]`,
    /// scopes comma-separated (`predict`, `admin`; default `predict`). A line whose first
    /// non-blank character is `#` is a comment; elsewhere `#` is an ordinary token character
    /// unless it starts a field after the token. Any malformed line is an error naming it.
    /// Re-read when it changes (rotation without restart; a bad file keeps the old tokens).
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
    /// Requests per second per client: per token for requests with a valid token, per client
    /// address otherwise (see `security.trusted-proxies`); 0 = unlimited. Default 0.
    pub rate_limit_per_sec: f64,
    /// Burst size of the rate limit. Default 50.
    pub rate_limit_burst: f64,
    /// Most clients (tokens or addresses) the rate limiter remembers; beyond it the clients whose
    /// bucket is full again are forgotten first, then the least recently seen. Default 10000.
    pub rate_limit_max_clients: usize,
    /// Largest admin request body (a model name and path) in bytes. Default 64 KiB.
    pub max_admin_body_bytes: usize,
    /// Largest decoded image in bytes (width x height x channels x bytes per sample, read from
    /// the header before decoding). Default 64 MiB: a 4096x4096 8-bit RGB image fits, the same
    /// image with 16-bit samples does not.
    pub max_image_bytes: u64,
    /// CPU-heavy request work (JSON bodies, image decoding, tokenization) runs on blocking
    /// threads, at most this many jobs at once; others wait their turn. Default: the number of
    /// cores.
    pub cpu_concurrency: usize,
    /// Largest prompt in bytes, checked before tokenization (the model's own bound, context
    /// length x its longest token in bytes, applies too). Default 1 MiB.
    pub max_prompt_bytes: usize,
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
            rate_limit_max_clients: 10_000,
            max_admin_body_bytes: 64 << 10,
            max_image_bytes: 64 << 20,
            cpu_concurrency: cores(),
            max_prompt_bytes: 1 << 20,
        }
    }
}

/// Dynamic batching and the elastic worker pool of one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BatchConfig {
    /// Most samples merged into one forward pass. Default 16; 1 turns batching off. Larger
    /// batches save little per sample once a worker runs its forward on its own thread, and
    /// with a few dozen clients a batch of 32 left no request being received while the
    /// workers computed: 16 served 1.13-1.17x the requests per second at 64 connections
    /// (bench/RESULTS.md, issue 19).
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
            max_batch_size: 16,
            max_wait_us: 2000,
            queue_capacity: 1024,
            min_workers: 1,
            max_workers: cores(),
            idle_ms: 2000,
        }
    }
}

impl BatchConfig {
    pub fn validate(&self, name: &str) -> Result<()> {
        if self.max_batch_size == 0
            || self.queue_capacity == 0
            || self.min_workers == 0
            || self.max_workers < self.min_workers
        {
            return Err(ServeError::config(
                name,
                "need max-batch-size >= 1, queue-capacity >= 1 and 1 <= min-workers <= max-workers",
            ));
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
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: ServeConfig =
            toml::from_str(&text).map_err(|source| ServeError::ConfigSyntax {
                path: path.to_path_buf(),
                source,
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Cross-field checks; errors name the key.
    pub fn validate(&self) -> Result<()> {
        if self.compute_threads == 0 {
            return Err(ServeError::config("compute-threads", "must be at least 1"));
        }
        let positive = [
            ("limits.max-body-bytes", self.limits.max_body_bytes as u64),
            (
                "limits.max-admin-body-bytes",
                self.limits.max_admin_body_bytes as u64,
            ),
            ("limits.max-image-bytes", self.limits.max_image_bytes),
            ("limits.cpu-concurrency", self.limits.cpu_concurrency as u64),
            (
                "limits.max-prompt-bytes",
                self.limits.max_prompt_bytes as u64,
            ),
            (
                "limits.rate-limit-max-clients",
                self.limits.rate_limit_max_clients as u64,
            ),
            (
                "connections.max-connections",
                self.connections.max_connections as u64,
            ),
            (
                "connections.header-read-timeout-ms",
                self.connections.header_read_timeout_ms,
            ),
            (
                "connections.idle-timeout-ms",
                self.connections.idle_timeout_ms,
            ),
            ("llm.keep-alive-ms", self.llm.keep_alive_ms),
            ("llm.stream-timeout-ms", self.llm.stream_timeout_ms),
            ("llm.max-tokens", self.llm.max_tokens as u64),
            (
                "llm.generation-concurrency",
                self.llm.generation_concurrency as u64,
            ),
            (
                "llm.embedding-batch-texts",
                self.llm.embedding_batch_texts as u64,
            ),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(ServeError::config(field, "must be at least 1"));
            }
        }
        for (i, p) in self.security.trusted_proxies.iter().enumerate() {
            crate::client::Cidr::parse(p)
                .map_err(|m| ServeError::config(format!("security.trusted-proxies[{i}]"), m))?;
        }
        for (i, o) in self.security.allowed_origins.iter().enumerate() {
            if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
                return Err(ServeError::config(
                    format!("security.allowed-origins[{i}]"),
                    format!("'{o}': expected scheme://host[:port] (no path, no trailing /)"),
                ));
            }
        }
        if self.llm.max_tokens > lepton_infer::MAX_NEW_TOKENS {
            return Err(ServeError::config(
                "llm.max-tokens",
                format!(
                    "{} is more than {}, the most one generation may produce",
                    self.llm.max_tokens,
                    lepton_infer::MAX_NEW_TOKENS
                ),
            ));
        }
        self.batching.validate("batching")?;
        for (name, b) in &self.models {
            b.validate(&format!("models.{name}"))?;
        }
        if let Some(url) = &self.alerts.webhook {
            if !url.starts_with("http://") {
                return Err(ServeError::config("alerts.webhook", format!("'{url}': only http:// URLs are supported (put a TLS proxy in front for https)")));
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
