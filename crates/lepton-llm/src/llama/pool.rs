//! A fixed team of worker threads for the decoder's data-parallel loops (ggml-style).
//!
//! A decode step runs ~150 small parallel loops (four matmuls and attention per layer) of a few tens
//! of microseconds each. With rayon, waking sleeping workers and splitting into tasks took ~20 % of
//! decode time (profile: `sched_yield`, futex wake-ups). Here `nt` threads (the caller plus `nt - 1`
//! workers, `nt` = rayon's thread count, so `RAYON_NUM_THREADS` applies) each run the loop body once
//! with their index, on a fixed split of the work chosen by the caller; idle workers spin for a
//! short while (the next loop usually comes within microseconds) before they park.
//!
//! Only one loop runs at a time: a caller that finds the team busy (another thread's forward pass,
//! or a nested call) runs every part itself, in order. Callers split work so that each output
//! element is computed by the same operations whichever part computes it, so results never depend
//! on the split or on who ran it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
const SPIN: Duration = Duration::from_millis(2);

type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// The current loop body, valid while `pending > 0` for this generation.
    job: Mutex<Option<JobPtr>>,
    generation: AtomicUsize,
    pending: AtomicUsize,
    sleepers: AtomicUsize,
    park: Mutex<()>,
    wake: Condvar,
}

#[derive(Clone, Copy)]
struct JobPtr(Job);
// SAFETY: the pointee is `Sync` and outlives every use (`run` waits for all parts).
unsafe impl Send for JobPtr {}

/// The team (see the module docs).
pub struct Pool {
    threads: usize,
    shared: Arc<Shared>,
    busy: Mutex<()>,
}

static POOL: OnceLock<Pool> = OnceLock::new();

impl Pool {
    /// The process-wide team, started on first use with rayon's thread count.
    pub fn global() -> &'static Pool {
        POOL.get_or_init(|| Pool::new(rayon::current_num_threads().max(1)))
    }

    fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            generation: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            park: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut started = 1;
        for index in 1..threads {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("lepton-llm-{index}"))
                .spawn(move || worker(&shared, index));
            if spawned.is_err() {
                break;
            }
            started += 1;
        }
        Self {
            threads: started,
            shared,
            busy: Mutex::new(()),
        }
    }

    /// Number of parts a loop is split into.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f(0)`, ..., `f(threads - 1)`, in parallel when the team is free, and return when all
    /// are done.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        let n = self.threads;
        let guard = if n > 1 {
            self.busy.try_lock().ok()
        } else {
            None
        };
        let Some(_guard) = guard else {
            for i in 0..n {
                f(i);
            }
            return;
        };
        let s = &self.shared;
        // SAFETY (lifetime): the pointer is cleared and every worker has finished with it before
        // this function returns (we wait for `pending` to reach 0 below).
        let ptr: Job = unsafe { std::mem::transmute::<_, Job>(f as *const (dyn Fn(usize) + Sync)) };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(JobPtr(ptr));
        s.pending.store(n - 1, Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.park.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        f(0);
        while s.pending.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn worker(s: &Shared, index: usize) {
    let mut seen = 0usize;
    loop {
        // Spin, then park until the next generation.
        let start = Instant::now();
        let mut spins = 0u32;
        while s.generation.load(Ordering::Acquire) == seen {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % 1024 == 0 && start.elapsed() > SPIN {
                let mut g = s.park.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                while s.generation.load(Ordering::SeqCst) == seen {
                    g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
                break;
            }
        }
        seen = s.generation.load(Ordering::Acquire);
        let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(JobPtr(f)) = job {
            // SAFETY: `run` keeps the closure alive until `pending` reaches 0.
            let f = unsafe { &*f };
            f(index);
            s.pending.fetch_sub(1, Ordering::Release);
        }
    }
}

/// The `part`-th of `parts` contiguous ranges of `0..n`, each a multiple of `align` long except
/// possibly the last.
pub fn split(n: usize, parts: usize, part: usize, align: usize) -> std::ops::Range<usize> {
    let per = n.div_ceil(parts).div_ceil(align) * align;
    let start = (part * per).min(n);
    start..((part + 1) * per).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once_and_nested_calls_run_inline() {
        let pool = Pool::new(3);
        let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        for _ in 0..100 {
            pool.run(&|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
                // The team is busy: this runs all three parts on this thread.
                pool.run(&|j| {
                    hits[j].fetch_add(1, Ordering::Relaxed);
                });
            });
        }
        for h in &hits {
            assert_eq!(h.load(Ordering::Relaxed), 100 + 300);
        }
        // After a pause long enough for the workers to park, they wake again.
        std::thread::sleep(SPIN * 3);
        let total = AtomicUsize::new(0);
        pool.run(&|i| {
            total.fetch_add(i + 1, Ordering::Relaxed);
        });
        assert_eq!(total.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn split_covers_the_range() {
        for (n, parts, align) in [(10, 3, 4), (7, 2, 1), (0, 2, 4), (3, 4, 4)] {
            let all: Vec<usize> = (0..parts).flat_map(|p| split(n, parts, p, align)).collect();
            assert_eq!(all, (0..n).collect::<Vec<_>>());
        }
    }
}
