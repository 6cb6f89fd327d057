//! CPU kernels used by the layers. Every function here has the semantics of the plain candle op it
//! replaces (same shapes, same layout rules) and is tested against it. [`PiecewiseNet`] (with
//! its per-sample ops in `piecewise_ops.rs`) is a whole eval-mode CNN/MLP compiled for
//! explanations' forward and input-gradient passes, tested against the model and autograd.

use candle_core::{Result, Tensor};

mod activation;
mod attention;
mod batchnorm;
mod blas;
mod buffer;
mod conv;
mod conv_eval;
mod conv_int8;
mod layer_norm;
mod linear;
pub mod math;
mod maxpool;
mod packed;
mod piecewise;
mod piecewise_conv;
mod piecewise_ops;
mod piecewise_piece;
mod recurrent;
mod recurrent_steps;
mod sparse_grad;

pub use activation::relu;
pub use attention::{
    attention, attention_backward_reference, attention_qkv, attention_reference, AttentionMask,
};
pub use batchnorm::{batch_norm, channel_stats, eval_affine};
pub use blas::{matmul, Elem, Mat};
pub use conv::{col2im, im2col, Geom as ConvGeom};
pub use conv_eval::conv2d_eval_block;
#[cfg(test)]
pub(crate) use conv_int8::tests::Lcg;
pub use conv_int8::{code_at, ConvDst, ConvInt8Geom, ConvPlan, ConvScratch, ConvSrc};
pub use layer_norm::{layer_norm, layer_norm_reference};
pub use linear::{linear, linear_reference, linear_train, Activation};
pub use maxpool::max_pool2d;
pub use packed::PackedLinear;
pub use piecewise::{PathGradient, Piece, PiecewiseNet};
pub use recurrent::{recurrent, recurrent_supported, RecurrentCell};

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
        Self {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

/// 2-D convolution. `x`: `[N, C_in, H, W]`, `w`: `[C_out, C_in / groups, K, K]` (square
/// kernels), `b`: `[C_out]`. Returns `[N, C_out, H_out, W_out]`.
///
/// One custom op (see `conv.rs`): per-image im2col + GEMM in parallel across the batch, bias fused;
/// the backward pass computes each gradient only when its operand needs one: no input gradient
/// for the data of the first layer, only the input gradient through frozen weights.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    conv2d_act(x, w, b, p, false)
}

/// [`conv2d`] followed by a fused ReLU when `relu` is set.
pub fn conv2d_act(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
    relu: bool,
) -> Result<Tensor> {
    let geom = ConvGeom::new(
        x.dims(),
        w.dims(),
        p.stride,
        p.padding,
        p.dilation,
        p.groups,
    )?;
    conv::conv2d(x, w, b, geom, relu, None)
}

/// [`conv2d_act`] followed by a fused max-pool `(kernel, stride, padding)`: the convolution's
/// output never leaves the per-thread buffer, only the pooled planes are written.
pub fn conv2d_pool(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: Conv2dParams,
    relu: bool,
    pool: (usize, usize, usize),
) -> Result<Tensor> {
    let geom = ConvGeom::new(
        x.dims(),
        w.dims(),
        p.stride,
        p.padding,
        p.dilation,
        p.groups,
    )?;
    conv::conv2d(x, w, b, geom, relu, Some(pool))
}

/// Average pooling over `[N, C, H, W]` with zero padding counted (PyTorch's default), as a
/// depthwise convolution with a constant kernel: candle's own avg-pool backward spreads gradient
/// onto input cells that no window covers when the size is not a multiple of the stride.
pub fn avg_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let c = x.dim(1)?;
    let w = Tensor::full(
        1.0 / (kernel * kernel) as f64,
        (c, 1, kernel, kernel),
        x.device(),
    )?
    .to_dtype(x.dtype())?;
    conv2d(
        x,
        &w,
        None,
        Conv2dParams {
            stride,
            padding,
            dilation: 1,
            groups: c,
        },
    )
}

/// Helpers shared by the kernels' tests.
#[cfg(test)]
pub(crate) mod test_util {
    use candle_core::backprop::GradStore;
    use candle_core::{DType, Tensor};

    /// Gradients of `Σ out ⊙ weights` (a random `weights` probes every output's gradient).
    pub fn weighted_grads(out: &Tensor, weights: &Tensor) -> GradStore {
        (out * weights)
            .and_then(|t| t.sum_all()?.backward())
            .expect("backward of a weighted sum")
    }

