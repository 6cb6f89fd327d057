//! Where the next trial goes: random, grid or TPE, on the unit cube of a [`Space`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::space::{Range, Space};

/// The search strategy (`--scheduler`). `asha` and `hyperband` sample at random and stop trials
/// early at rungs ([`crate::stopper`]); the others run every trial to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulerKind {
    Random,
    Grid,
    Tpe,
    Asha,
    Hyperband,
}

impl SchedulerKind {
    /// Whether trials are stopped at rungs.
    pub fn stops_early(self) -> bool {
        matches!(self, SchedulerKind::Asha | SchedulerKind::Hyperband)
    }
}

/// Random trials TPE draws before it models the results (Optuna's `n_startup_trials`).
pub const TPE_STARTUP: usize = 10;

/// The size of the full grid of `space`.
pub fn grid_size(space: &Space) -> usize {
    space
        .params
        .values()
        .map(|r| r.grid().len())
        .fold(1usize, |a, n| a.saturating_mul(n))
}

/// Unit coordinates of trial `trial`. `history` holds the unit coordinates and scores (higher is
/// better) of the trials finished so far (TPE only).
pub fn sample(
    kind: SchedulerKind,
    space: &Space,
    trial: usize,
    seed: u64,
    history: &[(Vec<f64>, f64)],
) -> Vec<f64> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (trial as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    match kind {
        SchedulerKind::Grid => {
            // Mixed-radix digits of the trial index, the last key varying fastest.
            let mut i = trial;
            let mut u: Vec<f64> = space
                .params
                .values()
                .rev()
                .map(|r| {
                    let g = r.grid();
                    let v = g[i % g.len()];
                    i /= g.len();
                    v
                })
                .collect();
            u.reverse();
            u
        }
        SchedulerKind::Tpe if history.len() >= TPE_STARTUP => tpe(space, &mut rng, history),
        _ => space.params.values().map(|_| rng.random::<f64>()).collect(),
    }
}

/// Independent TPE per parameter (Bergstra et al. 2011, as Optuna's default sampler), by the
/// `tpe` crate; choices are categorical, the rest continuous on the unit interval.
fn tpe(space: &Space, rng: &mut ChaCha8Rng, history: &[(Vec<f64>, f64)]) -> Vec<f64> {
    use rand_010::SeedableRng as _;
    let mut rng = rand_010::rngs::StdRng::seed_from_u64(rng.random());
    space
        .params
        .values()
        .enumerate()
        .map(|(p, range)| {
            let n = match range {
                Range::Choice { values } => Some(values.len()),
                _ => None,
            };
            let r = match n {
                Some(n) => tpe::categorical_range(n),
                None => tpe::range(0.0, 1.0),
            }
            .expect("valid ranges: checked when the space was read");
            let mut opt = tpe::TpeOptimizer::new(tpe::parzen_estimator(), r);
            for (u, score) in history {
                let x = match n {
                    Some(n) => ((u[p] * n as f64).floor()).min(n as f64 - 1.0),
                    None => u[p].clamp(0.0, 1.0 - 1e-12),
                };
                // The crate minimises.
                opt.tell(x, -score).expect("finite score in range");
            }
            let x = opt.ask(&mut rng).expect("a density from finite trials");
            match n {
                Some(n) => (x.floor() + 0.5) / n as f64,
                None => x,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn space() -> Space {
        Space::parse(
            r#""a" = { kind = "linear", low = 0.0, high = 1.0 }
               "b" = { kind = "choice", values = ["x", "y"] }"#,
            Path::new("s.toml"),
        )
        .unwrap()
    }

    #[test]
    fn grid_visits_every_point_once() {
        let s = space();
        assert_eq!(grid_size(&s), 6);
        let mut seen: Vec<_> = (0..6)
            .map(|i| {
                format!(
                    "{:?}",
                    s.values(&sample(SchedulerKind::Grid, &s, i, 0, &[]))
                )
            })
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn random_is_a_function_of_seed_and_trial() {
        let s = space();
        let a = sample(SchedulerKind::Random, &s, 3, 9, &[]);
        assert_eq!(a, sample(SchedulerKind::Random, &s, 3, 9, &[]));
        assert_ne!(a, sample(SchedulerKind::Random, &s, 4, 9, &[]));
    }

    #[test]
    fn tpe_concentrates_near_the_best_results() {
        // Score peaks at a = 0.8: after the start-up trials TPE samples near it.
        let s = space();
        let mut history = vec![];
        for i in 0..40 {
            let u = sample(SchedulerKind::Tpe, &s, i, 1, &history);
            let score = -(u[0] - 0.8).abs();
            history.push((u, score));
        }
        let late: f64 = history[30..]
            .iter()
            .map(|(u, _)| (u[0] - 0.8).abs())
            .sum::<f64>()
            / 10.0;
        let early: f64 = history[..10]
            .iter()
            .map(|(u, _)| (u[0] - 0.8).abs())
            .sum::<f64>()
            / 10.0;
        assert!(late < early / 2.0, "late {late} early {early}");
    }
}
