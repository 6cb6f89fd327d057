//! Batch norm (train: batch statistics + running-stat update; eval: running statistics) and
//! layer norm.
//!
//! Batch norm over `[B, F]` or `[B, C, H, W]`, per feature / channel:
//! `y = (x - μ) / sqrt(σ² + ε) · γ + β`; in training μ, σ² are the batch's (biased σ²) and the
//! running statistics move by `momentum` towards μ and the unbiased σ² (PyTorch's convention).

use candle_core::{Result, Tensor, Var, D};
use candle_nn::{Init, VarBuilder};

#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    momentum: f64,
    eps: f64,
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
        })
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let rank = x.rank();
        // Bring the feature axis last as [N, F] rows for the statistics, keep the broadcast shape.
        let shape: Vec<usize> = (0..rank)
            .map(|d| if d == 1 { x.dim(1).unwrap_or(1) } else { 1 })
            .collect();
        let (mean, var) = if train {
            let reduce: Vec<usize> = (0..rank).filter(|&d| d != 1).collect();
            let n = reduce
                .iter()
                .map(|&d| x.dim(d).unwrap_or(1))
                .product::<usize>();
            if n < 2 {
                candle_core::bail!(
                    "batch norm in training needs more than one value per channel, got input {:?}",
                    x.dims()
                );
            }
            let mean = x.mean_keepdim(reduce.as_slice())?;
            let centered = x.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim(reduce.as_slice())?;
            let m = self.momentum;
            let flat_mean = mean.flatten_all()?.detach();
            let unbiased = (var.flatten_all()?.detach() * (n as f64 / (n as f64 - 1.0)))?;
            let new_mean = ((self.running_mean.as_tensor() * (1.0 - m))? + (flat_mean * m)?)?;
            let new_var = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
            self.running_mean
                .set(&new_mean.to_dtype(self.running_mean.dtype())?)?;
            self.running_var
                .set(&new_var.to_dtype(self.running_var.dtype())?)?;
            (mean, var)
        } else {
            (
                self.running_mean.as_tensor().reshape(shape.as_slice())?,
                self.running_var.as_tensor().reshape(shape.as_slice())?,
            )
        };
        let inv = (var + self.eps)?.sqrt()?.recip()?;
        let y = x.broadcast_sub(&mean)?.broadcast_mul(&inv)?;
        y.broadcast_mul(&self.weight.reshape(shape.as_slice())?)?
            .broadcast_add(&self.bias.reshape(shape.as_slice())?)
    }
}

#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(features: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(features, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(features, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let y = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        y.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}
