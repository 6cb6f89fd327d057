//! Where an epoch's wall time goes: the `phases` object of each epoch line in `metrics.jsonl`.
//!
//! The trainer's clock is split into consecutive laps, each charged to one [`Phase`], so the
//! phases of an epoch line add up to the wall time since the previous epoch line (or since
//! training started or resumed). The checkpoint and best model written after an epoch line
//! are therefore counted in the next epoch's `checkpoint`; those of the last epoch are in no line.
//! Timings are wall-clock, so they are not part of a checkpoint: a resumed run's first epoch
//! line counts only the resumed process.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Seconds per phase since the previous epoch line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTimes {
    /// Waiting for the next batch. Loading, augmentation and batching run ahead on a background
    /// thread; this is the time the training loop waited for it.
    pub data: f64,
    /// Forward, loss, backward, gradient clipping and the optimizer update (and, with several
    /// ranks, the gradient reduction).
    pub steps: f64,
    /// The running loss / accuracy sums, their read-back, `metrics.jsonl` and progress events.
    pub logging: f64,
    /// Checkpoints and the best model's weights.
    pub checkpoint: f64,
    /// The validation pass at the end of the epoch.
    pub validation: f64,
}

impl PhaseTimes {
    /// The sum of all phases.
    pub fn total(&self) -> f64 {
        self.data + self.steps + self.logging + self.checkpoint + self.validation
    }
}

/// One of the [`PhaseTimes`] fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Data,
    Steps,
    Logging,
    Checkpoint,
    Validation,
}

/// A lap timer: each [`PhaseClock::lap`] charges the time since the previous lap to a phase.
#[derive(Debug, Clone)]
pub struct PhaseClock {
    times: PhaseTimes,
    last: Instant,
}

impl Default for PhaseClock {
    fn default() -> Self {
        Self::new()
    }
}

impl PhaseClock {
    /// A clock that starts now with every phase at zero.
    pub fn new() -> Self {
        Self {
            times: PhaseTimes::default(),
            last: Instant::now(),
        }
    }

    /// Charge the time since the previous lap to `phase`.
    pub fn lap(&mut self, phase: Phase) {
        let now = Instant::now();
        let secs = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        let t = &mut self.times;
        *match phase {
            Phase::Data => &mut t.data,
            Phase::Steps => &mut t.steps,
            Phase::Logging => &mut t.logging,
            Phase::Checkpoint => &mut t.checkpoint,
            Phase::Validation => &mut t.validation,
        } += secs;
    }

    /// The times so far; the clock starts over from zero (the current lap goes on).
    pub fn take(&mut self) -> PhaseTimes {
        std::mem::take(&mut self.times)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn laps_partition_the_wall_time_and_take_starts_over() {
        let start = Instant::now();
        let mut clock = PhaseClock::new();
        std::thread::sleep(Duration::from_millis(20));
        clock.lap(Phase::Data);
        std::thread::sleep(Duration::from_millis(10));
        clock.lap(Phase::Validation);
        clock.lap(Phase::Validation);
        let t = clock.take();
        let wall = start.elapsed().as_secs_f64();
        assert!(t.data >= 0.020 && t.validation >= 0.010, "{t:?}");
        assert_eq!((t.steps, t.logging, t.checkpoint), (0.0, 0.0, 0.0));
        assert!(t.total() <= wall + 1e-9, "{} > {wall}", t.total());
        // Taken times are gone; the next lap counts from the last one.
        std::thread::sleep(Duration::from_millis(5));
        clock.lap(Phase::Steps);
        let u = clock.take();
        assert!(u.steps >= 0.005 && u.data == 0.0, "{u:?}");
    }
}
