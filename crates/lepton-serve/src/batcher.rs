//! Dynamic batching with an elastic worker pool, per model.
//!
//! Requests put their samples on a bounded queue (full queue = `Overloaded`, answered 503 at
//! once). Workers take the first waiting job, then keep taking jobs until `max-batch-size`
//! samples or `max-wait` has passed, run one forward pass, and answer each job. A supervisor
//! adds a worker while samples wait and the pool is below `max-workers`; a worker idle for
//! `idle` retires while the pool is above `min-workers`.
//!
//! Each worker runs its forward passes on a compute pool of its own with `compute-threads`
//! threads (a rayon pool: the model's kernels split a batch over `rayon::current_num_threads()`
//! threads of the pool they run in). Without it every forward spread over rayon's global pool,
//! one thread per core, so two workers on two cores ran two forwards on the same two threads,
//! each waiting on the other's work, and the threads that handed the forward over slept in between.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::warn;

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
    /// Threads of each worker's compute pool (`compute-threads`).
    threads: usize,
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
    /// Start the pool (needs a Tokio runtime); each worker's forward passes use `threads`
    /// threads (`compute-threads`, at least 1).
    pub fn start(
        name: &str,
        backend: Arc<dyn Backend>,
        cfg: BatchConfig,
        threads: usize,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity);
        let b = Arc::new(Batcher {
            tx,
            rx: Arc::new(Mutex::new(rx)),
            queued: Arc::new(AtomicUsize::new(0)),
            workers: Arc::new(AtomicUsize::new(0)),
            cfg,
            threads: threads.max(1),
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
        let name = self.name.clone();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(move |i| format!("compute-{name}-{i}"))
            .build()
            .map_err(|e| {
                warn!(model = %self.name, error = %e, "cannot start a compute pool: forward passes run on the blocking pool");
            })
            .ok();
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
            self.run(pool.as_ref(), jobs, samples).await;
        }
    }

    async fn run(&self, pool: Option<&rayon::ThreadPool>, jobs: Vec<Job>, samples: usize) {
        let mut features = Vec::with_capacity(jobs.iter().map(|j| j.features.len()).sum());
        for j in &jobs {
            features.extend_from_slice(&j.features);
        }
        let backend = Arc::clone(&self.backend);
        let started = Instant::now();
        let forward = move || backend.predict(&features, samples);
        let result = match pool {
            Some(pool) => {
                let (tx, rx) = oneshot::channel();
                pool.spawn(move || {
                    // A panic must not reach rayon's handler (which aborts the process).
                    let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                        forward,
                    )));
                });
                match rx.await {
                    Ok(Ok(r)) => r,
                    Ok(Err(panic)) => Err(InferError::internal(
                        "inference task",
                        format!("the forward pass panicked: {}", panic_message(&*panic)),
                    )),
                    Err(_) => Err(InferError::internal(
                        "inference task",
                        "the compute pool dropped the forward pass",
                    )),
                }
            }
            None => tokio::task::spawn_blocking(forward)
                .await
                .unwrap_or_else(|e| Err(InferError::internal("inference task", e))),
        }
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

/// The message of a panic payload (`panic!` with a literal or a formatted string).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ModelInfo;

    /// Records how many threads each forward pass could use; panics on a NaN feature.
    struct Probe {
        info: ModelInfo,
        threads: std::sync::Mutex<Vec<usize>>,
    }

    impl Probe {
        fn new() -> Arc<Self> {
            Arc::new(Probe {
                info: ModelInfo {
                    name: "probe".into(),
                    sample_shape: vec![1],
                    class_names: Vec::new(),
                    input_schema: serde_json::Value::Null,
                    task: "regression".into(),
                    metrics: serde_json::Value::Null,
                    version: "1".into(),
                    precision: "f32".into(),
                },
                threads: Default::default(),
            })
        }
    }

    impl Backend for Probe {
        fn info(&self) -> &ModelInfo {
            &self.info
        }
        fn image_features(&self, _img: &image::DynamicImage) -> Result<Vec<f32>, InferError> {
            unreachable!()
        }
        fn raw_features(&self, raw: &[f32]) -> Result<Vec<f32>, InferError> {
            Ok(raw.to_vec())
        }
        fn row_features(&self, _row: &[(String, String)]) -> Result<Vec<f32>, InferError> {
            unreachable!()
        }
        fn predict(&self, features: &[f32], _n: usize) -> Result<Vec<Output>, InferError> {
            assert!(!features[0].is_nan(), "a NaN feature");
            self.threads
                .lock()
                .unwrap()
                .push(rayon::current_num_threads());
            Ok(features.iter().map(|&x| Output::Value(2.0 * x)).collect())
        }
    }

    fn config() -> BatchConfig {
        BatchConfig {
            max_wait_us: 0,
            ..BatchConfig::default()
        }
    }

    /// Issue 19: every forward pass ran on rayon's global pool (one thread per core), whatever
    /// `compute-threads` said, so concurrent workers fought over the same threads.
    #[tokio::test]
    async fn forward_passes_use_compute_threads_threads() {
        for threads in [1, 3] {
            let probe = Probe::new();
            let b = Batcher::start(
                "probe",
                probe.clone(),
                config(),
                threads,
                Default::default(),
            );
            let out = b.submit(vec![1.0, 2.0], 2).await.unwrap();
            assert!(matches!(out[..], [Output::Value(2.0), Output::Value(4.0)]));
            assert_eq!(*probe.threads.lock().unwrap(), [threads]);
            b.stop();
        }
    }

    #[tokio::test]
    async fn a_panicking_forward_pass_is_an_internal_error_and_the_worker_goes_on() {
        let b = Batcher::start("probe", Probe::new(), config(), 1, Default::default());
        let e = b.submit(vec![f32::NAN], 1).await.unwrap_err();
        match e {
            ApiError::Internal(detail) => assert!(
                detail.contains("the forward pass panicked: a NaN feature"),
                "{detail}"
            ),
            other => panic!("{other:?}"),
        }
        let out = b.submit(vec![1.5], 1).await.unwrap();
        assert!(matches!(out[..], [Output::Value(3.0)]));
    }
}
