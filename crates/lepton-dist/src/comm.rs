//! The communicator a [`crate::DataParallel`] group runs on.

use crate::error::Result;

/// A reduction started by [`Communicator::start_all_reduce_f32`].
pub trait InFlight {
    /// Whether the reduction is complete; lets it progress (MPI progresses a non-blocking
    /// collective only inside MPI calls). Called on the thread that started it.
    fn test(&mut self) -> Result<bool>;
    /// Wait for the reduction; the summed values.
    fn wait(self: Box<Self>) -> Result<Vec<f32>>;
}

/// A reduction that completed when it was started (a blocking communicator).
pub struct Ready(pub Vec<f32>);

impl InFlight for Ready {
    fn test(&mut self) -> Result<bool> {
        Ok(true)
    }
    fn wait(self: Box<Self>) -> Result<Vec<f32>> {
        Ok(self.0)
    }
}

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
    /// Start summing `buf` over ranks and return without waiting where the implementation can
    /// (MPI: `MPI_Iallreduce`); every rank starts the same reductions in the same order. The
    /// default reduces now and returns a [`Ready`] result.
    fn start_all_reduce_f32(&mut self, mut buf: Vec<f32>) -> Result<Box<dyn InFlight>> {
        self.all_reduce_f32(&mut buf)?;
        Ok(Box::new(Ready(buf)))
    }
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
