//! Ranks as threads of one process: the same collectives as MPI over shared memory, for tests
//! and for machines without MPI. Sums are taken in rank order, so every rank gets the same bits.

use std::sync::{Arc, Barrier, Mutex};

use crate::comm::Communicator;
use crate::error::{Error, Result};

/// The shared state of an in-process group.
struct Shared {
    slots: Mutex<Vec<Vec<f64>>>,
    barrier: Barrier,
}

/// Constructs the [`LocalComm`]s of an in-process group.
pub struct LocalGroup;

impl LocalGroup {
    /// One communicator per rank; move each into its own thread.
    pub fn ranks(world: usize) -> Vec<LocalComm> {
        let shared = Arc::new(Shared {
            slots: Mutex::new(vec![Vec::new(); world]),
            barrier: Barrier::new(world),
        });
        (0..world)
            .map(|rank| LocalComm {
                rank,
                world,
                shared: shared.clone(),
            })
            .collect()
    }
}

/// One rank of an in-process group.
pub struct LocalComm {
    rank: usize,
    world: usize,
    shared: Arc<Shared>,
}

impl LocalComm {
    /// Publish `values`, wait for all ranks, and return every rank's values (in rank order).
    fn exchange(&self, op: &'static str, values: Vec<f64>) -> Result<Vec<Vec<f64>>> {
        let shared = &*self.shared;
        shared.slots.lock().map_err(|_| Error::PeerGone { op })?[self.rank] = values;
        shared.barrier.wait();
        let all = shared
            .slots
            .lock()
            .map_err(|_| Error::PeerGone { op })?
            .clone();
        // Nobody overwrites a slot before every rank has read it.
        self.shared.barrier.wait();
        Ok(all)
    }

    fn reduce(&self, op: &'static str, buf: &[f64]) -> Result<Vec<f64>> {
        let all = self.exchange(op, buf.to_vec())?;
        let mut sum = vec![0.0; buf.len()];
        for other in &all {
            if other.len() != buf.len() {
                return Err(Error::Mismatch {
                    bucket: 0,
                    message: format!(
                        "{op}: {} elements here, {} on a peer",
                        buf.len(),
                        other.len()
                    ),
                });
            }
            for (s, v) in sum.iter_mut().zip(other) {
                *s += v;
            }
        }
        Ok(sum)
    }
}

impl Communicator for LocalComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.world
    }
    fn all_reduce_f32(&mut self, buf: &mut [f32]) -> Result<()> {
        // Summed in f32 in rank order, as a ring of two ranks would.
        let all = self.exchange("all-reduce", buf.iter().map(|&v| f64::from(v)).collect())?;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = all.iter().fold(0f32, |acc, r| acc + r[i] as f32);
        }
        Ok(())
    }
    fn all_reduce_f64(&mut self, buf: &mut [f64]) -> Result<()> {
        let sum = self.reduce("all-reduce", buf)?;
        buf.copy_from_slice(&sum);
        Ok(())
    }
    fn broadcast_f32(&mut self, buf: &mut [f32]) -> Result<()> {
        let all = self.exchange("broadcast", buf.iter().map(|&v| f64::from(v)).collect())?;
        for (b, v) in buf.iter_mut().zip(&all[0]) {
            *b = *v as f32;
        }
        Ok(())
    }
    fn broadcast_f64(&mut self, buf: &mut [f64]) -> Result<()> {
        let all = self.exchange("broadcast", buf.to_vec())?;
        buf.copy_from_slice(&all[0]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_broadcasts_across_threads() {
        let out: Vec<(Vec<f32>, Vec<f64>)> = std::thread::scope(|s| {
            let handles: Vec<_> = LocalGroup::ranks(3)
                .into_iter()
                .map(|mut c| {
                    s.spawn(move || {
                        let r = c.rank() as f32;
                        let mut a = vec![r, 10.0 * r];
                        c.all_reduce_f32(&mut a).unwrap();
                        let mut b = vec![r as f64 + 0.5];
                        c.broadcast_f64(&mut b).unwrap();
                        (a, b)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (a, b) in out {
            assert_eq!(a, vec![3.0, 30.0]);
            assert_eq!(b, vec![0.5]);
        }
    }
}
