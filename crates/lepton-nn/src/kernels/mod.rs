//! CPU kernels used by the layers. Every function here has the semantics of the plain candle op it
//! replaces (same shapes, same layout rules) and is tested against it.

use candle_core::{Result, Tensor};

/// Parameters of a 2-D convolution (PyTorch semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Self { stride: 1, padding: 0, dilation: 1, groups: 1 }
    }
}

/// 2-D convolution. `x`: `[N, C_in, H, W]`, `w`: `[C_out, C_in / groups, KH, KW]`, `b`: `[C_out]`.
/// Returns `[N, C_out, H_out, W_out]`.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    let y = x.conv2d(w, p.padding, p.stride, p.dilation, p.groups)?;
    match b {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
        None => Ok(y),
    }
}

/// Max pooling over `[N, C, H, W]` with a square window, stride and zero padding (padding is
/// treated as -inf, as in PyTorch).
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let x = if padding > 0 {
        x.pad_with_same(2, padding, padding)?.pad_with_same(3, padding, padding)?
    } else {
        x.clone()
    };
    x.max_pool2d_with_stride(kernel, stride)
}
