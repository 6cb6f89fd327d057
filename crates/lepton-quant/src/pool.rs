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
//!
//! # Sharing rayon's threads
//! A caller whose other parallel work runs on rayon (training: f32 GEMMs, element-wise ops,
//! the loss) calls [`share_rayon_threads`]: from then on every loop's parts run as rayon tasks
//! (`rayon::scope`) and the team's workers stay parked. Otherwise the team's workers spin for up
//! to `SPIN` (2 ms) after each loop while rayon's threads want the same cores (profile of a LoRA
//! training step on 2 cores: 24 % of the samples in the team's spin and wait).
//!
//! # Panics
//! A part that panics (on the caller's thread or a worker's) is caught; [`Pool::run`] still waits
//! until every other part has finished with the closure (it borrows the caller's stack, so no part
//! may outlive `run`), then resumes the first panic on the caller's thread. Workers survive a
//! panic and the team stays usable.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long an idle worker waits for the next loop before it parks.
const SPIN: Duration = Duration::from_millis(2);
/// How long a waiting thread (an idle worker, or the caller waiting for the other parts) spins on
/// the CPU before it yields it at every check. On a machine with more runnable threads than
/// cores a part's thread is often preempted: a caller that only spun kept its core for the whole
/// time slice while the part it waited for could not run (profile of a Gemma 3 prefill at load
/// average 8 on 2 cores: 35 % of the samples in the pool's spin loops). On an idle machine a
/// yield returns at once, so the wait is a spin as before. (Yielding in the caller only, not in
/// the workers, measured worse at load average 6: bench/RESULTS.md, issue 14, session 12.)
const SPIN_HOT: Duration = Duration::from_micros(50);

type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// The current loop body, valid while `pending > 0` for this generation.
    job: Mutex<Option<JobPtr>>,
    generation: AtomicUsize,
    pending: AtomicUsize,
    sleepers: AtomicUsize,
    park: Mutex<()>,
    wake: Condvar,
    /// The first panic payload of a worker's part in the current loop.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
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
    /// Parts run as rayon tasks (see [`Pool::share_rayon_threads`]).
    on_rayon: AtomicBool,
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// [`Pool::share_rayon_threads`] of the process-wide team ([`Pool::global`]).
pub fn share_rayon_threads(on: bool) {
    Pool::global().share_rayon_threads(on);
}

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
            panic: Mutex::new(None),
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
            on_rayon: AtomicBool::new(false),
        }
    }

    /// Run the parts of every later [`Pool::run`] as rayon tasks (`on = true`) or on the team's
    /// own workers (`false`, the default; see the module docs). Results do not change: callers'
    /// splits give every output element the same operations whichever thread runs it.
    pub fn share_rayon_threads(&self, on: bool) {
        self.on_rayon.store(on, Ordering::SeqCst);
    }

    /// Number of parts a loop is split into.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f(0)`, ..., `f(threads - 1)`, in parallel when the team is free, and return when all
    /// are done. If a part panics, the panic is resumed here once no part runs any more.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        let n = self.threads;
        if n > 1 && self.on_rayon.load(Ordering::Relaxed) {
            // Parts 1.. are queued, part 0 runs here (or on the rayon worker that runs the scope);
            // `scope` returns when all have finished and resumes the first panic.
            rayon::scope(|s| {
                for i in 1..n {
                    s.spawn(move |_| f(i));
                }
                f(0);
            });
            return;
        }
        let guard = if n > 1 {
            match self.busy.try_lock() {
                Ok(g) => Some(g),
                // Poisoned only if a panic crossed `run` while it held the lock; the team itself
                // is consistent (every part had finished), so it is usable again.
                Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            }
        } else {
            None
        };
        let Some(guard) = guard else {
            for i in 0..n {
                f(i);
            }
            return;
        };
        let s = &self.shared;
        // SAFETY: only the lifetime is erased (same fat-pointer layout). The pointer is cleared
        // and every worker has finished with it before this function returns or unwinds: the
        // caller's own part runs under `catch_unwind`, and we always wait for `pending` to reach 0.
        let ptr: Job = unsafe { std::mem::transmute::<_, Job>(f as *const (dyn Fn(usize) + Sync)) };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(JobPtr(ptr));
        s.pending.store(n - 1, Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.park.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let own = catch_unwind(AssertUnwindSafe(|| f(0)));
        let mut wait = Wait::new();
        while s.pending.load(Ordering::Acquire) != 0 {
            wait.pause();
        }
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let worker_panic = s.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(guard);
        if let Err(payload) = own {
            resume_unwind(payload);
        }
        if let Some(payload) = worker_panic {
            resume_unwind(payload);
        }
    }
}

