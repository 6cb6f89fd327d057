//! Dynamic batching with an elastic worker pool, per model.
//!
//! Requests put their samples on a bounded queue (full queue = `Overloaded`, answered 503 at
//! once). Workers take the first waiting job, then keep taking jobs until `max-batch-size`
//! samples or `max-wait` has passed, run one forward pass on the blocking pool, and answer each
//! job. A supervisor adds a worker while samples wait and the pool is below `max-workers`; a
//! worker idle for `idle` retires while the pool is above `min-workers`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::backend::{Backend, Output};
use crate::config::BatchConfig;
use crate::error::ApiError;
use crate::llm::{api_error, InferError};
use crate::metrics::Metrics;

struct Job {
    features: Vec<f32>,
    n: usize,
    reply: oneshot::Sender<Result<Vec<Output>, Arc<InferError>>>,
}

/// The queue and pool of one model.
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    queued: Arc<AtomicUsize>,
    workers: Arc<AtomicUsize>,
    cfg: BatchConfig,
    backend: Arc<dyn Backend>,
    metrics: Arc<Metrics>,
    name: String,
    shutdown: tokio_util_shutdown::Token,
}

/// A tiny cancellation flag (avoids a dependency for one bool).
mod tokio_util_shutdown {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[derive(Clone, Default)]
    pub struct Token(Arc<AtomicBool>);
    impl Token {
        pub fn cancel(&self) {
            self.0.store(true, Ordering::Relaxed)
        }
        pub fn is_cancelled(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }
}

impl Batcher {
    /// Start the pool (needs a Tokio runtime).
    pub fn start(
        name: &str,
        backend: Arc<dyn Backend>,
        cfg: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let b = Arc::new(Batcher {
            tx,
            rx: Arc::new(Mutex::new(rx)),
            queued: Arc::new(AtomicUsize::new(0)),
            workers: Arc::new(AtomicUsize::new(0)),
            cfg,
            backend,
            metrics,
            name: name.to_string(),
            shutdown: Default::default(),
        });
        for _ in 0..b.cfg.min_workers {
            b.spawn_worker();
        }
        let sup = Arc::downgrade(&b);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let Some(b) = sup.upgrade() else { return };
                if b.shutdown.is_cancelled() {
                    return;
                }
                let queued = b.queued.load(Ordering::Relaxed);
                let workers = b.workers.load(Ordering::Relaxed);
                if queued > 0
                    && workers < b.cfg.max_workers
                    && queued >= workers * b.cfg.max_batch_size.clamp(1, 4)
                {
                    b.spawn_worker();
                }
                b.metrics.set_queue(&b.name, queued as i64);
            }
        });
        b
    }

    pub fn worker_count(&self) -> usize {
        self.workers.load(Ordering::Relaxed)
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.cfg.queue_capacity
    }

    /// Stop accepting work; running workers finish their batch and exit.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    fn spawn_worker(self: &Arc<Self>) {
        let n = self.workers.fetch_add(1, Ordering::SeqCst) + 1;
        self.metrics.set_workers(&self.name, n as i64);
        let b = Arc::clone(self);
        tokio::spawn(async move { b.worker().await });
    }

    async fn worker(self: Arc<Self>) {
        let idle = Duration::from_millis(self.cfg.idle_ms);
        loop {
            let first = {
                let mut rx = self.rx.lock().await;
                match tokio::time::timeout(idle, rx.recv()).await {
                    Ok(Some(job)) => Some(job),
                    Ok(None) => None,
                    Err(_) => {
                        // Idle: retire if above the minimum.
                        let cur = self.workers.load(Ordering::SeqCst);
                        if cur > self.cfg.min_workers
                            && self
                                .workers
                                .compare_exchange(cur, cur - 1, Ordering::SeqCst, Ordering::SeqCst)
                                .is_ok()
                        {
                            self.metrics.set_workers(&self.name, (cur - 1) as i64);
                            return;
                        }
                        if self.shutdown.is_cancelled() {
                            return;
                        }
                        continue;
                    }
                }
            };
            let Some(first) = first else { return };
            let mut jobs = vec![first];
            let mut samples = jobs[0].n;
            let deadline = Instant::now() + Duration::from_micros(self.cfg.max_wait_us);
            {
                let mut rx = self.rx.lock().await;
                while samples < self.cfg.max_batch_size {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match tokio::time::timeout(deadline - now, rx.recv()).await {
                        Ok(Some(job)) => {
                            samples += job.n;
                            jobs.push(job);
                        }
                        _ => break,
                    }
                }
            }
            self.queued.fetch_sub(samples, Ordering::SeqCst);
            self.run(jobs, samples).await;
        }
    }

    async fn run(&self, jobs: Vec<Job>, samples: usize) {
        let mut features = Vec::with_capacity(jobs.iter().map(|j| j.features.len()).sum());
        for j in &jobs {
            features.extend_from_slice(&j.features);
        }
        let backend = Arc::clone(&self.backend);
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || backend.predict(&features, samples))
            .await
            .unwrap_or_else(|e| Err(InferError::internal("inference task", e)))
            .map_err(Arc::new);
        self.metrics
            .observe_batch(&self.name, samples, started.elapsed().as_secs_f64());
        match result {
            Ok(mut outputs) => {
                for j in jobs.into_iter().rev() {
                    let rest = outputs.split_off(outputs.len() - j.n);
                    let _ = j.reply.send(Ok(rest));
                }
            }
            Err(e) => {
                for j in jobs {
                    let _ = j.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Queue `n` samples and wait for their outputs.
    pub async fn submit(&self, features: Vec<f32>, n: usize) -> Result<Vec<Output>, ApiError> {
        if self.shutdown.is_cancelled() {
            return Err(ApiError::Overloaded("the model is being unloaded".into()));
        }
        let (reply, rx) = oneshot::channel();
        // Count samples, not jobs, against the capacity.
        let before = self.queued.fetch_add(n, Ordering::SeqCst);
        if before + n > self.cfg.queue_capacity {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            self.metrics.rejected(&self.name);
            return Err(ApiError::Overloaded(format!(
                "the queue of model '{}' is full",
                self.name
            )));
        }
        if self.tx.try_send(Job { features, n, reply }).is_err() {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            self.metrics.rejected(&self.name);
            return Err(ApiError::Overloaded(format!(
                "the queue of model '{}' is full",
                self.name
            )));
        }
        match rx.await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(match Arc::try_unwrap(e) {
                Ok(e) => api_error(e),
                Err(shared) => {
                    api_error(InferError::internal("batched forward pass", shared.chain()))
                }
            }),
            Err(_) => Err(ApiError::Internal(
                "the inference worker dropped the request".into(),
            )),
        }
    }
}
