//! Early stopping at rungs: ASHA (Li et al. 2020, asynchronous successive halving) and
//! asynchronous Hyperband (ASHA brackets with different grace periods).
//!
//! Rungs sit at `grace * eta^k` epochs below the trial's full length `max`. When a trial reaches
//! a rung its score is recorded there; it goes on only if the score is at least the
//! `1 - 1/eta` quantile of all scores recorded at that rung so far (the top `1/eta`), else it
//! is stopped. With `grace = 1, eta = 3, max = 27` the rungs are 1, 3 and 9 epochs and the
//! survivors run to 27. Hyperband spreads trials round-robin over brackets with grace periods
//! `min * eta^s`, `s = 0..=s_max` (`s_max = floor(log_eta(max / min))`).

use std::collections::BTreeMap;

use crate::sampler::SchedulerKind;

/// Rung records and the stop rule.
#[derive(Debug, Clone)]
pub struct Stopper {
    kind: SchedulerKind,
    eta: u64,
    min: u64,
    max: u64,
    /// `(bracket, rung epoch) -> trial -> score`.
    records: BTreeMap<(usize, u64), BTreeMap<usize, f64>>,
}

/// What a trial does after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Continue,
    Stop,
}

impl Stopper {
    /// `eta >= 2`, `1 <= min <= max` (checked by the caller's options).
    pub fn new(kind: SchedulerKind, eta: u64, min: u64, max: u64) -> Self {
        Self {
            kind,
            eta,
            min,
            max,
            records: BTreeMap::new(),
        }
    }

    fn brackets(&self) -> usize {
        match self.kind {
            SchedulerKind::Hyperband => {
                let mut s = 0;
                while self.min * self.eta.pow(s as u32 + 1) <= self.max {
                    s += 1;
                }
                s + 1
            }
            _ => 1,
        }
    }

    /// The bracket of a trial (Hyperband: round-robin).
    pub fn bracket(&self, trial: usize) -> usize {
        trial % self.brackets()
    }

    /// The rung epochs of a trial's bracket (below `max`).
    pub fn rungs(&self, trial: usize) -> Vec<u64> {
        if !self.kind.stops_early() {
            return vec![];
        }
        let mut r = self.min * self.eta.pow(self.bracket(trial) as u32);
        let mut out = vec![];
        while r < self.max {
            out.push(r);
            r *= self.eta;
        }
        out
    }

    /// Trial `trial` finished epoch `epoch` (1-based) with `score` (higher is better).
    /// Idempotent: a trial's score at a rung is recorded once (a resumed search replays logs).
    pub fn report(&mut self, trial: usize, epoch: u64, score: f64) -> Decision {
        if !self.rungs(trial).contains(&epoch) {
            return Decision::Continue;
        }
        let rung = self
            .records
            .entry((self.bracket(trial), epoch))
            .or_default();
        rung.entry(trial).or_insert(score);
        let mut scores: Vec<f64> = rung.values().copied().collect();
        scores.sort_by(f64::total_cmp);
        let cutoff = quantile(&scores, 1.0 - 1.0 / self.eta as f64);
        if rung[&trial] < cutoff {
            Decision::Stop
        } else {
            Decision::Continue
        }
    }
}

/// Linear-interpolation quantile of sorted values (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asha_rungs_and_the_top_third_rule() {
        let mut s = Stopper::new(SchedulerKind::Asha, 3, 1, 27);
        assert_eq!(s.rungs(0), vec![1, 3, 9]);
        // The first trial at a rung always goes on; a worse one after it stops.
        assert_eq!(s.report(0, 1, 0.5), Decision::Continue);
        assert_eq!(s.report(1, 1, 0.4), Decision::Stop);
        assert_eq!(s.report(2, 1, 0.9), Decision::Continue);
        assert_eq!(s.report(0, 2, 0.1), Decision::Continue, "not a rung");
        // Replaying a log does not record twice.
        assert_eq!(s.report(1, 1, 0.4), Decision::Stop);
        assert_eq!(s.records[&(0, 1)].len(), 3);
    }

    #[test]
    fn hyperband_brackets_have_growing_grace_periods() {
        let s = Stopper::new(SchedulerKind::Hyperband, 3, 1, 27);
        assert_eq!(s.brackets(), 4);
        assert_eq!(s.rungs(0), vec![1, 3, 9]);
        assert_eq!(s.rungs(1), vec![3, 9]);
        assert_eq!(s.rungs(2), vec![9]);
        assert_eq!(s.rungs(3), Vec::<u64>::new());
        assert!(Stopper::new(SchedulerKind::Random, 3, 1, 27)
            .rungs(0)
            .is_empty());
    }
}
