//! Layer norm over the last dimension, `y = (x − μ)/√(σ² + ε)·γ + β` (biased σ²).

use candle_core::{Result, Tensor, D};

/// Layer norm of `x: [..., F]` with `weight`, optional `bias`: `[F]`.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    layer_norm_reference(x, weight, bias, eps)
}

/// [`layer_norm`] by plain candle ops (they all have a backward).
pub fn layer_norm_reference(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let y = centered
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(weight)?;
    match bias {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}
