//! Gradient reduction overlapped with the backward pass.
//!
//! The trainer runs the backward pass in segments of layers, last segment first
//! (`lepton_train::segments`). As soon as a segment's gradients are complete,
//! `DataParallel::start_segment` packs them (reverse parameter order, scaled by the rank's
//! share `n_r / N`) into buckets of about `bucket_bytes` and starts each bucket's non-blocking
//! all-reduce ([`Communicator::start_all_reduce_f32`]: `MPI_Iallreduce`). While the next segment's
//! backward runs on the compute pool, the training thread calls
//! `DataParallel::progress_segments` (`MPI_Test` on each bucket in flight: Open MPI progresses
//! a non-blocking collective only inside MPI calls, and MPI is funneled through this thread).
//! `DataParallel::finish_segments` waits for the rest and writes the sums back as gradients.
//!
//! The sums are the same as without overlap: each bucket holds whole gradients, scaled the same
//! way, and an element-wise sum over ranks does not depend on how gradients are grouped.

use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::comm::{Communicator, InFlight};
use crate::data_parallel::{plan_buckets, unpack, DataParallel, StepTiming};
use crate::error::Result;
use crate::pack::pack_scaled;

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
    fn ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.t0).as_secs_f64() * 1e3
    }
}

impl<C: Communicator> DataParallel<C> {
    /// Pack the complete gradients of one segment's `params` and start their reductions.
    pub(crate) fn start_segment(
        &mut self,
        params: &[(String, Var)],
        grads: &GradStore,
        weight: f64,
        backward: [Instant; 2],
    ) -> Result<()> {
        let step = self.overlap.get_or_insert_with(|| OverlapStep {
            t0: backward[0],
            backward_ms: Vec::new(),
            fill_ms: Vec::new(),
            bucket_segment: Vec::new(),
            buckets: Vec::new(),
            exposed_ms: 0.0,
        });
        let segment = step.backward_ms.len();
        step.backward_ms
            .push([step.ms(backward[0]), step.ms(backward[1])]);
        let with_grad: Vec<(&Var, &Tensor)> = params
            .iter()
            .rev()
            .filter_map(|(_, v)| grads.get(v.as_tensor()).map(|g| (v, g)))
            .collect();
        let plan = plan_buckets(
            with_grad.iter().map(|(v, _)| v.elem_count()),
            self.bucket_bytes,
        );
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
            let request = self.comm.start_all_reduce_f32(buf)?;
            let end = Instant::now();
            let step = self.overlap.as_mut().expect("inserted above");
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
    pub(crate) fn progress_segments(&mut self) -> Result<bool> {
        let Some(step) = self.overlap.as_mut() else {
            return Ok(false);
        };
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

    /// Wait for every bucket of the step, write the sums back into `grads`, record the timing.
    pub(crate) fn finish_segments(&mut self, grads: &mut GradStore) -> Result<()> {
        let Some(mut step) = self.overlap.take() else {
            return Ok(());
        };
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
        self.record(timing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalGroup;
    use candle_core::Device;
    use lepton_train::Distributed;

    /// Two segments handed over one after the other on two ranks: the same weighted sums as
    /// the one-shot sync, and a timeline with one backward span per segment and the buckets
    /// started after their segment's backward ended.
    #[test]
    fn segments_reduce_to_the_weighted_sum_with_a_timeline() {
        let out: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
            let hs: Vec<_> = LocalGroup::ranks(2)
                .into_iter()
                .map(|c| {
                    s.spawn(move || {
                        let r = c.rank() as f32;
                        let mut dp = DataParallel::new(c).with_bucket_bytes(8).with_overlap(2);
                        assert_eq!(dp.overlap_segments(), 2);
                        let dev = Device::Cpu;
                        let a = Var::from_slice(&[1f32, 2., 3.], 3, &dev).unwrap();
                        let b = Var::from_slice(&[4f32, 5.], 2, &dev).unwrap();
                        let xa = Tensor::new(&[r, 2. * r, 1.], &dev).unwrap();
                        let xb = Tensor::new(&[10. * r, 1.], &dev).unwrap();
                        let loss = ((a.as_tensor() * &xa).unwrap().sum_all().unwrap()
                            + (b.as_tensor() * &xb).unwrap().sum_all().unwrap())
                        .unwrap();
                        let mut g = loss.backward().unwrap();
                        let t = Instant::now();
                        let pa = vec![("a".to_string(), a.clone())];
                        let pb = vec![("b".to_string(), b.clone())];
                        dp.start_gradients(&pb, &g, 0.5, [t, Instant::now()])
                            .unwrap();
                        while dp.progress().unwrap() {}
                        dp.start_gradients(&pa, &g, 0.5, [Instant::now(), Instant::now()])
                            .unwrap();
                        dp.finish_gradients(&mut g).unwrap();
                        let tm = &dp.timings()[0];
                        assert_eq!(tm.backward_ms.len(), 2);
                        // b: 2 values in one 8-byte bucket; a: 3 values, a bucket of its own.
                        assert_eq!(tm.bucket_segment, vec![0, 1]);
                        assert_eq!(tm.reduce_ms.len(), tm.buckets);
                        for (i, (f, red)) in tm.fill_ms.iter().zip(&tm.reduce_ms).enumerate() {
                            let seg = tm.backward_ms[tm.bucket_segment[i]];
                            assert!(seg[1] <= f[0] && f[0] <= f[1] && f[1] == red[0]);
                            assert!(red[0] <= red[1] && red[1] <= tm.reduced_ms);
                        }
                        assert!(tm.exposed_ms <= tm.done_ms);
                        // A second step starts a new timeline.
                        dp.start_gradients(&pa, &g, 1.0, [Instant::now(), Instant::now()])
                            .unwrap();
                        dp.finish_gradients(&mut g).unwrap();
                        assert_eq!(dp.timings()[1].backward_ms.len(), 1);
                        vec![
                            g.get(a.as_tensor()).unwrap().to_vec1::<f32>().unwrap(),
                            g.get(b.as_tensor()).unwrap().to_vec1::<f32>().unwrap(),
                        ]
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for got in out {
            // a: reduced twice (second step with weight 1: 2 x the first sum).
            assert_eq!(got, vec![vec![1.0, 2.0, 2.0], vec![5.0, 1.0]]);
        }
    }
}
