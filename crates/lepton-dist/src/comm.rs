//! The communicator a [`crate::DataParallel`] group runs on.

use crate::error::Result;

/// Collective operations over a fixed group of ranks. Every call is collective: all ranks make
/// the same calls in the same order with buffers of the same length.
pub trait Communicator {
    /// This process's rank in `0..world`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world(&self) -> usize;
    /// Element-wise sum over ranks, in place.
    fn all_reduce_f32(&mut self, buf: &mut [f32]) -> Result<()>;
    /// Element-wise sum over ranks, in place.
    fn all_reduce_f64(&mut self, buf: &mut [f64]) -> Result<()>;
    /// Overwrite `buf` with rank 0's.
    fn broadcast_f32(&mut self, buf: &mut [f32]) -> Result<()>;
    /// Overwrite `buf` with rank 0's.
    fn broadcast_f64(&mut self, buf: &mut [f64]) -> Result<()>;
    /// Sum every bucket over ranks, in place. `fill(i, bucket)` writes bucket `i` just before its
    /// reduction is started, so an implementation with non-blocking collectives (MPI) fills
    /// bucket `i + 1` while bucket `i` is in flight; `reduced(i)` is called when bucket `i`'s
    /// reduction is complete (for the timeline). The default reduces one bucket at a time.
    fn all_reduce_buckets(
        &mut self,
        buckets: &mut [Vec<f32>],
        fill: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
        reduced: &mut dyn FnMut(usize),
    ) -> Result<()> {
        for (i, b) in buckets.iter_mut().enumerate() {
            fill(i, b)?;
            self.all_reduce_f32(b)?;
            reduced(i);
        }
        Ok(())
    }
}
