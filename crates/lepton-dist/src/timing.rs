//! What one gradient sync cost, step by step: the per-step timeline (`--dist-timeline`).

use serde::Serialize;

/// Timings of one gradient sync, in milliseconds from the moment the backward pass returned.
#[derive(Debug, Clone, Serialize)]
pub struct StepTiming {
    pub step: u64,
    pub buckets: usize,
    pub elements: usize,
    /// Per bucket: `[fill start, fill end]`.
    pub fill_ms: Vec<[f64; 2]>,
    /// Per bucket: `[reduction started, reduction complete]` (started = filled: the
    /// non-blocking all-reduce is posted right after).
    pub reduce_ms: Vec<[f64; 2]>,
    /// All buckets reduced.
    pub reduced_ms: f64,
    /// Gradients written back.
    pub done_ms: f64,
    /// Time the training thread spent on the sync outside the backward pass: packing, starting
    /// and waiting for the reductions, writing back (all of `done_ms` without overlap).
    pub exposed_ms: f64,
    /// Since the previous sync ended: the step period (0 for the first step).
    pub step_ms: f64,
    /// Overlapped with the backward pass ([`DataParallel::with_overlap`](crate::DataParallel::with_overlap)): per segment, last
    /// segment first, `[backward start, backward end]`; all times of an overlapped step count
    /// from the first of these starts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backward_ms: Vec<[f64; 2]>,
    /// Overlapped: the segment (index into `backward_ms`) whose gradients each bucket holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bucket_segment: Vec<usize>,
}
