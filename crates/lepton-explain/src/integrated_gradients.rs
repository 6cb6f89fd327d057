//! Integrated gradients (Sundararajan et al. 2017):
//!
//! `IG_i(x) = (x_i − b_i) · ∫₀¹ ∂y_t/∂x_i (b + α(x − b)) dα`
//!
//! with a baseline `b` ([`Baseline`]), the integral by a quadrature rule ([`Rule`]): Gauss-Legendre
//! on `[0, 1]` (captum's default, `method="gausslegendre"`) or the trapezoid rule (captum's
//! `riemann_trapezoid`). All `steps` interpolated inputs go through the model in batches of
//! [`IgConfig::batch`]: one forward and one backward pass per batch, not per step. A model that
//! is a [`lepton_nn::kernels::PiecewiseNet`] (conv, linear, batch norm, ReLU, max-pool) runs
//! its dedicated passes, which round every point's forward as the model's own eval forward (so
//! its ReLU masks and max-pool choices, near-ties included, are the model's) and run the leading
//! affine layers' input gradient once per explanation instead of per step (see there); any other
//! model goes through candle autograd.
//!
//! Completeness, `Σ_i IG_i = y_t(x) − y_t(b)`, holds up to the quadrature error; the result's
//! `checks` report it (two extra forward passes).
//!
//! # Shapes
//! `x` and the baseline: the per-sample shape; the attribution has the same shape.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::attribution::{Attribution, Method};
use crate::error::{during, Error, Result};
use crate::scorer::{check_target, target_gradient, target_scores, values, Scorer};

/// The quadrature rule for the path integral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Gauss-Legendre nodes and weights mapped to `[0, 1]` (exact for polynomials of degree
    /// `2·steps − 1`); captum's default.
    #[default]
    GaussLegendre,
    /// `steps` evenly spaced points including both ends, the end weights halved.
    Trapezoid,
}

/// The integrated-gradients settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct IgConfig {
    /// Integration points (at least 2). Default 50 (captum's default).
    pub steps: usize,
    /// Quadrature rule. Default `gauss-legendre`.
    pub rule: Rule,
    /// Interpolated inputs per forward/backward pass (at least 1). Default 64.
    pub batch: usize,
}

impl Default for IgConfig {
    fn default() -> Self {
        Self {
            steps: 50,
            rule: Rule::GaussLegendre,
            batch: 64,
        }
    }
}

/// The reference input the path starts from.
#[derive(Debug, Clone)]
pub enum Baseline {
    /// All zeros (the default; with normalised inputs, zero is the mean pixel).
    Zeros,
    /// The input's own mean, per channel for an image `[C, H, W]`, else over all values.
    Mean,
    /// The input blurred by a Gaussian of standard deviation `sigma` pixels over the last two
    /// dimensions (edges clamped).
    Blur { sigma: f32 },
    /// A given tensor of the input's shape (a file, a dataset mean, ...).
    Given(Tensor),
}

impl Baseline {
    /// The name used in `params` (`zeros`, `mean`, `blur`, `given`).
    pub fn name(&self) -> &'static str {
        match self {
            Baseline::Zeros => "zeros",
            Baseline::Mean => "mean",
            Baseline::Blur { .. } => "blur",
            Baseline::Given(_) => "given",
        }
    }

    /// The baseline tensor for the input `x`.
    pub fn tensor(&self, x: &Tensor) -> Result<Tensor> {
        let op = during("building the baseline");
        match self {
            Baseline::Zeros => x.zeros_like().map_err(op),
            Baseline::Mean => {
                let dims = x.dims();
                if dims.len() >= 3 {
                    let lead: usize = dims[..dims.len() - 2].iter().product();
                    let per = x
                        .reshape((lead, ()))
                        .and_then(|t| t.mean_keepdim(1))
                        .map_err(&op)?;
                    per.broadcast_as((lead, dims[dims.len() - 2] * dims[dims.len() - 1]))
                        .and_then(|t| t.reshape(dims))
                        .map_err(op)
                } else {
                    x.mean_all()
                        .and_then(|m| m.broadcast_as(dims))
                        .and_then(|t| t.contiguous())
                        .map_err(op)
                }
            }
            Baseline::Blur { sigma } => blur(x, *sigma),
            Baseline::Given(b) => {
                if b.dims() != x.dims() {
                    return Err(Error::invalid(
                        "baseline",
                        format!(
                            "the baseline has shape {:?} but the input has {:?}",
                            b.dims(),
                            x.dims()
                        ),
                    ));
                }
                b.to_dtype(x.dtype()).map_err(op)
            }
        }
    }
}

