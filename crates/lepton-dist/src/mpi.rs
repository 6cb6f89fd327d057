//! [`MpiComm`]: the [`Communicator`] over MPI (rsmpi), for `mpirun -np N lepton train --distributed`.
//!
//! Faults: the world communicator keeps MPI's default `MPI_ERRORS_ARE_FATAL`, and Open MPI's
//! launcher aborts the whole job when one rank dies (SIGKILL included), so no rank waits for a
//! dead peer; `bench/dist/fault.sh` measures the exit time. A watchdog thread
//! (`LEPTON_DIST_TIMEOUT` seconds, default 120) aborts the job when one collective call takes
//! longer, the fallback for launchers that do not notice a hung (rather than dead) peer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::Universe;
use mpi::request::{Request, StaticScope};
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::Threading;

use crate::comm::{Communicator, InFlight};
use crate::error::{Error, Result};

/// One rank of an MPI job (the world communicator).
pub struct MpiComm {
    world: SimpleCommunicator,
    /// Milliseconds since `epoch` at which the current collective started; 0 when idle.
    busy_since: Arc<AtomicU64>,
    epoch: Instant,
    // Finalises MPI when dropped: last.
    _universe: Universe,
}

impl MpiComm {
    /// Initialise MPI (funneled: only the thread that calls this makes MPI calls) and start the
    /// watchdog. Fails when MPI was initialised already.
    pub fn init() -> Result<Self> {
        let (universe, _) = mpi::initialize_with_threading(Threading::Funneled)
            .ok_or_else(|| Error::Init("MPI was initialised already".into()))?;
        let world = universe.world();
        let timeout = std::env::var("LEPTON_DIST_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(120);
        let busy_since = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let watch = busy_since.clone();
        let rank = world.rank();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let since = watch.load(Ordering::Relaxed);
            let now = epoch.elapsed().as_millis() as u64;
            if since != 0 && now.saturating_sub(since) > timeout * 1000 {
                eprintln!(
                    "lepton-dist: rank {rank}: a collective call has not finished in {timeout} s \
                     (a peer hung or left): aborting the job"
                );
                // MPI_Abort is not callable from this thread under funneled threading; exiting
                // non-zero makes the launcher tear the other ranks down.
                std::process::exit(70);
            }
        });
        Ok(Self {
            world,
            busy_since,
            epoch,
            _universe: universe,
        })
    }

    fn guarded<T>(&self, f: impl FnOnce(&SimpleCommunicator) -> T) -> T {
        let now = (self.epoch.elapsed().as_millis() as u64).max(1);
        self.busy_since.store(now, Ordering::Relaxed);
        let out = f(&self.world);
        self.busy_since.store(0, Ordering::Relaxed);
        out
    }
}

