//! Gradient reduction overlapped with the backward pass.
//!
//! The trainer runs the backward pass in segments of layers, last segment first
//! (`lepton_train::segments`). As soon as a segment's gradients are complete,
//! `OverlapStep::start_segment` packs them (reverse parameter order, scaled by the rank's
//! share `n_r / N`) into buckets of about `bucket_bytes` and starts each bucket's non-blocking
//! all-reduce ([`Communicator::start_all_reduce_f32`]: `MPI_Iallreduce`). While the next segment's
//! backward runs on the compute pool, the training thread calls
//! `OverlapStep::progress` (`MPI_Test` on each bucket in flight: Open MPI progresses
//! a non-blocking collective only inside MPI calls, and MPI is funneled through this thread).
//! `OverlapStep::finish` waits for the rest and writes the sums back as gradients.
//!
//! The sums are the same as without overlap: each bucket holds whole gradients, scaled the same
//! way, and an element-wise sum over ranks does not depend on how gradients are grouped.

use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::comm::{Communicator, InFlight};
use crate::error::Result;
use crate::pack::{pack_scaled, plan_buckets, unpack};
use crate::timing::StepTiming;

/// One bucket in flight.
struct Bucket {
    vars: Vec<Var>,
    request: Option<Box<dyn InFlight>>,
    /// Milliseconds from the step's start at which its reduction was seen complete.
    reduced: Option<f64>,
}

/// The overlapped step in progress: the segments handed over so far and their buckets.
pub(crate) struct OverlapStep {
    /// The first segment's backward start: time zero of the step's timings.
    t0: Instant,
    backward_ms: Vec<[f64; 2]>,
    fill_ms: Vec<[f64; 2]>,
    bucket_segment: Vec<usize>,
    buckets: Vec<Bucket>,
    /// Time spent packing and starting reductions.
    exposed_ms: f64,
}

impl OverlapStep {
    /// A step whose first segment's backward started at `t0`.
    pub(crate) fn new(t0: Instant) -> Self {
        OverlapStep {
            t0,
            backward_ms: Vec::new(),
            fill_ms: Vec::new(),
            bucket_segment: Vec::new(),
            buckets: Vec::new(),
            exposed_ms: 0.0,
        }
    }

    fn ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.t0).as_secs_f64() * 1e3
    }

    /// Pack the complete gradients of one segment's `params` into buckets of about
    /// `bucket_bytes` and start their reductions on `comm`.
    pub(crate) fn start_segment(
        &mut self,
        comm: &mut impl Communicator,
        bucket_bytes: usize,
        params: &[(String, Var)],
        grads: &GradStore,
        weight: f64,
        backward: [Instant; 2],
    ) -> Result<()> {
        let step = self;
        let segment = step.backward_ms.len();
        step.backward_ms
            .push([step.ms(backward[0]), step.ms(backward[1])]);
        let with_grad: Vec<(&Var, &Tensor)> = params
            .iter()
            .rev()
            .filter_map(|(_, v)| grads.get(v.as_tensor()).map(|g| (v, g)))
            .collect();
        let plan = plan_buckets(with_grad.iter().map(|(v, _)| v.elem_count()), bucket_bytes);
        let weight = weight as f32;
        for b in plan {
            let start = Instant::now();
            let n = b.iter().map(|&k| with_grad[k].0.elem_count()).sum();
            let mut buf = vec![0f32; n];
            let mut off = 0;
            for &k in &b {
                let g = with_grad[k].1;
                let len = g.elem_count();
                pack_scaled(g, weight, &mut buf[off..off + len])?;
                off += len;
            }
            let request = comm.start_all_reduce_f32(buf)?;
            let end = Instant::now();
            step.fill_ms.push([step.ms(start), step.ms(end)]);
            step.exposed_ms += end.duration_since(start).as_secs_f64() * 1e3;
            step.bucket_segment.push(segment);
            step.buckets.push(Bucket {
                vars: b.iter().map(|&k| with_grad[k].0.clone()).collect(),
                request: Some(request),
                reduced: None,
            });
        }
        Ok(())
    }

    /// Let the reductions in flight progress; whether any is still in flight.
    pub(crate) fn progress(&mut self) -> Result<bool> {
        let step = self;
        let mut pending = false;
        for i in 0..step.buckets.len() {
            if step.buckets[i].reduced.is_some() {
                continue;
            }
            let request = step.buckets[i]
                .request
                .as_mut()
                .expect("a bucket not seen reduced is in flight");
            if request.test()? {
                let now = step.ms(Instant::now());
                step.buckets[i].reduced = Some(now);
            } else {
                pending = true;
            }
        }
        Ok(pending)
    }

    /// Wait for every bucket of the step, write the sums back into `grads`; the step's timing
    /// (its `step` and `step_ms` are the recorder's to fill).
    pub(crate) fn finish(self, grads: &mut GradStore) -> Result<StepTiming> {
        let mut step = self;
        let waiting = Instant::now();
        let mut sums = Vec::with_capacity(step.buckets.len());
        for i in 0..step.buckets.len() {
            let request = step.buckets[i]
                .request
                .take()
                .expect("every bucket is waited for once");
            sums.push(request.wait()?);
            if step.buckets[i].reduced.is_none() {
                step.buckets[i].reduced = Some(step.ms(Instant::now()));
            }
        }
        let reduced = Instant::now();
        let mut reduce_ms = Vec::with_capacity(sums.len());
        let mut elements = 0;
        for ((b, sum), fill) in step.buckets.iter().zip(sums).zip(&step.fill_ms) {
            elements += sum.len();
            reduce_ms.push([fill[1], b.reduced.expect("set above")]);
            let vars: Vec<&Var> = b.vars.iter().collect();
            unpack(&vars, sum, grads)?;
        }
        let done = Instant::now();
        let timing = StepTiming {
            step: 0,
            buckets: step.buckets.len(),
            elements,
            reduced_ms: step.ms(reduced),
            done_ms: step.ms(done),
            exposed_ms: step.exposed_ms + done.duration_since(waiting).as_secs_f64() * 1e3,
            step_ms: 0.0,
            fill_ms: std::mem::take(&mut step.fill_ms),
            reduce_ms,
            backward_ms: std::mem::take(&mut step.backward_ms),
            bucket_segment: std::mem::take(&mut step.bucket_segment),
        };
        Ok(timing)
    }
}
