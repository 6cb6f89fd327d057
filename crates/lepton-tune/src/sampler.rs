//! Where the next trial goes: random, grid or TPE, on the unit cube of a [`Space`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::space::{Range, Space};
use crate::trial::{Status, TrialResult};

/// The search strategy (`--scheduler`). `asha` and `hyperband` sample at random and stop trials
/// early at rungs ([`crate::stopper`]); `tpe-asha` samples by TPE from the results so far
/// (completed trials and the rung results of stopped ones) and stops trials as `asha` does; the
/// others run every trial to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulerKind {
    Random,
    Grid,
    Tpe,
    Asha,
    Hyperband,
    TpeAsha,
}

impl SchedulerKind {
    /// Whether trials are stopped at rungs.
    pub fn stops_early(self) -> bool {
        matches!(
            self,
            SchedulerKind::Asha | SchedulerKind::Hyperband | SchedulerKind::TpeAsha
        )
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

/// Unit coordinates of trial `trial`, a pure function of `(kind, space, trial, seed, history)`.
/// `history` holds the unit coordinates and scores (higher is better) of the trials finished so
/// far (TPE only; see [`tpe_history`]).
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
        SchedulerKind::Tpe | SchedulerKind::TpeAsha if history.len() >= TPE_STARTUP => {
            tpe(space, &mut rng, history)
        }
        _ => space.params.values().map(|_| rng.random::<f64>()).collect(),
    }
}

/// What TPE learns from: the finished trials (failed ones and those without a finite score left
/// out), each scored by its rank, as Optuna's TPE ranks pruned trials: completed trials first (by
/// their best score), then trials stopped at a rung, the later the rung the better, and at the
/// same rung by their score there. With every trial completed (`tpe`) this is the order of the
/// best scores. Only the order matters to TPE (it splits the trials at a quantile), so the value
/// is the rank (0 for the worst). Trials in id order, so the result does not depend on the order
/// in which they finished.
pub fn tpe_history<'a>(results: impl IntoIterator<Item = &'a TrialResult>) -> Vec<(Vec<f64>, f64)> {
    let mut rows: Vec<(&TrialResult, (bool, usize, f64))> = results
        .into_iter()
        .filter(|r| r.status != Status::Failed)
        .filter_map(|r| {
            let score = match r.status {
                Status::Stopped => r.curve.last().copied(),
                _ => r.best(),
            }?;
            score
                .is_finite()
                .then_some((r, (r.status == Status::Completed, r.curve.len(), score)))
        })
        .collect();
    rows.sort_by_key(|(r, _)| r.id);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        let (ka, kb) = (rows[a].1, rows[b].1);
        ka.0.cmp(&kb.0)
            .then(ka.1.cmp(&kb.1))
            .then(ka.2.total_cmp(&kb.2))
            .then(rows[b].0.id.cmp(&rows[a].0.id))
    });
    let mut rank = vec![0.0; rows.len()];
    for (pos, &i) in order.iter().enumerate() {
        rank[i] = pos as f64;
    }
    rows.iter()
        .zip(rank)
        .map(|((r, _), k)| (r.params.unit.clone(), k))
        .collect()
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

    fn result(id: usize, status: Status, curve: &[f64]) -> TrialResult {
        TrialResult {
            id,
            status,
            params: crate::trial::Params {
                unit: vec![id as f64 / 10.0],
                values: Default::default(),
            },
            curve: curve.to_vec(),
            metric: "val_accuracy".into(),
            seconds: 0.0,
            error: None,
        }
    }

    #[test]
    fn tpe_history_ranks_completed_then_later_rungs_then_scores() {
        let rs = [
            result(0, Status::Stopped, &[0.9]),
            result(1, Status::Completed, &[0.2, 0.5, 0.4]),
            result(2, Status::Stopped, &[0.1, 0.3, 0.6]),
            result(3, Status::Stopped, &[0.95]),
            result(4, Status::Failed, &[0.99]),
            result(5, Status::Stopped, &[f64::NEG_INFINITY]),
            result(6, Status::Completed, &[0.1, 0.2, 0.45]),
        ];
        // Given in another order: the same history, in id order.
        let h = tpe_history(rs.iter().rev());
        let ranks: Vec<(f64, f64)> = h.iter().map(|(u, k)| (u[0], *k)).collect();
        // Failed and non-finite trials are left out. Completed by best (1: 0.5 > 6: 0.45),
        // then stopped at epoch 3 (2), then stopped at epoch 1 by score (3: 0.95 > 0: 0.9).
        assert_eq!(
            ranks,
            vec![(0.0, 0.0), (0.1, 4.0), (0.2, 2.0), (0.3, 1.0), (0.6, 3.0)]
        );
    }

    #[test]
    fn tpe_asha_samples_by_tpe_after_the_start_up_trials() {
        let s = space();
        let h: Vec<(Vec<f64>, f64)> = (0..TPE_STARTUP)
            .map(|i| (vec![i as f64 / 10.0, 0.25], i as f64))
            .collect();
        let (r, t) = (
            sample(SchedulerKind::Random, &s, 12, 4, &h),
            sample(SchedulerKind::TpeAsha, &s, 12, 4, &h),
        );
        assert_ne!(r, t, "TPE, not the random draw");
        assert_eq!(t, sample(SchedulerKind::Tpe, &s, 12, 4, &h));
        assert_eq!(
            t,
            sample(SchedulerKind::TpeAsha, &s, 12, 4, &h),
            "deterministic"
        );
        assert_eq!(
            sample(SchedulerKind::TpeAsha, &s, 3, 4, &h[..3]),
            sample(SchedulerKind::Random, &s, 3, 4, &h[..3]),
            "random before the start-up trials"
        );
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
