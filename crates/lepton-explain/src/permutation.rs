//! Permutation importance (Breiman 2001; scikit-learn's `permutation_importance`): how much a
//! model's score on a dataset drops when one feature's column is shuffled, breaking its link to
//! the target. Each feature is shuffled `repeats` times (seeded); the importance is the mean
//! drop, with its standard deviation. The score is accuracy for a classifier (argmax of the
//! scores against integer labels) and the negative mean squared error for a regression
//! (`K = 1`), so a larger drop always means a more important feature.
//!
//! # Shapes
//! `x`: `[N, F]`; `labels`: `N` values (class indices as f32, or regression targets).

use candle_core::{DType, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::attribution::{Attribution, Method};
use crate::error::{during, Error, Result};
use crate::scorer::{values, Scorer};

/// The permutation-importance settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct PermutationConfig {
    /// Shuffles per feature (at least 1). Default 5 (scikit-learn's default).
    pub repeats: usize,
    /// Seed of the shuffles. Default 0.
    pub seed: u64,
}

impl Default for PermutationConfig {
    fn default() -> Self {
        Self {
            repeats: 5,
            seed: 0,
        }
    }
}

/// The score of the model on `rows` (`[N, F]` values) against `labels`: accuracy, or −MSE.
fn score(model: &dyn Scorer, rows: Vec<f32>, n: usize, f: usize, labels: &[f32]) -> Result<f64> {
    let x = Tensor::from_vec(rows, (n, f), &candle_core::Device::Cpu)
        .map_err(during("building the dataset batch"))?;
    let y = model.scores(&x).map_err(during("forward pass"))?;
    let k = y.dim(1).map_err(during("reading the model's scores"))?;
    let y = y
        .to_dtype(DType::F32)
        .and_then(|t| t.to_vec2::<f32>())
        .map_err(during("reading the model's scores"))?;
    Ok(if k == 1 {
        -y.iter()
            .zip(labels)
            .map(|(p, &t)| f64::from(p[0] - t).powi(2))
            .sum::<f64>()
            / n as f64
    } else {
        let hits = y
            .iter()
            .zip(labels)
            .filter(|(p, &t)| {
                let best = p
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                best as f32 == t
            })
            .count();
        hits as f64 / n as f64
    })
}

/// Permutation importance of every feature of `x` for the model's score against `labels`; the
/// attribution holds the mean drops, `checks` the base score and the standard deviations.
pub fn permutation_importance(
    model: &dyn Scorer,
    x: &Tensor,
    labels: &[f32],
    cfg: &PermutationConfig,
) -> Result<Attribution> {
    let &[n, f] = x.dims() else {
        return Err(Error::invalid(
            "dataset",
            format!("expected a table [rows, features], got {:?}", x.dims()),
        ));
    };
    if n == 0 || labels.len() != n {
        return Err(Error::invalid(
            "labels",
            format!("{} labels for {n} rows", labels.len()),
        ));
    }
    if cfg.repeats == 0 {
        return Err(Error::invalid("repeats", "at least 1 shuffle per feature"));
    }
    let data = values(x)?;
    let base = score(model, data.clone(), n, f, labels)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let (mut means, mut stds) = (Vec::with_capacity(f), Vec::with_capacity(f));
    let mut order: Vec<usize> = (0..n).collect();
    for j in 0..f {
        let mut drops = Vec::with_capacity(cfg.repeats);
        for _ in 0..cfg.repeats {
            order.shuffle(&mut rng);
            let mut rows = data.clone();
            for (i, &src) in order.iter().enumerate() {
                rows[i * f + j] = data[src * f + j];
            }
            drops.push(base - score(model, rows, n, f, labels)?);
        }
        let mu = drops.iter().sum::<f64>() / drops.len() as f64;
        let var = drops.iter().map(|d| (d - mu).powi(2)).sum::<f64>() / drops.len() as f64;
        means.push(mu as f32);
        stds.push(var.sqrt());
    }
    Ok(Attribution {
        method: Method::Permutation,
        target: 0,
        shape: vec![f],
        attributions: means,
        score: base as f32,
        params: json!({ "repeats": cfg.repeats, "seed": cfg.seed, "rows": n }),
        checks: json!({ "base-score": base, "std": stds }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::FnScorer;
    use candle_core::Device;

    #[test]
    fn only_the_feature_the_model_reads_matters() {
        // A regression y = 2·x0 that ignores x1: shuffling x1 changes nothing; shuffling x0
        // costs E[(2x0 − 2x0')²] = 8·Var(x0) on average.
        let m = FnScorer(|x: &Tensor| x.narrow(1, 0, 1)?.affine(2.0, 0.0));
        let n = 200;
        let rows: Vec<f32> = (0..n)
            .flat_map(|i| [(i % 10) as f32, ((i * 7) % 13) as f32])
            .collect();
        let labels: Vec<f32> = (0..n).map(|i| 2.0 * (i % 10) as f32).collect();
        let x = Tensor::from_vec(rows, (n, 2), &Device::Cpu).unwrap();
        let p = permutation_importance(&m, &x, &labels, &PermutationConfig::default()).unwrap();
        assert_eq!(p.score, 0.0);
        assert_eq!(p.attributions[1], 0.0);
        // Var(x0) = 8.25 for 0..9 uniform: 8 · 8.25 = 66 expected, the shuffle is random.
        assert!(
            (p.attributions[0] - 66.0).abs() < 15.0,
            "{}",
            p.attributions[0]
        );
        let e = permutation_importance(&m, &x, &labels[1..], &PermutationConfig::default());
        assert!(e.unwrap_err().to_string().contains("invalid labels"));
    }
}
