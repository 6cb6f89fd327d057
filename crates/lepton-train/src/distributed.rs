//! Seams for data-parallel training: what the trainer asks of a process group.
//!
//! The trainer stays single-process code; a [`Distributed`] implementation (lepton-dist's MPI
//! communicator, or [`Single`] — the default no-op) is consulted at four points:
//!
//! 1. **start** — every variable is broadcast from rank 0 ([`Distributed::broadcast`]), so all
//!    ranks start from the same weights whatever their initialisation;
//! 2. **data** — every rank draws the same *global* batch `B` (the batcher's permutation is a
//!    function of `(seed, epoch)` only) and keeps its contiguous slice ([`shard_range`]):
//!    rank `r` of `W` trains on samples `[r B/W, (r+1) B/W)` of it. The global sample order is
//!    therefore independent of `W`, and `W` must divide `B` ([`check_world`]);
//! 3. **gradients** — between backward and the optimizer step,
//!    [`Distributed::sync_gradients`] replaces every gradient `g_r` (of the rank's mean loss over
//!    its `n_r` samples) by `Σ_r g_r · n_r / N`, the gradient of the mean loss over the global
//!    batch of `N` samples. SGD over 2 ranks x 32 is then the same computation as 1 rank x 64;
//! 4. **metrics** — the loss and correct-count sums are all-reduced before they are logged, and
//!    the monitored validation value is rank 0's (broadcast), so early stopping agrees on every
//!    rank.
//!
//! Rank 0 alone writes the run directory and its checkpoints; a resume reads rank 0's checkpoint
//! on every rank (a shared file system, or the same host) and refuses another world size.
//! Batch-norm statistics are local to a rank while an epoch runs (as in PyTorch DDP without
//! SyncBatchNorm) and are broadcast from rank 0 before every validation.

use std::ops::Range;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use lepton_data::Batch;

use crate::error::{Error, Result, TensorContext};
use crate::spec::Spec;

/// A process group as the trainer sees it. Every method is collective: all ranks call it, in the
/// same order, or it deadlocks (an MPI implementation turns a dead peer into an error or abort).
pub trait Distributed {
    /// This process's rank in `0..world`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world(&self) -> usize;
    /// Replace each gradient in `grads` of the parameters `params` (same list and order on every
    /// rank) by the sum over ranks of `gradient * weight`, where `weight` is this rank's share of
    /// the global batch (`n_r / N`). Parameters without a gradient are skipped (on every rank).
    fn sync_gradients(
        &mut self,
        params: &[(String, Var)],
        grads: &mut GradStore,
        weight: f64,
    ) -> Result<()>;
    /// Run the backward pass in this many segments of the model's layers (at most), reducing
    /// each segment's gradients while the segments before it are still differentiated
    /// ([`Distributed::start_gradients`], [`Distributed::progress`],
    /// [`Distributed::finish_gradients`] instead of [`Distributed::sync_gradients`]); 1 (the
    /// default): one backward pass, then `sync_gradients`.
    fn overlap_segments(&self) -> usize {
        1
    }
    /// Overlapped sync, once per segment, last segment first: the parameters `params` (one
    /// segment's, the same on every rank) have their complete gradients in `grads`; start
    /// reducing them, scaled by `weight` as in [`Distributed::sync_gradients`], without
    /// waiting where the implementation can. `backward` is when the segment's backward pass
    /// started and ended (for a timeline).
    fn start_gradients(
        &mut self,
        params: &[(String, Var)],
        grads: &GradStore,
        weight: f64,
        backward: [Instant; 2],
    ) -> Result<()> {
        let _ = (params, grads, weight, backward);
        Err(Error::Invalid(
            "this process group does not reduce gradients per segment".into(),
        ))
    }
    /// Let the reductions in flight progress (called on the training thread while a segment's
    /// backward pass runs on the compute pool); returns whether any is still in flight.
    fn progress(&mut self) -> Result<bool> {
        Ok(false)
    }
    /// Wait for every reduction started since the last call and write the reduced gradients
    /// into `grads`.
    fn finish_gradients(&mut self, grads: &mut GradStore) -> Result<()> {
        let _ = grads;
        Ok(())
    }
    /// Sum `values` over ranks, in place.
    fn all_reduce_sum(&mut self, values: &mut [f64]) -> Result<()>;
    /// Overwrite `values` with rank 0's.
    fn broadcast(&mut self, values: &mut [f32]) -> Result<()>;
    /// Overwrite `values` with rank 0's (exact `f64`).
    fn broadcast_f64(&mut self, values: &mut [f64]) -> Result<()>;
}

/// One process: every hook is a no-op.
#[derive(Debug, Default, Clone, Copy)]
pub struct Single;

