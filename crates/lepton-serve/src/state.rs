//! Shared server state: the model registry, tokens, limits, metrics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::auth::Tokens;
use crate::backend::Backend;
use crate::batcher::Batcher;
use crate::client::Cidr;
use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::serve_error::{Result, ServeError};

/// Loads a model file into a backend (photon files in production, fakes in tests); the error
/// names the file and the failed step.
pub type Loader = Arc<dyn Fn(&Path, &str) -> Result<Arc<dyn Backend>> + Send + Sync>;

/// A [`Loader`] from a function that opens a model file as `name` (a model crate's `open`):
/// its error becomes [`ServeError::Load`] naming the model and the file.
pub fn loader<F, E>(open: F) -> Loader
where
    F: Fn(&Path, &str) -> std::result::Result<Arc<dyn Backend>, E> + Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    Arc::new(move |path: &Path, name: &str| {
        open(path, name).map_err(|e| ServeError::Load {
            name: name.to_string(),
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    })
}

/// One served model.
pub struct Served {
    pub backend: Arc<dyn Backend>,
    pub batcher: Arc<Batcher>,
    pub source: Option<PathBuf>,
    pub loaded_at: std::time::SystemTime,
    /// A language model, also served on the generation routes under the same name.
    pub generates: bool,
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub config: ServeConfig,
    pub tokens: Tokens,
    pub metrics: Arc<Metrics>,
    pub models: RwLock<BTreeMap<String, Arc<Served>>>,
    pub loader: Option<Loader>,
    /// Per-client request rate limits.
    pub rate_limiter: RateLimiter,
    /// `security.trusted-proxies`, parsed.
    pub trusted_proxies: Vec<Cidr>,
    /// Threads of each inference worker's compute pool: `CANDLE_NUM_THREADS` when set, else
    /// `compute-threads`.
    pub compute_threads: usize,
    /// Bounds the CPU-heavy request work on blocking threads (`limits.cpu-concurrency`).
    pub cpu: Arc<tokio::sync::Semaphore>,
    /// Bounds the photon generations running at once (`llm.generation-concurrency`).
    pub generation: Arc<tokio::sync::Semaphore>,
    pub ready: std::sync::atomic::AtomicBool,
    /// Language models (OpenAI-compatible routes).
    pub llms: crate::llm::LlmRegistry,
}

impl AppState {
    pub fn new(config: ServeConfig, tokens: Tokens, loader: Option<Loader>) -> Self {
        // candle sizes its CPU pool from this on the first kernel call, i.e. after this point.
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", config.compute_threads.to_string());
        }
        let compute_threads = std::env::var("CANDLE_NUM_THREADS")
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(config.compute_threads);
        let l = &config.limits;
        let rate_limiter = RateLimiter::new(
            l.rate_limit_per_sec,
            l.rate_limit_burst,
            l.rate_limit_max_clients,
        );
        let cpu = Arc::new(tokio::sync::Semaphore::new(l.cpu_concurrency.max(1)));
        let generation = Arc::new(tokio::sync::Semaphore::new(
            config.llm.generation_concurrency.max(1),
        ));
        // `ServeConfig::validate` refuses bad entries; a config built in code skips them here.
        let trusted_proxies = config
            .security
            .trusted_proxies
            .iter()
            .filter_map(|p| Cidr::parse(p).ok())
            .collect();
        AppState {
            inner: Arc::new(Inner {
                config,
                tokens,
                metrics: Arc::new(Metrics::new()),
                models: RwLock::new(BTreeMap::new()),
                loader,
                rate_limiter,
                trusted_proxies,
                compute_threads,
                cpu,
                generation,
                ready: std::sync::atomic::AtomicBool::new(true),
                llms: Default::default(),
            }),
        }
    }

    /// Serve `backend` as `name`, replacing (and draining) a model of the same name.
    pub fn insert(&self, name: &str, backend: Arc<dyn Backend>, source: Option<PathBuf>) {
        let lm = backend.language_model(
            self.inner.config.llm.max_tokens,
            Arc::clone(&self.inner.generation),
        );
        let generates = lm.is_some();
        let batcher = Batcher::start(
            name,
            Arc::clone(&backend),
            self.inner.config.batch_for(name),
            self.inner.compute_threads,
            Arc::clone(&self.inner.metrics),
        );
        let served = Arc::new(Served {
            backend,
            batcher,
            source,
            loaded_at: std::time::SystemTime::now(),
            generates,
        });
        match lm {
            Some(lm) => {
                let capacity = self.inner.config.batch_for(name).queue_capacity;
                self.inner.llms.insert(name, lm, capacity);
            }
            None => {
                if self.model(name).is_ok_and(|old| old.generates) {
                    self.inner.llms.remove(name);
                }
            }
        }
        if let Some(old) = self
            .inner
            .models
            .write()
            .expect("models lock")
            .insert(name.to_string(), served)
        {
            old.batcher.stop();
        }
    }

    /// Load a model file with the configured loader and serve it.
    pub fn load(&self, name: &str, path: &Path) -> Result<()> {
        let loader = self.inner.loader.as_ref().ok_or(ServeError::NoLoader)?;
        let started = Instant::now();
        let backend = loader(path, name)?;
        self.inner
            .metrics
            .model_loaded(name, started.elapsed().as_secs_f64());
        self.insert(name, backend, Some(path.to_path_buf()));
        Ok(())
    }

    pub fn remove(&self, name: &str) -> bool {
        match self.inner.models.write().expect("models lock").remove(name) {
            Some(old) => {
                old.batcher.stop();
                if old.generates {
                    self.inner.llms.remove(name);
                }
                true
            }
            None => false,
        }
    }

    pub fn model(&self, name: &str) -> Result<Arc<Served>, ApiError> {
        self.inner
            .models
            .read()
            .expect("models lock")
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("no model named '{name}'")))
    }

    /// Token-bucket rate limit per client (a token id or a client address).
    pub fn rate_limit(&self, client: &str) -> std::result::Result<(), ApiError> {
        self.inner.rate_limiter.check(client)
    }
}