/// A separable Gaussian blur over the last two dimensions, radius `⌈3σ⌉`, edges clamped.
fn blur(x: &Tensor, sigma: f32) -> Result<Tensor> {
    if !(sigma.is_finite() && sigma > 0.0) {
        return Err(Error::invalid(
            "baseline",
            format!("the blur sigma must be positive, got {sigma}"),
        ));
    }
    let dims = x.dims().to_vec();
    if dims.len() < 2 {
        return Err(Error::invalid(
            "baseline",
            format!("a blur needs an image (at least [H, W]), the input is {dims:?}"),
        ));
    }
    let (h, w) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    let r = (3.0 * sigma).ceil() as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = k.iter().sum();
    let k: Vec<f32> = k.into_iter().map(|v| v / total).collect();
    let mut v = values(x)?;
    let mut tmp = vec![0f32; h * w];
    for plane in v.chunks_mut(h * w) {
        for y in 0..h {
            for xx in 0..w {
                tmp[y * w + xx] = k
                    .iter()
                    .enumerate()
                    .map(|(j, kv)| {
                        let c = (xx as isize + j as isize - r).clamp(0, w as isize - 1) as usize;
                        kv * plane[y * w + c]
                    })
                    .sum();
            }
        }
        for y in 0..h {
            for xx in 0..w {
                plane[y * w + xx] = k
                    .iter()
                    .enumerate()
                    .map(|(j, kv)| {
                        let c = (y as isize + j as isize - r).clamp(0, h as isize - 1) as usize;
                        kv * tmp[c * w + xx]
                    })
                    .sum();
            }
        }
    }
    Tensor::from_vec(v, dims, x.device())
        .and_then(|t| t.to_dtype(x.dtype()))
        .map_err(during("building the baseline"))
}

/// Points `α_i ∈ [0, 1]` and weights `w_i` (summing to 1) of `rule` with `steps` points.
pub fn quadrature(rule: Rule, steps: usize) -> (Vec<f64>, Vec<f64>) {
    match rule {
        Rule::Trapezoid => {
            if steps == 1 {
                return (vec![0.5], vec![1.0]);
            }
            let d = 1.0 / (steps - 1) as f64;
            let alphas = (0..steps).map(|i| i as f64 * d).collect();
            let mut w = vec![d; steps];
            w[0] /= 2.0;
            w[steps - 1] /= 2.0;
            (alphas, w)
        }
        Rule::GaussLegendre => {
            // Roots of P_n by Newton's method from Chebyshev-like guesses; w = 2 / ((1 − x²) P_n'²).
            // The roots are symmetric about 0: the positive half by Newton, the rest mirrored.
            let n = steps;
            let mut nodes = Vec::with_capacity(n);
            for i in 0..n.div_ceil(2) {
                let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
                let mut dp = 1.0;
                for _ in 0..100 {
                    let (mut p0, mut p1) = (1.0, x);
                    for j in 2..=n {
                        let p2 = ((2 * j - 1) as f64 * x * p1 - (j - 1) as f64 * p0) / j as f64;
                        p0 = p1;
                        p1 = p2;
                    }
                    dp = n as f64 * (x * p1 - p0) / (x * x - 1.0);
                    let dx = p1 / dp;
                    x -= dx;
                    if dx.abs() < 1e-16 {
                        break;
                    }
                }
                let w = 2.0 / ((1.0 - x * x) * dp * dp);
                nodes.push((x, w));
                if 2 * i + 1 != n {
                    nodes.push((-x, w));
                }
            }
            nodes.sort_by(|a, b| a.0.total_cmp(&b.0));
            nodes
                .into_iter()
                .map(|(x, w)| (0.5 * (x + 1.0), 0.5 * w))
                .unzip()
        }
    }
}