impl Distributed for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn sync_gradients(&mut self, _: &[(String, Var)], _: &mut GradStore, _: f64) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum(&mut self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast(&mut self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn broadcast_f64(&mut self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
}

/// The slice of a global batch of `len` samples that `rank` of `world` trains on: contiguous,
/// sizes differing by at most one (equal when `world` divides `len`).
pub fn shard_range(len: usize, rank: usize, world: usize) -> Range<usize> {
    let (base, extra) = (len / world, len % world);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// This rank's slice of a global batch (the whole batch on one rank).
pub(crate) fn shard(batch: Batch, rank: usize, world: usize) -> Result<Batch> {
    if world == 1 {
        return Ok(batch);
    }
    let len = batch.indices.len();
    let r = shard_range(len, rank, world);
    let cut = |t: &Tensor| {
        t.narrow(0, r.start, r.len())
            .op("slicing this rank's batch")
    };
    Ok(Batch {
        x: cut(&batch.x)?,
        y: cut(&batch.y)?,
        weights: batch.weights.as_ref().map(cut).transpose()?,
        indices: batch.indices[r].to_vec(),
    })
}

/// Refuse a world size the spec cannot be split over, before any data is loaded: the batch size
/// must be a multiple of the number of ranks, and a data set whose last batch is short must drop
/// it (each rank needs at least one sample of every batch).
pub fn check_world(spec: &Spec, world: usize) -> Result<()> {
    if world == 0 {
        return Err(Error::Invalid(
            "distributed training needs at least one rank".into(),
        ));
    }
    let b = spec.train.batch_size;
    if b % world != 0 {
        return Err(Error::spec(
            "train.batch-size",
            format!(
                "{b} cannot be split over {world} ranks: the global batch must be a multiple of \
                 the rank count (each rank trains on batch-size / ranks samples)"
            ),
        ));
    }
    Ok(())
}

/// Check a short last batch: every rank needs at least one sample of it.
pub(crate) fn check_last_batch(
    samples: usize,
    batch: usize,
    drop_last: bool,
    world: usize,
) -> Result<()> {
    let last = samples % batch;
    if world > 1 && !drop_last && last != 0 && last < world {
        return Err(Error::spec(
            "train.drop-last",
            format!(
                "the last batch of each epoch holds {last} samples ({samples} % {batch}), fewer \
                 than the {world} ranks: set train.drop-last = true or change the batch size"
            ),
        ));
    }
    Ok(())
}

/// Run `f` on rank 0 only and make its outcome collective: every rank gets an error when rank 0
/// failed (so no rank waits for a peer that already gave up), and rank 0 gets its own error.
pub(crate) fn on_rank0<T>(
    dist: &mut dyn Distributed,
    f: impl FnOnce() -> Result<T>,
) -> Result<Option<T>> {
    let out = if dist.rank() == 0 { Some(f()) } else { None };
    agree(dist, out.as_ref().is_some_and(|r| r.is_err()))?;
    out.transpose()
}

/// All-reduce a failure flag: `Err` on every rank when any rank `failed` (the failing rank
/// returns its own error afterwards).
pub(crate) fn agree(dist: &mut dyn Distributed, failed: bool) -> Result<()> {
    if dist.world() == 1 {
        return Ok(());
    }
    let mut flag = [f64::from(u8::from(failed))];
    dist.all_reduce_sum(&mut flag)?;
    if flag[0] > 0.0 && !failed {
        return Err(Error::Invalid(format!(
            "another rank failed ({} of {}): see its error",
            flag[0],
            dist.world()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_contiguous_and_cover_the_batch() {
        for len in 1..40 {
            for world in 1..6 {
                let mut next = 0;
                for r in 0..world {
                    let s = shard_range(len, r, world);
                    assert_eq!(s.start, next, "len {len} world {world} rank {r}");
                    assert!(s.len() == len / world || s.len() == len / world + 1);
                    next = s.end;
                }
                assert_eq!(next, len);
            }
        }
        assert_eq!(shard_range(64, 1, 2), 32..64);
    }

    #[test]
    fn short_last_batch_needs_drop_last() {
        assert!(check_last_batch(101, 32, false, 2).is_ok()); // last batch 5 >= 2
        let err = check_last_batch(97, 32, false, 2).unwrap_err().to_string();
        assert!(
            err.contains("train.drop-last") && err.contains("1 samples"),
            "{err}"
        );
        assert!(check_last_batch(97, 32, true, 2).is_ok());
        assert!(check_last_batch(97, 32, false, 1).is_ok());
    }

    #[test]
    fn a_rank_trains_on_its_contiguous_slice_of_the_global_batch() {
        let dev = candle_core::Device::Cpu;
        let batch = Batch {
            x: Tensor::arange(0f32, 12., &dev)
                .unwrap()
                .reshape((6, 2))
                .unwrap(),
            y: Tensor::arange(0u32, 6, &dev).unwrap(),
            weights: Some(Tensor::arange(10f32, 16., &dev).unwrap()),
            indices: vec![5, 3, 1, 0, 2, 4],
        };
        let s = shard(batch, 1, 2).unwrap();
        assert_eq!(s.indices, vec![0, 2, 4]);
        assert_eq!(s.y.to_vec1::<u32>().unwrap(), vec![3, 4, 5]);
        assert_eq!(
            s.x.to_vec2::<f32>().unwrap(),
            vec![vec![6., 7.], vec![8., 9.], vec![10., 11.]]
        );
        assert_eq!(
            s.weights.unwrap().to_vec1::<f32>().unwrap(),
            vec![13., 14., 15.]
        );
    }
}
