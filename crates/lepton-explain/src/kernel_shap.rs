//! Kernel SHAP (Lundberg & Lee 2017) for tabular models.
//!
//! A coalition `z ∈ {0,1}^F` keeps the features with `z_i = 1` from `x` and takes the others from
//! each background row; its value `v(z)` is the mean target score over the background. The
//! Shapley values are the solution of the weighted least squares
//!
//! `min_φ Σ_z π(z) (v(z) − v(∅) − Σ_i z_i φ_i)²`, subject to `Σ_i φ_i = v(1) − v(∅)` (efficiency),
//!
//! with the Shapley kernel `π(z) = (F − 1) / (C(F, |z|) · |z| · (F − |z|))`. With at most
//! [`KernelShapConfig::exact_max_features`] features every coalition is enumerated and the result
//! is the exact Shapley value; above, [`KernelShapConfig::samples`] coalitions are drawn with
//! sizes in proportion to the kernel's total weight per size (then weighted equally), in
//! complementary pairs. The constraint is eliminated (`φ_F = Δ − Σ_{i<F} φ_i`) and the
//! `(F − 1)²` normal equations solved in f64.
//!
//! For a linear model `f(x) = w·x + c` the answer is `φ_i = w_i (x_i − E[x_i])`.
//!
//! # Shapes
//! `x`: `[F]`; `background`: `[M, F]`; the attribution is `[F]`.

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::attribution::{Attribution, Method};
use crate::error::{during, Error, Result};
use crate::scorer::{target_scores, values, Scorer};

/// The kernel SHAP settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct KernelShapConfig {
    /// Enumerate all `2^F` coalitions up to this many features. Default 12.
    pub exact_max_features: usize,
    /// Sampled coalitions above that (at least 2). Default 2048.
    pub samples: usize,
    /// Seed of the coalition sampler. Default 0.
    pub seed: u64,
    /// Model rows (coalitions × background rows) per forward pass. Default 8192.
    pub batch: usize,
}

impl Default for KernelShapConfig {
    fn default() -> Self {
        Self {
            exact_max_features: 12,
            samples: 2048,
            seed: 0,
            batch: 8192,
        }
    }
}

impl KernelShapConfig {
    /// Coalitions evaluated for `f` features (each costs one model row per background row).
    pub fn coalitions(&self, f: usize) -> usize {
        if f <= self.exact_max_features {
            (1usize << f).saturating_sub(2)
        } else {
            self.samples
        }
    }
}

/// `C(n, k)` in f64.
fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// The coalitions and their weights; see the module docs.
fn coalitions(f: usize, cfg: &KernelShapConfig) -> Vec<(Vec<bool>, f64)> {
    if f <= cfg.exact_max_features {
        return (1..(1u64 << f) - 1)
            .map(|m| {
                let z: Vec<bool> = (0..f).map(|i| m >> i & 1 == 1).collect();
                let s = z.iter().filter(|&&b| b).count();
                let w = (f - 1) as f64 / (binomial(f, s) * (s * (f - s)) as f64);
                (z, w)
            })
            .collect();
    }
    // Total kernel weight of size s: C(F, s)·π(s) ∝ 1 / (s (F − s)).
    let size_w: Vec<f64> = (1..f).map(|s| 1.0 / (s * (f - s)) as f64).collect();
    let total: f64 = size_w.iter().sum();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut out = Vec::with_capacity(cfg.samples);
    while out.len() + 1 < cfg.samples {
        let mut u = rng.random::<f64>() * total;
        let mut s = 1;
        for (i, w) in size_w.iter().enumerate() {
            s = i + 1;
            if u < *w {
                break;
            }
            u -= w;
        }
        // A uniform subset of size s (partial Fisher-Yates).
        let mut idx: Vec<usize> = (0..f).collect();
        for i in 0..s {
            let j = rng.random_range(i..f);
            idx.swap(i, j);
        }
        let mut z = vec![false; f];
        for &i in &idx[..s] {
            z[i] = true;
        }
        let comp: Vec<bool> = z.iter().map(|b| !b).collect();
        out.push((z, 1.0));
        out.push((comp, 1.0));
    }
    out
}

/// Solves `A φ = r` (`A` symmetric positive definite, `n × n` row-major) by Gaussian
/// elimination with partial pivoting.
fn solve(mut a: Vec<f64>, mut r: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs()))?;
        if a[p * n + c].abs() < 1e-300 {
            return None;
        }
        for k in 0..n {
            a.swap(c * n + k, p * n + k);
        }
        r.swap(c, p);
        for i in c + 1..n {
            let m = a[i * n + c] / a[c * n + c];
            for k in c..n {
                a[i * n + k] -= m * a[c * n + k];
            }
            r[i] -= m * r[c];
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| a[i * n + k] * x[k]).sum();
        x[i] = (r[i] - s) / a[i * n + i];
    }
    Some(x)
}