fn check_len(op: &'static str, len: usize) -> Result<()> {
    if len > i32::MAX as usize {
        return Err(Error::TooLarge { op, len });
    }
    Ok(())
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn world(&self) -> usize {
        self.world.size() as usize
    }
    fn all_reduce_f32(&mut self, buf: &mut [f32]) -> Result<()> {
        check_len("all-reduce", buf.len())?;
        let send = buf.to_vec();
        self.guarded(|w| w.all_reduce_into(&send[..], buf, SystemOperation::sum()));
        Ok(())
    }
    fn all_reduce_f64(&mut self, buf: &mut [f64]) -> Result<()> {
        check_len("all-reduce", buf.len())?;
        let send = buf.to_vec();
        self.guarded(|w| w.all_reduce_into(&send[..], buf, SystemOperation::sum()));
        Ok(())
    }
    /// `MPI_Iallreduce` on buffers owned by the returned request (they must outlive the call
    /// that starts it, so they are moved in and handed back on completion).
    fn start_all_reduce_f32(&mut self, buf: Vec<f32>) -> Result<Box<dyn InFlight>> {
        check_len("all-reduce", buf.len())?;
        let n = buf.len();
        let send = Box::into_raw(buf.into_boxed_slice());
        let recv = Box::into_raw(vec![0f32; n].into_boxed_slice());
        // SAFETY: both pointers come from `Box::into_raw` just above and are only freed by
        // `MpiInFlight::complete`, after the request has completed (MPI no longer reads `send`
        // or writes `recv`); nothing else accesses them until then.
        let (s, r): (&'static [f32], &'static mut [f32]) = unsafe { (&*send, &mut *recv) };
        let request =
            self.world
                .immediate_all_reduce_into(StaticScope, s, r, SystemOperation::sum());
        Ok(Box::new(MpiInFlight {
            request: Some(request),
            buffers: Some((send, recv)),
            busy_since: self.busy_since.clone(),
            epoch: self.epoch,
        }))
    }
    fn broadcast_f32(&mut self, buf: &mut [f32]) -> Result<()> {
        check_len("broadcast", buf.len())?;
        self.guarded(|w| w.process_at_rank(0).broadcast_into(buf));
        Ok(())
    }
    fn broadcast_f64(&mut self, buf: &mut [f64]) -> Result<()> {
        check_len("broadcast", buf.len())?;
        self.guarded(|w| w.process_at_rank(0).broadcast_into(buf));
        Ok(())
    }
    /// Non-blocking: bucket `i`'s `MPI_Iallreduce` is started as soon as it is filled, then the
    /// next bucket is filled while it is in flight; all are awaited at the end.
    fn all_reduce_buckets(
        &mut self,
        buckets: &mut [Vec<f32>],
        fill: &mut dyn FnMut(usize, &mut [f32]) -> Result<()>,
        reduced: &mut dyn FnMut(usize),
    ) -> Result<()> {
        for b in buckets.iter() {
            check_len("all-reduce", b.len())?;
        }
        let mut sends: Vec<Vec<f32>> = buckets.iter().map(|b| vec![0f32; b.len()]).collect();
        let world = &self.world;
        let now = (self.epoch.elapsed().as_millis() as u64).max(1);
        self.busy_since.store(now, Ordering::Relaxed);
        let out = mpi::request::scope(|scope| -> Result<()> {
            let mut requests = Vec::with_capacity(buckets.len());
            let mut failed = None;
            for (i, (send, recv)) in sends.iter_mut().zip(buckets.iter_mut()).enumerate() {
                if let Err(e) = fill(i, send) {
                    failed = Some(e);
                    break;
                }
                let send: &Vec<f32> = send;
                requests.push(world.immediate_all_reduce_into(
                    scope,
                    &send[..],
                    &mut recv[..],
                    SystemOperation::sum(),
                ));
            }
            for (i, r) in requests.into_iter().enumerate() {
                r.wait();
                reduced(i);
            }
            failed.map_or(Ok(()), Err)
        });
        self.busy_since.store(0, Ordering::Relaxed);
        out
    }
}

/// A non-blocking all-reduce and the buffers it owns.
struct MpiInFlight {
    /// `None` once complete.
    request: Option<Request<'static, [f32]>>,
    /// The send and receive buffers, from `Box::into_raw`; `None` once reclaimed.
    buffers: Option<(*mut [f32], *mut [f32])>,
    busy_since: Arc<AtomicU64>,
    epoch: Instant,
}

impl MpiInFlight {
    /// Wait for the request (if not complete yet), then reclaim the buffers: the summed values.
    fn complete(&mut self) -> Vec<f32> {
        if let Some(r) = self.request.take() {
            let now = (self.epoch.elapsed().as_millis() as u64).max(1);
            self.busy_since.store(now, Ordering::Relaxed);
            r.wait_without_status();
            self.busy_since.store(0, Ordering::Relaxed);
        }
        let Some((send, recv)) = self.buffers.take() else {
            return Vec::new();
        };
        // SAFETY: `send` and `recv` came from `Box::into_raw` in `start_all_reduce_f32`, the
        // request using them has completed (MPI no longer touches them), and `buffers` is
        // `None` from here on, so each is reclaimed once.
        unsafe {
            drop(Box::from_raw(send));
            Box::from_raw(recv).into_vec()
        }
    }
}

impl InFlight for MpiInFlight {
    fn test(&mut self) -> Result<bool> {
        if let Some(r) = self.request.take() {
            if let Err(pending) = r.test() {
                self.request = Some(pending);
                return Ok(false);
            }
        }
        Ok(true)
    }
    fn wait(mut self: Box<Self>) -> Result<Vec<f32>> {
        Ok(self.complete())
    }
}

impl Drop for MpiInFlight {
    /// A reduction dropped before it completed (an error elsewhere in the step) is waited for:
    /// MPI may still write its buffers.
    fn drop(&mut self) {
        drop(self.complete());
    }
}
