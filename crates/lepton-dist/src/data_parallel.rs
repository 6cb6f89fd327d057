//! [`DataParallel`]: the trainer's [`Distributed`] seam over a [`Communicator`].
//!
//! Gradient sync, per step: the gradients (in reverse parameter order, the order a backward pass
//! produces them, as PyTorch DDP) are packed into buckets of about `bucket_bytes` (default
//! 25 MiB), each gradient scaled by this rank's share of the global batch `n_r / N`; the buckets
//! are summed over the ranks and unpacked into the gradient store. The sum of `g_r n_r / N` is the
//! gradient of the mean loss over the global batch.
//!
//! Packing ([`crate::pack`]) reads each gradient from its storage in parallel, scaled, in one
//! pass; a bucket holding one gradient becomes the reduced tensor without a copy.
//!
//! Overlap: candle's `backward()` returns the complete gradient store at once (there is no
//! per-tensor hook). Without overlap (the default) the reduction of bucket `i` (non-blocking on
//! MPI) overlaps the packing of bucket `i + 1`, after the backward pass. With
//! [`DataParallel::with_overlap`] the trainer runs the backward pass in segments of layers and
//! each segment's buckets start reducing while the earlier segments are differentiated
//! ([`crate::overlap`]). The per-step [`StepTiming`] records the spans so a timeline shows it.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use lepton_train::Distributed;

use crate::comm::Communicator;
use crate::error::{Error, Result};
use crate::overlap::OverlapStep;
use crate::pack::{pack_scaled, plan_buckets, unpack};
use crate::timing::StepTiming;

/// Default bucket size: 25 MiB, PyTorch DDP's `bucket_cap_mb`.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Data parallelism over a communicator.
pub struct DataParallel<C> {
    pub(crate) comm: C,
    pub(crate) bucket_bytes: usize,
    step: u64,
    timings: Vec<StepTiming>,
    timeline: Option<(std::path::PathBuf, std::io::BufWriter<fs_err::File>)>,
    /// Segments of the backward pass when overlapped (1: not overlapped).
    pub(crate) segments: usize,
    /// The overlapped step in progress.
    pub(crate) overlap: Option<OverlapStep>,
    /// When the previous sync ended.
    last_done: Option<Instant>,
}

impl<C: Communicator> DataParallel<C> {
    /// Buckets of [`DEFAULT_BUCKET_BYTES`], no timeline file.
    pub fn new(comm: C) -> Self {
        Self {
            comm,
            bucket_bytes: DEFAULT_BUCKET_BYTES,
            step: 0,
            timings: Vec::new(),
            timeline: None,
            segments: 1,
            overlap: None,
            last_done: None,
        }
    }

    /// Overlap the reductions with the backward pass: the trainer runs it in up to `segments`
    /// segments of the model's layers (about equal parameter bytes, see
    /// `lepton_train::segments`) and each segment's buckets start reducing as soon as its
    /// gradients exist, while the segments before it are differentiated. 0 or 1: off (the
    /// default; one backward pass, then the bucketed reduction).
    pub fn with_overlap(mut self, segments: usize) -> Self {
        self.segments = segments.max(1);
        self
    }

    /// Bucket size in bytes (default 25 MiB; at least one gradient per bucket).
    pub fn with_bucket_bytes(mut self, bytes: usize) -> Self {
        self.bucket_bytes = bytes.max(4);
        self
    }