/// Integrated gradients of `target` at `x` from `baseline`; see the module docs.
pub fn integrated_gradients(
    model: &dyn Scorer,
    x: &Tensor,
    baseline: &Baseline,
    target: usize,
    cfg: &IgConfig,
) -> Result<Attribution> {
    if cfg.steps < 2 {
        return Err(Error::invalid(
            "steps",
            format!("at least 2 integration steps, got {}", cfg.steps),
        ));
    }
    if cfg.batch == 0 {
        return Err(Error::invalid("batch", "at least 1 input per pass"));
    }
    let op = during("interpolating the path");
    let x = x.to_dtype(DType::F32).map_err(&op)?;
    let b = baseline.tensor(&x)?;
    let (alphas, weights) = quadrature(cfg.rule, cfg.steps);
    let (total, ends) = match model.piecewise_net() {
        Some(net) => {
            check_target(target, net.output_len())?;
            let p = net
                .path_gradient(
                    &values(&x)?,
                    &values(&b)?,
                    &alphas,
                    &weights,
                    target,
                    cfg.batch,
                )
                .map_err(during("integrating the path gradients"))?;
            (p.gradient, [p.score_input, p.score_baseline])
        }
        None => autograd_path_gradient(model, &x, &b, &alphas, &weights, target, cfg.batch)?,
    };
    let attributions: Vec<f32> = total
        .iter()
        .zip(values(&x)?.iter().zip(values(&b)?))
        .map(|(g, (x, b))| g * (x - b))
        .collect();
    let delta = f64::from(ends[0]) - f64::from(ends[1]);
    let sum: f64 = attributions.iter().map(|&v| f64::from(v)).sum();
    Ok(Attribution {
        method: Method::IntegratedGradients,
        target,
        shape: x.dims().to_vec(),
        attributions,
        score: ends[0],
        params: json!({
            "steps": cfg.steps,
            "rule": cfg.rule,
            "batch": cfg.batch,
            "baseline": baseline.name(),
            "sigma": match baseline { Baseline::Blur { sigma } => Some(*sigma), _ => None },
        }),
        checks: json!({
            "sum-of-attributions": sum,
            "score-input": ends[0],
            "score-baseline": ends[1],
            "completeness-error": (sum - delta).abs(),
            "completeness-relative-error": (sum - delta).abs() / delta.abs().max(1e-12),
        }),
    })
}