fn worker(s: &Shared, index: usize) {
    let mut seen = 0usize;
    loop {
        // Spin (yielding after `SPIN_HOT`), then park until the next generation.
        let mut wait = Wait::new();
        while s.generation.load(Ordering::Acquire) == seen {
            wait.pause();
            if wait.spins % 64 == 0 && wait.start.elapsed() > SPIN {
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
            // SAFETY: `run` keeps the closure alive until `pending` reaches 0, which happens
            // only below, after the call (also when it panics: the panic is caught).
            let f = unsafe { &*f };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(index))) {
                let mut first = s.panic.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(payload);
            }
            s.pending.fetch_sub(1, Ordering::Release);
        }
    }
}

/// A spin-wait that yields the CPU at every check once it has spun for [`SPIN_HOT`].
struct Wait {
    start: Instant,
    spins: u32,
    hot: bool,
}

impl Wait {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            spins: 0,
            hot: true,
        }
    }

    fn pause(&mut self) {
        self.spins = self.spins.wrapping_add(1);
        if self.hot {
            std::hint::spin_loop();
            if self.spins % 64 == 0 && self.start.elapsed() > SPIN_HOT {
                self.hot = false;
            }
        } else {
            std::thread::yield_now();
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

    /// Regression (issue 12, finding 9): a panicking part used to leave the caller spinning
    /// forever (worker panic) or let workers run a dead closure (caller panic).
    #[test]
    fn panicking_parts_are_reported_and_nothing_hangs() {
        let pool = Pool::new(3);
        for bad in 0..3 {
            let done: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
            let result = catch_unwind(AssertUnwindSafe(|| {
                pool.run(&|i| {
                    if i == bad {
                        panic!("part {i} failed");
                    }
                    // Slower than the panicking part: `run` must still wait for this.
                    std::thread::sleep(Duration::from_millis(5));
                    done[i].fetch_add(1, Ordering::SeqCst);
                })
            }));
            let payload = result.expect_err("the panic reaches the caller");
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default();
            assert_eq!(message, format!("part {bad} failed"));
            for (i, d) in done.iter().enumerate() {
                let want = usize::from(i != bad);
                assert_eq!(d.load(Ordering::SeqCst), want, "part {i} (bad {bad})");
            }
            // The team is still there and parallel (not stuck in inline mode).
            let threads: Mutex<Vec<std::thread::ThreadId>> = Mutex::new(Vec::new());
            pool.run(&|_| {
                threads.lock().unwrap().push(std::thread::current().id());
            });
            let mut ids = threads.into_inner().unwrap();
            ids.sort_unstable_by_key(|t| format!("{t:?}"));
            ids.dedup();
            assert_eq!(
                ids.len(),
                3,
                "all three threads ran a part after panic {bad}"
            );
        }
    }

    #[test]
    fn parts_run_once_each_on_rayon_threads_and_panics_reach_the_caller() {
        // Every part once per loop, also nested, and on rayon's threads (the team's workers
        // are not used).
        let pool = Pool::new(3);
        pool.share_rayon_threads(true);
        let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        let off_rayon = AtomicUsize::new(0);
        for _ in 0..50 {
            pool.run(&|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
                if rayon::current_thread_index().is_none() {
                    off_rayon.fetch_add(1, Ordering::Relaxed);
                }
                pool.run(&|j| {
                    hits[j].fetch_add(1, Ordering::Relaxed);
                });
            });
        }
        let result = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|i| {
                if i == 2 {
                    panic!("part 2 failed");
                }
            })
        }));
        for h in &hits {
            assert_eq!(h.load(Ordering::Relaxed), 50 + 150);
        }
        assert_eq!(off_rayon.load(Ordering::Relaxed), 0, "a part ran off rayon");
        let payload = result.expect_err("the panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"part 2 failed"));
    }

    #[test]
    fn split_covers_the_range() {
        for (n, parts, align) in [(10, 3, 4), (7, 2, 1), (0, 2, 4), (3, 4, 4)] {
            let all: Vec<usize> = (0..parts).flat_map(|p| split(n, parts, p, align)).collect();
            assert_eq!(all, (0..n).collect::<Vec<_>>());
        }
    }
}
