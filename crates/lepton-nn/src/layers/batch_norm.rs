//! `batch-norm1d` and `batch-norm2d`: batch norm per feature of `[F]` / per channel of
//! `[C, H, W]` (train: batch statistics and a running-statistics update; eval: the running
//! statistics).
//!
//! `y = (x - μ) / sqrt(σ² + ε) · γ + β`; in training μ, σ² are the batch's (biased σ²) and the
//! running statistics move by `momentum` towards μ and the unbiased σ² (PyTorch's convention).
//!
//! # Shapes
//! Keeps the shape; `weight`, `bias`, `running_mean`, `running_var`: `[F]` or `[C]` (PyTorch's
//! `nn.BatchNorm1d` / `nn.BatchNorm2d`). A following ReLU and max-pool are folded into the kernel.

use candle_core::{DType, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::fuse::fold_pieces;
use super::pool::need_image;
use super::{eps, BuildCtx, Ctx, Fold, Layer, LayerConfig, ShapeCtx, Values};
use crate::kernels::{self, Piece};

fn bn_momentum() -> f64 {
    0.1
}

/// The settings of `batch-norm1d` and `batch-norm2d`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BatchNormConfig {
    /// How far the running statistics move towards each batch's, in [0, 1]. Default 0.1.
    #[serde(default = "bn_momentum")]
    pub momentum: f64,
    /// Added to the variance, finite and > 0. Default 1e-5.
    #[serde(default = "eps")]
    pub eps: f64,
}

impl BatchNormConfig {
    fn check(&self, ctx: &ShapeCtx) -> crate::Result<()> {
        let m = self.momentum;
        if !(0.0..=1.0).contains(&m) {
            return Err(ctx.error(format!("momentum = {m} must be in [0, 1]")));
        }
        super::check_eps(self.eps, ctx)
    }

    fn values(x: &[usize]) -> Values {
        // Within the activation budget, so twice it fits.
        let f = x[0] as u64;
        Values {
            trainable: 2 * f,
            buffers: 2 * f,
        }
    }

    fn build(&self, x: &[usize], vb: VarBuilder) -> Result<Box<dyn Layer>> {
        Ok(Box::new(BatchNorm::new(x[0], self.momentum, self.eps, vb)?))
    }
}

/// The `batch-norm1d` settings: over the features of `[F]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchNorm1dConfig(pub BatchNormConfig);

/// The `batch-norm2d` settings: over the channels of `[C, H, W]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchNorm2dConfig(pub BatchNormConfig);

impl LayerConfig for BatchNorm1dConfig {
    fn kind(&self) -> &'static str {
        "batch-norm1d"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        if x.len() != 1 {
            return Err(ctx.error(format!(
                "expects features [F], got {x:?} (use batch-norm2d for images)"
            )));
        }
        self.0.check(ctx)?;
        Ok(x.to_vec())
    }

    fn values(&self, x: &[usize], _: &ShapeCtx) -> crate::Result<Values> {
        Ok(BatchNormConfig::values(x))
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        self.0.build(x, vb)
    }
}

impl LayerConfig for BatchNorm2dConfig {
    fn kind(&self) -> &'static str {
        "batch-norm2d"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        need_image(x, ctx)?;
        self.0.check(ctx)?;
        Ok(x.to_vec())
    }

    fn values(&self, x: &[usize], _: &ShapeCtx) -> crate::Result<Values> {
        Ok(BatchNormConfig::values(x))
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        self.0.build(x, vb)
    }
}

/// A built batch norm (1-D or 2-D: the kernel takes `[B, F]` and `[B, C, H, W]`).
#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    momentum: f64,
    eps: f64,
    relu: bool,
    /// A max-pool `(kernel, stride, padding)` folded after it (see `fuse.rs`).
    pool: Option<(usize, usize, usize)>,
    /// In eval mode the convolution before it computes it (see `fuse.rs`): pass through.
    eval_absorbed: bool,
}