/// Kernel SHAP values of `target` at `x` against `background`; see the module docs.
pub fn kernel_shap(
    model: &dyn Scorer,
    x: &Tensor,
    background: &Tensor,
    target: usize,
    cfg: &KernelShapConfig,
) -> Result<Attribution> {
    let &[f] = x.dims() else {
        return Err(Error::invalid(
            "input",
            format!(
                "kernel SHAP explains a row of features [F], got {:?}",
                x.dims()
            ),
        ));
    };
    let m = match background.dims() {
        &[m, bf] if bf == f && m > 0 => m,
        d => {
            return Err(Error::invalid(
                "background",
                format!("expected [rows, {f}] with at least one row, got {d:?}"),
            ))
        }
    };
    if f > cfg.exact_max_features && cfg.samples < 2 {
        return Err(Error::invalid("samples", "at least 2 coalitions"));
    }
    if cfg.batch == 0 {
        return Err(Error::invalid("batch", "at least 1 row per pass"));
    }
    let xv = values(x)?;
    let bg = values(background)?;
    // v(∅) and v(1): the background's mean score, the input's score.
    let v0 = mean(&target_scores(
        model,
        &background
            .to_dtype(DType::F32)
            .map_err(during("reading the background"))?,
        target,
    )?);
    let x1 = x
        .to_dtype(DType::F32)
        .and_then(|t| t.unsqueeze(0))
        .map_err(during("reading the input"))?;
    let v1 = f64::from(target_scores(model, &x1, target)?[0]);
    let delta = v1 - v0;
    if f == 1 {
        return Ok(answer(vec![delta as f32], target, v1, v0, cfg, 0));
    }
    let zs = coalitions(f, cfg);
    // v(z) for every coalition: per batch, `per` coalitions of m rows each.
    let per = (cfg.batch / m).max(1);
    let mut v = Vec::with_capacity(zs.len());
    for chunk in zs.chunks(per) {
        let mut rows = Vec::with_capacity(chunk.len() * m * f);
        for (z, _) in chunk {
            for b in bg.chunks(f) {
                rows.extend(
                    z.iter()
                        .zip(b.iter().zip(&xv))
                        .map(|(&k, (&bv, &xv))| if k { xv } else { bv }),
                );
            }
        }
        let t = Tensor::from_vec(rows, (chunk.len() * m, f), x.device())
            .map_err(during("building the coalition inputs"))?;
        let ys = target_scores(model, &t, target)?;
        v.extend(ys.chunks(m).map(mean));
    }
    // Eliminate φ_F: y = v(z) − v0 − z_F Δ, row = z_i − z_F for i < F.
    let n = f - 1;
    let (mut a, mut r) = (vec![0.0; n * n], vec![0.0; n]);
    for ((z, w), vz) in zs.iter().zip(&v) {
        let zf = f64::from(u8::from(z[n]));
        let row: Vec<f64> = (0..n).map(|i| f64::from(u8::from(z[i])) - zf).collect();
        let y = vz - v0 - zf * delta;
        for i in 0..n {
            if row[i] == 0.0 {
                continue;
            }
            r[i] += w * row[i] * y;
            for k in 0..n {
                a[i * n + k] += w * row[i] * row[k];
            }
        }
    }
    let phi = solve(a, r, n).ok_or_else(|| {
        Error::invalid(
            "samples",
            "the sampled coalitions do not determine every feature: sample more",
        )
    })?;
    let last = delta - phi.iter().sum::<f64>();
    let mut out: Vec<f32> = phi.into_iter().map(|p| p as f32).collect();
    out.push(last as f32);
    Ok(answer(out, target, v1, v0, cfg, zs.len()))
}

fn mean(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64
}

fn answer(
    phi: Vec<f32>,
    target: usize,
    v1: f64,
    v0: f64,
    cfg: &KernelShapConfig,
    evaluated: usize,
) -> Attribution {
    let sum: f64 = phi.iter().map(|&p| f64::from(p)).sum();
    Attribution {
        method: Method::KernelShap,
        target,
        shape: vec![phi.len()],
        score: v1 as f32,
        params: json!({
            "exact": phi.len() <= cfg.exact_max_features,
            "coalitions": evaluated,
            "samples": cfg.samples,
            "seed": cfg.seed,
        }),
        checks: json!({
            "expected-score": v0,
            "score-input": v1,
            "efficiency-error": (sum - (v1 - v0)).abs(),
        }),
        attributions: phi,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::FnScorer;
    use candle_core::Device;

    #[test]
    fn an_interaction_splits_evenly_between_its_features() {
        // y = x0·x1 + x2 against a zero background: v(z) = x0 x1 [z0 z1] + x2 [z2]; the Shapley
        // values are x0 x1 / 2, x0 x1 / 2, x2 (exact enumeration).
        let m = FnScorer(|x: &Tensor| {
            let a = x.narrow(1, 0, 1)?;
            let b = x.narrow(1, 1, 1)?;
            let c = x.narrow(1, 2, 1)?;
            (a * b)? + c
        });
        let x = Tensor::new(&[2f32, 3.0, -1.0], &Device::Cpu).unwrap();
        let bg = Tensor::zeros((4, 3), DType::F32, &Device::Cpu).unwrap();
        let s = kernel_shap(&m, &x, &bg, 0, &KernelShapConfig::default()).unwrap();
        for (got, want) in s.attributions.iter().zip([3.0f32, 3.0, -1.0]) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
    }

    #[test]
    fn bad_shapes_name_the_field() {
        let m = FnScorer(|x: &Tensor| x.sum_keepdim(1));
        let x = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        let bg = Tensor::zeros((4, 2), DType::F32, &Device::Cpu).unwrap();
        let e = kernel_shap(&m, &x, &bg, 0, &KernelShapConfig::default()).unwrap_err();
        assert!(e.to_string().contains("invalid background"), "{e}");
        let img = Tensor::zeros((1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let e = kernel_shap(&m, &img, &bg, 0, &KernelShapConfig::default()).unwrap_err();
        assert!(e.to_string().contains("invalid input"), "{e}");
    }
}
