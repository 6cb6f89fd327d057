//! Process settings for CPU compute (training, cross-validation, embedding, evaluation, compression,
//! explanations), applied before the first tensor operation.
//!
//! All three were measured on a 2-core machine (bench/RESULTS.md, issue 3):
//! - candle 0.11 runs elementwise ops on its own spinning, core-pinned thread pool, which fights
//!   rayon (our kernels) for the cores: one candle thread took `examples/mnist-cnn.toml` from 299
//!   to 429 samples/s. A `CANDLE_NUM_THREADS` set by the user is kept.
//! - glibc returns every large freed tensor to the kernel, so each step page-faults its
//!   activations back in (22 % of a LeNet step): keeping freed blocks up to 4 GiB in the heap took
//!   the same spec from 429 to 651 samples/s, and integrated gradients (50 steps, mnist-cnn) from
//!   11.4 to 9.4 ms per image (bench/RESULTS.md, issue 17).
//! - A 64 MiB top pad. The training step runs on a rayon worker, whose glibc arena is a chain of
//!   64 MiB mmap'd heaps; a heap that empties is unmapped whatever the trim threshold, unless
//!   the top pad is at least a heap, so every step faulted its activations back in
//!   (`lepton train examples/mnist-cnn.toml`, 30 s of training: 0.66 M page faults and 1.85 s of
//!   system time; with the pad 0.17 M and 0.48 s; bench/speed/TRAIN_PROFILE.md). The pad is read
//!   at every `free`, so it also holds for the threads started before this call (the rayon pool
//!   of `--threads`); it reserves address space, not memory.

/// Applies the settings. Call at the start of a compute command, before any thread or tensor
/// exists.
pub fn for_compute() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds, under the allocator's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Minor page faults of the calling thread so far.
    fn thread_faults() -> i64 {
        // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
        unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
            usage.ru_minflt
        }
    }

    /// Issue 19: a thread other than the main one (a rayon worker runs the training step)
    /// allocates, touches and frees 160 MiB per round, like a step's activations. Its arena's
    /// emptied 64 MiB heaps were unmapped after every round, so each round faulted about 24 k
    /// pages in again; with the settings the memory stays mapped and later rounds fault almost
    /// nothing.
    #[test]
    fn a_worker_thread_reuses_freed_activation_memory_without_page_faults() {
        super::for_compute();
        let faults = std::thread::spawn(|| {
            let round = || {
                let blocks: Vec<Vec<u8>> = (0..160).map(|i| vec![i as u8; 1 << 20]).collect();
                assert_eq!(blocks[159][12345], 159);
            };
            round();
            let before = thread_faults();
            for _ in 0..3 {
                round();
            }
            thread_faults() - before
        })
        .join()
        .unwrap();
        assert!(
            faults < 3_000,
            "{faults} page faults in 3 rounds of 160 MiB"
        );
    }
}