    /// Append one JSON line per step ([`StepTiming`]) to `path`.
    pub fn with_timeline(mut self, path: &Path) -> Result<Self> {
        let file = fs_err::File::create(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        self.timeline = Some((path.into(), std::io::BufWriter::new(file)));
        Ok(self)
    }

    /// The timings of every sync so far.
    pub fn timings(&self) -> &[StepTiming] {
        &self.timings
    }

    /// The communicator.
    pub fn comm(&self) -> &C {
        &self.comm
    }

    fn sync(&mut self, params: &[(String, Var)], grads: &mut GradStore, weight: f64) -> Result<()> {
        let t0 = Instant::now();
        let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1e3;
        // Reverse parameter order: the last layers' gradients come first out of a backward pass.
        let with_grad: Vec<(&Var, Tensor)> = params
            .iter()
            .rev()
            .filter_map(|(_, v)| grads.get(v.as_tensor()).map(|g| (v, g.clone())))
            .collect();
        let plan = plan_buckets(
            with_grad.iter().map(|(v, _)| v.elem_count()),
            self.bucket_bytes,
        );
        let mut buckets: Vec<Vec<f32>> = plan
            .iter()
            .map(|b| vec![0f32; b.iter().map(|&i| with_grad[i].0.elem_count()).sum()])
            .collect();
        let mut fill_ms = Vec::with_capacity(plan.len());
        let weight = weight as f32;
        let mut fill = |i: usize, buf: &mut [f32]| -> Result<()> {
            let start = Instant::now();
            let mut off = 0;
            for &k in &plan[i] {
                let g = &with_grad[k].1;
                let n = g.elem_count();
                pack_scaled(g, weight, &mut buf[off..off + n])?;
                off += n;
            }
            fill_ms.push([ms(start), ms(Instant::now())]);
            Ok(())
        };
        let mut reduce_end = vec![0.0; plan.len()];
        self.comm
            .all_reduce_buckets(&mut buckets, &mut fill, &mut |i| {
                reduce_end[i] = ms(Instant::now())
            })?;
        let reduce_ms = fill_ms
            .iter()
            .zip(reduce_end)
            .map(|(f, e)| [f[1], e])
            .collect();
        let elements = buckets.iter().map(Vec::len).sum();
        let reduced = Instant::now();
        for (b, bucket) in plan.iter().zip(buckets) {
            let vars: Vec<&Var> = b.iter().map(|&k| with_grad[k].0).collect();
            unpack(&vars, bucket, grads)?;
        }
        let done = ms(Instant::now());
        let timing = StepTiming {
            step: 0,
            buckets: plan.len(),
            elements,
            fill_ms,
            reduce_ms,
            reduced_ms: ms(reduced),
            done_ms: done,
            exposed_ms: done,
            step_ms: 0.0,
            backward_ms: Vec::new(),
            bucket_segment: Vec::new(),
        };
        self.record(timing)
    }

    /// Pack the complete gradients of one segment's `params` and start their reductions.
    fn start_segment(
        &mut self,
        params: &[(String, Var)],
        grads: &GradStore,
        weight: f64,
        backward: [Instant; 2],
    ) -> Result<()> {
        let step = self
            .overlap
            .get_or_insert_with(|| OverlapStep::new(backward[0]));
        step.start_segment(
            &mut self.comm,
            self.bucket_bytes,
            params,
            grads,
            weight,
            backward,
        )
    }

    /// Let the reductions in flight progress; whether any is still in flight.
    fn progress_segments(&mut self) -> Result<bool> {
        self.overlap
            .as_mut()
            .map_or(Ok(false), OverlapStep::progress)
    }

    /// Wait for every bucket of the overlapped step, write the sums back, record the timing.
    fn finish_segments(&mut self, grads: &mut GradStore) -> Result<()> {
        match self.overlap.take() {
            Some(step) => {
                let timing = step.finish(grads)?;
                self.record(timing)
            }
            None => Ok(()),
        }
    }

    /// Number the step, write its timeline line, keep it.
    pub(crate) fn record(&mut self, mut timing: StepTiming) -> Result<()> {
        let now = Instant::now();
        timing.step = self.step;
        timing.step_ms = self
            .last_done
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64() * 1e3);
        self.last_done = Some(now);
        self.step += 1;
        if let Some((path, w)) = &mut self.timeline {
            let line = serde_json::to_string(&timing).expect("timings serialise");
            writeln!(w, "{line}")
                .and_then(|()| w.flush())
                .map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
        }
        self.timings.push(timing);
        Ok(())
    }
}

