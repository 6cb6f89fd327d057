//! Process settings for CPU compute (training, cross-validation, embedding, evaluation, compression,
//! explanations), applied before the first tensor operation.
//!
//! Both were measured on a 2-core machine (bench/RESULTS.md, issue 3):
//! - candle 0.11 runs elementwise ops on its own spinning, core-pinned thread pool, which fights
//!   rayon (our kernels) for the cores: one candle thread took `examples/mnist-cnn.toml` from 299
//!   to 429 samples/s. A `CANDLE_NUM_THREADS` set by the user is kept.
//! - glibc returns every large freed tensor to the kernel, so each step page-faults its
//!   activations back in (22 % of a LeNet step): keeping freed blocks up to 4 GiB in the heap took
//!   the same spec from 429 to 651 samples/s, and integrated gradients (50 steps, mnist-cnn) from
//!   11.4 to 9.4 ms per image (bench/RESULTS.md, issue 17).

/// Applies the settings. Call at the start of a compute command, before any thread or tensor
/// exists.
pub fn for_compute() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; it is called before other threads run.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