    /// The largest absolute element-wise difference of two same-shaped tensors, in f64.
    pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_dtype(DType::F64))
            .and_then(|m| m.to_scalar::<f64>())
            .expect("max_diff of two same-shaped tensors")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{max_diff, weighted_grads};
    use candle_core::{Device, Var};

    #[test]
    fn conv2d_matches_candle_forward_and_backward_on_odd_shapes() {
        let dev = Device::Cpu;
        for (n, c, h, w, co, k, s, p, d, g) in [
            (2, 3, 9, 7, 4, 3, 1, 0, 1, 1),
            (3, 4, 11, 10, 6, 3, 2, 1, 1, 2),
            (1, 2, 8, 8, 2, 2, 1, 1, 2, 1),
            (2, 1, 28, 28, 32, 3, 1, 0, 1, 1),
            (5, 6, 7, 9, 9, 1, 1, 0, 1, 3),
            (3, 5, 6, 6, 4, 1, 2, 1, 1, 1),
            (2, 4, 13, 11, 8, 5, 3, 2, 2, 4),
            (9, 3, 5, 5, 7, 3, 1, 2, 1, 1),
        ] {
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, h, w), &dev).unwrap()).unwrap();
            let wt = Var::from_tensor(&Tensor::randn(0f32, 1.0, (co, c / g, k, k), &dev).unwrap())
                .unwrap();
            let params = Conv2dParams {
                stride: s,
                padding: p,
                dilation: d,
                groups: g,
            };
            let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, co, &dev).unwrap()).unwrap();
            let ours = conv2d(x.as_tensor(), wt.as_tensor(), Some(b.as_tensor()), params).unwrap();
            let theirs = x
                .as_tensor()
                .conv2d(wt.as_tensor(), p, s, d, g)
                .unwrap()
                .broadcast_add(&b.as_tensor().reshape((1, co, 1, 1)).unwrap())
                .unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-4);
            let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
            let go = weighted_grads(&ours, &r);
            // candle's own backward fails when the strided windows leave input rows uncovered
            // (the 11x10 stride-2 case); the finite-difference checks in tests/it cover those.
            let Ok(gt) = (theirs * &r).unwrap().sum_all().unwrap().backward() else {
                continue;
            };
            for v in [&x, &wt, &b] {
                assert!(
                    max_diff(
                        go.get(v.as_tensor()).unwrap(),
                        gt.get(v.as_tensor()).unwrap()
                    ) < 1e-3
                );
            }
        }
    }

    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (13, 3, 10, 9), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 3, 3, 3), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 5, &dev).unwrap()).unwrap();
        let run = |threads: usize| -> Vec<Vec<f32>> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let p = Conv2dParams {
                    padding: 1,
                    ..Default::default()
                };
                let y = conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), p).unwrap();
                let r = y.sin().unwrap().sum_all().unwrap();
                let g = r.backward().unwrap();
                [
                    &y,
                    g.get(&x).unwrap(),
                    g.get(&w).unwrap(),
                    g.get(&b).unwrap(),
                ]
                .iter()
                .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .collect()
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

    #[test]
    fn fused_relu_equals_conv_then_relu() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 2, 7, 8), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 2, 3, 3), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 4, &dev).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1.0, (3, 4, 7, 8), &dev).unwrap();
        let p = Conv2dParams {
            padding: 1,
            ..Default::default()
        };
        let fused = conv2d_act(&x, &w, Some(&b), p, true).unwrap();
        let plain = conv2d(&x, &w, Some(&b), p).unwrap().relu().unwrap();
        assert_eq!(max_diff(&fused, &plain), 0.0);
        let gf = weighted_grads(&fused, &r);
        let gp = weighted_grads(&plain, &r);
        for v in [&x, &w, &b] {
            assert!(max_diff(gf.get(v).unwrap(), gp.get(v).unwrap()) < 1e-5);
        }
    }

    #[test]
    fn fused_max_pool_equals_conv_then_pool() {
        let dev = Device::Cpu;
        for (relu, bias, pool, hw) in [
            (true, true, (2, 2, 0), (9, 8)),
            (false, false, (3, 2, 1), (7, 7)),
            (true, false, (2, 1, 0), (6, 5)),
        ] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 2, hw.0, hw.1), &dev).unwrap())
                .unwrap();
            let w =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 2, 3, 3), &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 4, &dev).unwrap()).unwrap();
            let b = bias.then_some(b.as_tensor());
            let p = Conv2dParams {
                padding: 1,
                ..Default::default()
            };
            let fused = conv2d_pool(&x, &w, b, p, relu, pool).unwrap();
            let plain = max_pool2d(
                &conv2d_act(&x, &w, b, p, relu).unwrap(),
                pool.0,
                pool.1,
                pool.2,
            )
            .unwrap();
            assert_eq!(max_diff(&fused, &plain), 0.0);
            let r = Tensor::randn(0f32, 1.0, fused.dims(), &dev).unwrap();
            let gf = weighted_grads(&fused, &r);
            let gp = weighted_grads(&plain, &r);
            let mut vars = vec![x.as_tensor(), w.as_tensor()];
            vars.extend(b);
            for v in vars {
                assert!(max_diff(gf.get(v).unwrap(), gp.get(v).unwrap()) < 1e-5);
            }
        }
    }

    #[test]
    fn only_the_input_gradient_through_frozen_weights() {
        // An explanation differentiates the input (a `Var`) through inference weights (plain
        // tensors): conv (+ fused ReLU, + fused pool), linear and batch norm skip the parameter
        // gradients, and the input gradient is still there.
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 4, &dev).unwrap();
        let p = Conv2dParams {
            padding: 1,
            ..Default::default()
        };
        let c = conv2d_pool(&x, &w, Some(&b), p, true, (2, 2, 0)).unwrap();
        let (gamma, beta) = (
            Tensor::ones(4, candle_core::DType::F32, &dev).unwrap(),
            b.clone(),
        );
        let n = batch_norm(
            &c, &gamma, &beta, &[0.0; 4], &[1.0; 4], 1e-5, false, true, None,
        )
        .unwrap();
        let lw = Tensor::randn(0f32, 1.0, (5, 64), &dev).unwrap();
        let lb = Tensor::randn(0f32, 1.0, 5, &dev).unwrap();
        let y = linear(
            &n.flatten_from(1).unwrap(),
            &lw,
            Some(&lb),
            Activation::Relu,
        )
        .unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(&x).is_some());
        for t in [&w, &b, &gamma, &lw, &lb] {
            assert!(g.get(t).is_none(), "a gradient for a frozen parameter");
        }
    }

    #[test]
    fn no_input_gradient_for_a_plain_input() {
        let x = Tensor::randn(0f32, 1.0, (2, 1, 6, 6), &Device::Cpu).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 1, 3, 3), &Device::Cpu).unwrap())
            .unwrap();
        let g = conv2d(&x, w.as_tensor(), None, Conv2dParams::default())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g.get(&x).is_none());
        assert!(g.get(w.as_tensor()).is_some());
    }
}
