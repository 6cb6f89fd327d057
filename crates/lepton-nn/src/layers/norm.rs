//! Batch norm (train: batch statistics + running-stat update; eval: running statistics) and
//! layer norm.
//!
//! Batch norm over `[B, F]` or `[B, C, H, W]`, per feature / channel:
//! `y = (x - μ) / sqrt(σ² + ε) · γ + β`; in training μ, σ² are the batch's (biased σ²) and the
//! running statistics move by `momentum` towards μ and the unbiased σ² (PyTorch's convention).

use candle_core::{DType, Result, Tensor, Var, D};
use candle_nn::{Init, VarBuilder};

use crate::kernels;

#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    momentum: f64,
    eps: f64,
    relu: bool,
    /// A max-pool `(kernel, stride, padding)` fused after it (see `layers::fuse`).
    pool: Option<(usize, usize, usize)>,
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
        })
    }

    /// Apply a ReLU after the normalisation, in the same kernel.
    pub fn fuse_relu(&mut self) {
        self.relu = true;
    }

    /// Apply a max-pool `(kernel, stride, padding)` after it (and after a fused ReLU), in the
    /// same kernel: the full-size output is never written.
    pub fn fuse_pool(&mut self, pool: (usize, usize, usize)) {
        self.pool = Some(pool);
    }

    /// Whether a ReLU, or a max-pool, has been fused into this layer.
    pub fn fused(&self) -> (bool, bool) {
        (self.relu, self.pool.is_some())
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
