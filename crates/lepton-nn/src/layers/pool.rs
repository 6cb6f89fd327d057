//! Pooling: `max-pool2d`, `avg-pool2d` and `global-avg-pool`, and the window arithmetic that
//! convolutions share.
//!
//! # Shapes
//! `[C, H, W]` -> `[C, H', W']` with `H' = (H + 2·padding - kernel) / stride + 1` (likewise `W'`);
//! `global-avg-pool`: `[C, H, W]` -> `[C]`. No parameters.

use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{BuildCtx, Ctx, Fold, Layer, LayerConfig, ShapeCtx};
use crate::kernels::{self, Piece};

/// `(C, H, W)` of an image input, or an error.
pub(super) fn need_image(x: &[usize], ctx: &ShapeCtx) -> crate::Result<(usize, usize, usize)> {
    match *x {
        [c, h, w] => Ok((c, h, w)),
        _ => Err(ctx.error(format!(
            "expects an image [C, H, W], got {x:?} (add or remove a flatten?)"
        ))),
    }
}

/// The output length of a window `kernel` (dilated by `d`) sliding by `stride` over `len` padded by
/// `padding` on each side, in checked arithmetic.
pub(super) fn window_out(
    len: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    d: usize,
    ctx: &ShapeCtx,
) -> crate::Result<usize> {
    let span = kernel
        .saturating_sub(1)
        .checked_mul(d)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(|| {
            ctx.size_error(
                "kernel",
                format!("kernel {kernel} with dilation {d} overflows"),
            )
        })?;
    let padded = padding
        .checked_mul(2)
        .and_then(|v| v.checked_add(len))
        .ok_or_else(|| ctx.size_error("padding", format!("padding {padding} overflows")))?;
    if padded < span {
        return Err(ctx.error(format!(
            "kernel {kernel} (dilation {d}) is larger than the padded input size {padded}"
        )));
    }
    Ok((padded - span) / stride + 1)
}

/// The settings of `max-pool2d` and `avg-pool2d`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Pool2dConfig {
    /// Window size (square, at least 1).
    pub kernel: usize,
    /// Default: the kernel size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    /// Padding on each side, at most half the kernel. Default 0.
    #[serde(default)]
    pub padding: usize,
}

impl Pool2dConfig {
    fn stride(&self) -> usize {
        self.stride.unwrap_or(self.kernel)
    }

    fn output_shape(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Vec<usize>> {
        let (c, h, w) = need_image(x, ctx)?;
        let (k, s, p) = (self.kernel, self.stride(), self.padding);
        if k == 0 || s == 0 {
            return Err(ctx.error("kernel and stride must be at least 1"));
        }
        if p > k / 2 {
            return Err(ctx.error(format!("padding {p} must be at most half the kernel ({k})")));
        }
        Ok(vec![
            c,
            window_out(h, k, s, p, 1, ctx)?,
            window_out(w, k, s, p, 1, ctx)?,
        ])
    }
}

/// The `max-pool2d` settings (see [`Pool2dConfig`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MaxPool2dConfig(pub Pool2dConfig);

/// The `avg-pool2d` settings (see [`Pool2dConfig`]); zero padding is counted, as PyTorch's
/// default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AvgPool2dConfig(pub Pool2dConfig);

impl LayerConfig for MaxPool2dConfig {
    fn kind(&self) -> &'static str {
        "max-pool2d"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        self.0.output_shape(x, ctx)
    }

    fn build(&self, _: &[usize], _: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        Ok(Box::new(MaxPool2d {
            kernel: self.0.kernel,
            stride: self.0.stride(),
            padding: self.0.padding,
        }))
    }
}

impl LayerConfig for AvgPool2dConfig {
    fn kind(&self) -> &'static str {
        "avg-pool2d"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        self.0.output_shape(x, ctx)
    }

    fn build(&self, _: &[usize], _: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        Ok(Box::new(AvgPool2d {
            kernel: self.0.kernel,
            stride: self.0.stride(),
            padding: self.0.padding,
        }))
    }
}

/// A built `max-pool2d`; folded into a convolution or batch norm before it (see `fuse.rs`).
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl Layer for MaxPool2d {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        kernels::max_pool2d(x, self.kernel, self.stride, self.padding)
    }

    fn foldable(&self) -> Option<Fold> {
        Some(Fold::MaxPool(self.kernel, self.stride, self.padding))
    }

    fn pieces(&self) -> Result<Option<Vec<Piece>>> {
        Ok(Some(vec![Piece::MaxPool {
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
        }]))
    }
}

/// A built `avg-pool2d`.
#[derive(Debug, Clone, Copy)]
pub struct AvgPool2d {
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl Layer for AvgPool2d {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        kernels::avg_pool2d(x, self.kernel, self.stride, self.padding)
    }
}

/// `global-avg-pool`: the mean over the spatial dimensions, `[C, H, W]` -> `[C]`.
#[derive(Debug, Clone, Copy)]
pub struct GlobalAvgPool;

impl LayerConfig for GlobalAvgPool {
    fn kind(&self) -> &'static str {
        "global-avg-pool"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        Ok(vec![need_image(x, ctx)?.0])
    }

    fn build(&self, _: &[usize], _: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        Ok(Box::new(GlobalAvgPool))
    }
}

impl Layer for GlobalAvgPool {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        x.mean(D::Minus1)?.mean(D::Minus1)
    }
}