impl<C: Communicator> Distributed for DataParallel<C> {
    fn rank(&self) -> usize {
        self.comm.rank()
    }
    fn world(&self) -> usize {
        self.comm.world()
    }
    fn sync_gradients(
        &mut self,
        params: &[(String, Var)],
        grads: &mut GradStore,
        weight: f64,
    ) -> lepton_train::Result<()> {
        self.sync(params, grads, weight)
            .map_err(|e| e.into_train("gradient all-reduce"))
    }
    fn overlap_segments(&self) -> usize {
        self.segments
    }
    fn start_gradients(
        &mut self,
        params: &[(String, Var)],
        grads: &GradStore,
        weight: f64,
        backward: [Instant; 2],
    ) -> lepton_train::Result<()> {
        self.start_segment(params, grads, weight, backward)
            .map_err(|e| e.into_train("gradient all-reduce (overlapped)"))
    }
    fn progress(&mut self) -> lepton_train::Result<bool> {
        self.progress_segments()
            .map_err(|e| e.into_train("gradient all-reduce (overlapped)"))
    }
    fn finish_gradients(&mut self, grads: &mut GradStore) -> lepton_train::Result<()> {
        self.finish_segments(grads)
            .map_err(|e| e.into_train("gradient all-reduce (overlapped)"))
    }
    fn all_reduce_sum(&mut self, values: &mut [f64]) -> lepton_train::Result<()> {
        self.comm
            .all_reduce_f64(values)
            .map_err(|e| e.into_train("metric all-reduce"))
    }
    fn broadcast(&mut self, values: &mut [f32]) -> lepton_train::Result<()> {
        self.comm
            .broadcast_f32(values)
            .map_err(|e| e.into_train("weight broadcast"))
    }
    fn broadcast_f64(&mut self, values: &mut [f64]) -> lepton_train::Result<()> {
        self.comm
            .broadcast_f64(values)
            .map_err(|e| e.into_train("metric broadcast"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalGroup;
    use candle_core::Device;

    /// Two ranks, each with the gradient of `sum(w * x_r)` = `x_r`: the synced gradient is
    /// `(x_0 + x_1) / 2` on both, whatever the bucket size.
    #[test]
    fn gradients_are_weighted_sums_in_any_bucketing() {
        for bucket_bytes in [4, 12, 1 << 20] {
            let out: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
                let hs: Vec<_> = LocalGroup::ranks(2)
                    .into_iter()
                    .map(|c| {
                        s.spawn(move || {
                            let r = c.rank() as f32;
                            let mut dp = DataParallel::new(c).with_bucket_bytes(bucket_bytes);
                            let dev = Device::Cpu;
                            let a = Var::from_slice(&[1f32, 2., 3.], 3, &dev).unwrap();
                            let b = Var::from_slice(&[4f32, 5.], 2, &dev).unwrap();
                            let xa = Tensor::new(&[r, 2. * r, 1.], &dev).unwrap();
                            let xb = Tensor::new(&[10. * r, 1.], &dev).unwrap();
                            let loss = ((a.as_tensor() * &xa).unwrap().sum_all().unwrap()
                                + (b.as_tensor() * &xb).unwrap().sum_all().unwrap())
                            .unwrap();
                            let mut g = loss.backward().unwrap();
                            let params =
                                vec![("a".to_string(), a.clone()), ("b".into(), b.clone())];
                            dp.sync_gradients(&params, &mut g, 0.5).unwrap();
                            let t = &dp.timings()[0];
                            assert_eq!(t.reduce_ms.len(), t.buckets);
                            for (f, r) in t.fill_ms.iter().zip(&t.reduce_ms) {
                                assert!(f[0] <= f[1] && f[1] == r[0] && r[0] <= r[1]);
                            }
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
                assert_eq!(
                    got,
                    vec![vec![0.5, 1.0, 1.0], vec![5.0, 1.0]],
                    "bucket {bucket_bytes}"
                );
            }
        }
    }

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
