//! Shared server state: the model registry, tokens, limits, metrics.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::auth::Tokens;
use crate::backend::Backend;
use crate::batcher::Batcher;
use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Loads a model file into a backend (photon files in production, fakes in tests).
pub type Loader = Arc<dyn Fn(&Path, &str) -> Result<Arc<dyn Backend>, String> + Send + Sync>;

/// One served model.
pub struct Served {
    pub backend: Arc<dyn Backend>,
    pub batcher: Arc<Batcher>,
    pub source: Option<PathBuf>,
    pub loaded_at: std::time::SystemTime,
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
    pub buckets: Mutex<HashMap<String, (f64, Instant)>>,
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
        AppState {
            inner: Arc::new(Inner {
                config,
                tokens,
                metrics: Arc::new(Metrics::new()),
                models: RwLock::new(BTreeMap::new()),
                loader,
                buckets: Mutex::new(HashMap::new()),
                ready: std::sync::atomic::AtomicBool::new(true),
                llms: Default::default(),
            }),
        }
    }

    /// Serve `backend` as `name`, replacing (and draining) a model of the same name.
    pub fn insert(&self, name: &str, backend: Arc<dyn Backend>, source: Option<PathBuf>) {
        let batcher = Batcher::start(
            name,
            Arc::clone(&backend),
            self.inner.config.batch_for(name),
            Arc::clone(&self.inner.metrics),
        );
        let served = Arc::new(Served {
            backend,
            batcher,
            source,
            loaded_at: std::time::SystemTime::now(),
        });
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
    pub fn load(&self, name: &str, path: &Path) -> Result<(), String> {
        let loader = self
            .inner
            .loader
            .as_ref()
            .ok_or("this server cannot load models")?;
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

    /// Token-bucket rate limit per caller; `Err(seconds to wait)` when exhausted.
    pub fn rate_limit(&self, caller: &str) -> Result<(), ApiError> {
        let l = &self.inner.config.limits;
        if l.rate_limit_per_sec <= 0.0 {
            return Ok(());
        }
        let mut b = self.inner.buckets.lock().expect("bucket lock");
        let now = Instant::now();
        let (tokens, last) = b
            .entry(caller.to_string())
            .or_insert((l.rate_limit_burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * l.rate_limit_per_sec)
            .min(l.rate_limit_burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(ApiError::RateLimited(
                ((1.0 - *tokens) / l.rate_limit_per_sec).ceil() as u64,
            ))
        }
    }
}