impl BatchNorm {
    pub fn new(features: usize, momentum: f64, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(features, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(features, "bias", Init::Const(0.0))?;
        let running_mean =
            Var::from_tensor(&vb.get_with_hints(features, "running_mean", Init::Const(0.0))?)?;
        let running_var =
            Var::from_tensor(&vb.get_with_hints(features, "running_var", Init::Const(1.0))?)?;
        Ok(Self {
            weight,
            bias,
            running_mean,
            running_var,
            momentum,
            eps,
            relu: false,
            pool: None,
            eval_absorbed: false,
        })
    }

    /// The eval-mode per-channel `(scale, shift)` of `y = x·scale + shift` from the running
    /// statistics, as the kernel computes them ([`kernels::eval_affine`]).
    pub fn eval_scale_shift(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let host = |t: &Tensor| t.to_dtype(DType::F64)?.to_vec1::<f64>();
        Ok(kernels::eval_affine(
            &host(&self.weight)?,
            &host(&self.bias)?,
            &host(self.running_mean.as_tensor())?,
            &host(self.running_var.as_tensor())?,
            self.eps,
        ))
    }

    /// Whether its affine parameters are variables or results of tracked ops (a gradient can
    /// be asked for).
    pub fn tracks_gradient(&self) -> bool {
        self.weight.track_op() || self.bias.track_op()
    }

    /// The ReLU and the max-pool `(kernel, stride, padding)` folded into it.
    pub fn folds(&self) -> (bool, Option<(usize, usize, usize)>) {
        (self.relu, self.pool)
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (mean, var) = if train {
            let n = x.elem_count() / x.dim(1).unwrap_or(1).max(1);
            if n < 2 {
                candle_core::bail!(
                    "batch norm in training needs more than one value per channel, got input {:?}",
                    x.dims()
                );
            }
            let (mean, var) = kernels::channel_stats(x)?;
            let m = self.momentum;
            let unbiased: Vec<f64> = var
                .iter()
                .map(|v| v * n as f64 / (n as f64 - 1.0))
                .collect();
            for (running, batch) in [(&self.running_mean, &mean), (&self.running_var, &unbiased)] {
                let batch = Tensor::from_slice(batch, batch.len(), x.device())?
                    .to_dtype(running.dtype())?;
                running.set(&((running.as_tensor() * (1.0 - m))? + (batch * m)?)?)?;
            }
            (mean, var)
        } else {
            let host = |v: &Var| v.as_tensor().to_dtype(DType::F64)?.to_vec1::<f64>();
            (host(&self.running_mean)?, host(&self.running_var)?)
        };
        kernels::batch_norm(
            x,
            &self.weight,
            &self.bias,
            &mean,
            &var,
            self.eps,
            train,
            self.relu,
            self.pool,
        )
    }
}

impl Layer for BatchNorm {
    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        // Pass through exactly when the convolution before computed this layer.
        if self.eval_absorbed && !ctx.train && !x.track_op() && !self.tracks_gradient() {
            return Ok(x.clone());
        }
        self.forward_t(x, ctx.train)
    }

    /// `x·s + t` per channel with `s = γ/√(σ² + ε)`, `t = β − μ·s` (the running statistics),
    /// the values the kernel computes with in eval mode ([`kernels::eval_affine`]), then the
    /// folded ReLU and max-pool.
    fn pieces(&self) -> Result<Option<Vec<Piece>>> {
        let (scale, shift) = self.eval_scale_shift()?;
        let mut p = vec![Piece::Scale { scale, shift }];
        p.extend(fold_pieces(self.relu, self.pool));
        Ok(Some(p))
    }

    fn eval_norm(&self) -> Option<BatchNorm> {
        Some(self.clone())
    }

    fn set_eval_absorbed(&mut self) {
        self.eval_absorbed = true;
    }

    /// A ReLU after the normalisation, and a max-pool after that, in the same kernel: the
    /// full-size output is never written.
    fn fold(&mut self, op: Fold, after_relu: bool) -> bool {
        match op {
            Fold::Relu => {
                self.relu = true;
                true
            }
            Fold::MaxPool(k, s, p) if self.pool.is_none() && (!after_relu || self.relu) => {
                self.pool = Some((k, s, p));
                true
            }
            Fold::MaxPool(..) => false,
        }
    }
}
