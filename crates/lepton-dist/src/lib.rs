//! Data-parallel training for Lepton: the trainer's [`lepton_train::Distributed`] seam over a
//! communicator, with gradients all-reduced in buckets.
//!
//! | module | what |
//! |---|---|
//! | [`comm`] | the [`Communicator`] trait: sum / broadcast over ranks, bucketed all-reduce |
//! | [`data_parallel`] | [`DataParallel`]: gradient averaging over ranks, the timeline's recorder |
//! | [`overlap`] | reductions started per segment of the backward pass, progressed while it runs |
//! | [`pack`] | gradients into buckets: the bucket plan, parallel scaled packing through the tensor's layout, unpacking |
//! | [`timing`] | [`StepTiming`]: what each gradient sync cost (the per-step timeline) |
//! | [`local`] | [`LocalGroup`]: ranks as threads of one process (tests, no MPI needed) |
//! | `mpi` (feature `mpi`) | `MpiComm`: Open MPI / MPICH through rsmpi, non-blocking all-reduce |
//! | [`error`] | the crate's error |
//!
//! Launch: `mpirun -np N lepton train SPEC --distributed` (the CLI's `distributed` feature);
//! rank 0 writes the run directory. See `docs/distributed.md` for the design, the GPU (NCCL)
//! path and what was measured.

pub mod comm;
pub mod data_parallel;
pub mod error;
pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod overlap;
pub mod pack;
pub mod timing;

pub use comm::{Communicator, InFlight, Ready};
pub use data_parallel::DataParallel;
pub use error::{Error, Result};
pub use local::{LocalComm, LocalGroup};
#[cfg(feature = "mpi")]
pub use mpi::MpiComm;
pub use timing::StepTiming;
