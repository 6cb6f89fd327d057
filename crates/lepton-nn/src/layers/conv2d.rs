//! `conv2d`: 2-D convolution over `[C, H, W]` (square kernels, PyTorch semantics).
//!
//! # Shapes
//! `[C, H, W]` -> `[out-channels, H', W']` with `H' = (H + 2·padding - dilation·(kernel - 1) - 1)
//! / stride + 1` (likewise `W'`); `weight: [out-channels, C / groups, kernel, kernel]`,
//! `bias: [out-channels]` (PyTorch's `nn.Conv2d`). A following ReLU and max-pool are folded into
//! the kernel (see `fuse.rs`).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::batch_norm::BatchNorm;
use super::fuse::fold_pieces;
use super::pool::{need_image, window_out};
use super::{kaiming, one, yes, BuildCtx, Ctx, Fold, Layer, LayerConfig, ShapeCtx, Values};
use crate::kernels::{self, Conv2dParams, Piece};

/// The `conv2d` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Conv2dConfig {
    /// Output channels (at least 1).
    pub out_channels: usize,
    /// Kernel size (square, at least 1).
    pub kernel: usize,
    /// Default 1.
    #[serde(default = "one")]
    pub stride: usize,
    /// Zero padding on each side. Default 0.
    #[serde(default)]
    pub padding: usize,
    /// Default 1.
    #[serde(default = "one")]
    pub dilation: usize,
    /// Channel groups; must divide the input and output channels. Default 1.
    #[serde(default = "one")]
    pub groups: usize,
    /// Add a bias. Default `true`.
    #[serde(default = "yes")]
    pub bias: bool,
}

impl LayerConfig for Conv2dConfig {
    fn kind(&self) -> &'static str {
        "conv2d"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        let (c, h, w) = need_image(x, ctx)?;
        let Self {
            out_channels,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            ..
        } = *self;
        if kernel == 0 || stride == 0 || dilation == 0 || groups == 0 || out_channels == 0 {
            return Err(
                ctx.error("kernel, stride, dilation, groups and out-channels must be at least 1")
            );
        }
        if c % groups != 0 || out_channels % groups != 0 {
            return Err(ctx.error(format!("groups = {groups} must divide the input channels ({c}) and out-channels ({out_channels})")));
        }
        Ok(vec![
            out_channels,
            window_out(h, kernel, stride, padding, dilation, ctx)?,
            window_out(w, kernel, stride, padding, dilation, ctx)?,
        ])
    }

    fn values(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        let field = self.size_field().expect("conv2d has a size field");
        let w = ctx.count(
            field,
            &[
                self.out_channels,
                x[0] / self.groups,
                self.kernel,
                self.kernel,
            ],
        )?;
        let b = if self.bias {
            self.out_channels as u64
        } else {
            0
        };
        Ok(Values {
            trainable: w
                .checked_add(b)
                .ok_or_else(|| ctx.size_error(field, "weights and bias overflow 64 bits"))?,
            buffers: 0,
        })
    }

    /// `kernel` when it is the larger factor of the weight, else `out-channels`.
    fn size_field(&self) -> Option<&'static str> {
        Some(if self.kernel > self.out_channels {
            "kernel"
        } else {
            "out-channels"
        })
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        let fan_in = x[0] / self.groups * self.kernel * self.kernel;
        let weight = vb.get_with_hints(
            (
                self.out_channels,
                x[0] / self.groups,
                self.kernel,
                self.kernel,
            ),
            "weight",
            kaiming(fan_in),
        )?;
        let bias = if self.bias {
            Some(vb.get_with_hints(self.out_channels, "bias", kaiming(fan_in))?)
        } else {
            None
        };
        Ok(Box::new(Conv2d {
            weight,
            bias,
            params: Conv2dParams {
                stride: self.stride,
                padding: self.padding,
                dilation: self.dilation,
                groups: self.groups,
            },
            relu: false,
            pool: None,
            eval_norm: None,
        }))
    }
}

/// A built `conv2d` layer.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    params: Conv2dParams,
    /// The ReLU after this layer is computed here (see `fuse.rs`).
    relu: bool,
    /// The max-pool `(kernel, stride, padding)` after this layer (and its ReLU) is computed here.
    pool: Option<(usize, usize, usize)>,
    /// The batch norm after this layer (with its ReLU and pool), computed here in eval mode when
    /// no gradient can be asked for (inference on loaded weights: serving, `lepton predict`,
    /// explanations' piecewise net; [`kernels::conv2d_eval_block`], see `fuse.rs`); it shares
    /// the batch norm's tensors.
    eval_norm: Option<Box<BatchNorm>>,
}

impl Layer for Conv2d {
    fn forward(&self, x: &Tensor, ctx: &Ctx) -> Result<Tensor> {
        let (w, b) = (&self.weight, self.bias.as_ref());
        // Only where no gradient can be asked for: the block has no backward pass.
        let tracked = x.track_op() || w.track_op() || b.is_some_and(Tensor::track_op);
        if let Some(norm) = self
            .eval_norm
            .as_ref()
            .filter(|n| !ctx.train && !tracked && !n.tracks_gradient())
        {
            let (scale, shift) = norm.eval_scale_shift()?;
            let (relu, pool) = norm.folds();
            return kernels::conv2d_eval_block(x, w, b, self.params, scale, shift, relu, pool);
        }
        match self.pool {
            Some(pool) => kernels::conv2d_pool(x, w, b, self.params, self.relu, pool),
            None => kernels::conv2d_act(x, w, b, self.params, self.relu),
        }
    }

    fn pieces(&self) -> Result<Option<Vec<Piece>>> {
        let mut p = vec![Piece::Conv {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            params: self.params,
        }];
        p.extend(fold_pieces(self.relu, self.pool));
        Ok(Some(p))
    }

    /// Only a batch norm right after the convolution itself (no ReLU or pool folded here).
    fn absorb_eval_norm(&mut self, norm: &BatchNorm) -> bool {
        if self.relu || self.pool.is_some() || self.eval_norm.is_some() {
            return false;
        }
        self.eval_norm = Some(Box::new(norm.clone()));
        true
    }

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