/// `Σ_k w_k ∂y_t/∂x (b + α_k (x − b))` by candle autograd, `batch` points per forward/backward
/// pass, and the scores `[y_t(x), y_t(b)]`: the path for models that are not a
/// [`lepton_nn::kernels::PiecewiseNet`].
#[allow(clippy::too_many_arguments)]
fn autograd_path_gradient(
    model: &dyn Scorer,
    x: &Tensor,
    b: &Tensor,
    alphas: &[f64],
    weights: &[f64],
    target: usize,
    batch: usize,
) -> Result<(Vec<f32>, [f32; 2])> {
    let op = during("interpolating the path");
    let diff = (x - b).map_err(&op)?;
    let mut shape = vec![1usize];
    shape.extend_from_slice(x.dims());
    let (x1, b1, d1) = (
        x.reshape(shape.as_slice()).map_err(&op)?,
        b.reshape(shape.as_slice()).map_err(&op)?,
        diff.reshape(shape.as_slice()).map_err(&op)?,
    );
    let mut alpha_shape = vec![0usize];
    alpha_shape.extend(std::iter::repeat_n(1, x.rank()));
    let mut total: Option<Tensor> = None;
    for (a, w) in alphas.chunks(batch).zip(weights.chunks(batch)) {
        alpha_shape[0] = a.len();
        let at = |v: &[f64]| {
            Tensor::from_iter(v.iter().map(|&v| v as f32), x.device())
                .and_then(|t| t.reshape(alpha_shape.as_slice()))
        };
        let path = at(a)
            .and_then(|a| a.broadcast_mul(&d1)?.broadcast_add(&b1))
            .map_err(&op)?;
        let (g, _) = target_gradient(model, &path, target)?;
        let s = at(w)
            .and_then(|w| g.broadcast_mul(&w)?.sum_keepdim(0))
            .map_err(during("summing the path gradients"))?;
        total = Some(match total {
            None => s,
            Some(t) => (t + s).map_err(during("summing the path gradients"))?,
        });
    }
    let total = total.expect("steps >= 2, so at least one batch");
    let ends = target_scores(model, &Tensor::cat(&[&x1, &b1], 0).map_err(&op)?, target)?;
    Ok((values(&total)?, [ends[0], ends[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::FnScorer;
    use candle_core::{Device, D};

    #[test]
    fn gauss_legendre_matches_numpy_leggauss_and_integrates_polynomials_exactly() {
        // numpy.polynomial.legendre.leggauss(3): nodes ±0.7745966692414834, 0; weights 5/9, 8/9.
        let (a, w) = quadrature(Rule::GaussLegendre, 3);
        let r = 0.5 * 0.774_596_669_241_483_4;
        for (got, want) in a.iter().zip([0.5 - r, 0.5, 0.5 + r]) {
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        }
        for (got, want) in w.iter().zip([5.0 / 18.0, 8.0 / 18.0, 5.0 / 18.0]) {
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        }
        // ∫₀¹ α^k dα = 1/(k+1) exactly for k ≤ 2n − 1.
        for n in [2usize, 7, 50, 256] {
            let (a, w) = quadrature(Rule::GaussLegendre, n);
            for k in [0, 1, n, 2 * n - 1] {
                let s: f64 = a.iter().zip(&w).map(|(a, w)| w * a.powi(k as i32)).sum();
                assert!((s - 1.0 / (k + 1) as f64).abs() < 1e-12, "n {n} k {k}: {s}");
            }
        }
        let (a, w) = quadrature(Rule::Trapezoid, 5);
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(w, vec![0.125, 0.25, 0.25, 0.25, 0.125]);
    }

    #[test]
    fn a_quadratic_model_has_the_closed_form_attribution() {
        // y = Σ x_i²: IG_i = (x_i − b_i) ∫ 2(b_i + α(x_i − b_i)) dα = x_i² − b_i².
        let m = FnScorer(|x: &Tensor| x.flatten_from(1)?.sqr()?.sum_keepdim(D::Minus1));
        let x = Tensor::new(&[[1f32, -2.0], [0.5, 3.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[0.5f32, 1.0], [0.0, -1.0]], &Device::Cpu).unwrap();
        for rule in [Rule::GaussLegendre, Rule::Trapezoid] {
            // Batches smaller than the step count: several passes are summed.
            let cfg = IgConfig {
                steps: 9,
                rule,
                batch: 4,
            };
            let ig = integrated_gradients(&m, &x, &Baseline::Given(b.clone()), 0, &cfg).unwrap();
            for (got, want) in ig.attributions.iter().zip([0.75f32, 3.0, 0.25, 8.0]) {
                assert!((got - want).abs() < 1e-5, "{rule:?}: {got} vs {want}");
            }
            assert!(ig.checks["completeness-error"].as_f64().unwrap() < 1e-4);
        }
    }

    #[test]
    fn baselines_have_the_documented_values_and_bad_ones_name_the_field() {
        let x = Tensor::new(
            &[[[1f32, 3.0], [5.0, 7.0]], [[0.0, 0.0], [0.0, 4.0]]],
            &Device::Cpu,
        )
        .unwrap();
        let mean = values(&Baseline::Mean.tensor(&x).unwrap()).unwrap();
        assert_eq!(mean, vec![4.0, 4.0, 4.0, 4.0, 1.0, 1.0, 1.0, 1.0]);
        let blurred = values(&Baseline::Blur { sigma: 50.0 }.tensor(&x).unwrap()).unwrap();
        // A very wide blur of a 2x2 plane with clamped edges is close to the plane's mean.
        assert!((blurred[0] - 4.0).abs() < 0.1 && (blurred[7] - 1.0).abs() < 0.1);
        let bad = Baseline::Given(Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap());
        assert!(bad
            .tensor(&x)
            .unwrap_err()
            .to_string()
            .contains("invalid baseline"));
        let m = FnScorer(|x: &Tensor| x.flatten_from(1)?.sum_keepdim(D::Minus1));
        let cfg = IgConfig {
            steps: 1,
            ..IgConfig::default()
        };
        let e = integrated_gradients(&m, &x, &Baseline::Zeros, 0, &cfg).unwrap_err();
        assert!(e.to_string().contains("invalid steps"), "{e}");
    }
}
