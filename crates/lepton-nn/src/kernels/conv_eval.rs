//! The eval-mode convolution block: `conv2d(x, w) + b`, then an eval batch norm's per-channel
//! `y·scale + shift`, then `max(·, 0)` and a max-pool when asked, in one pass per image with no
//! gradient (inference, validation, serving).
//!
//! Each image's convolution output stays in a per-thread buffer (the same im2col + GEMM as the
//! training kernel, [`conv_image`]); the affine map, the ReLU and the pool run on it while it is
//! in cache and only the block's output is written. Without this, the convolution wrote its
//! whole output to memory (zero-filled first) and the batch norm read it back, and the pool
//! recorded argmaxes no backward pass would read.
//!
//! Every value rounds exactly as the separate layers round it: the batch norm's `scale` and
//! `shift` are rounded to the element type as its kernel rounds them, and each value is
//! `y·scale + shift` (a multiply, then an add: no FMA), so the ReLU masks and pool choices are
//! the ones the unfused layers make.
//!
//! # Shapes
//! `x: [N, C, H, W]`, `w: [co, C/groups, K, K]`, `b`, `scale`, `shift`: `[co]`; the output is
//! `[N, co, OH, OW]`, or the pooled `[N, co, PH, PW]`.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::blas::{inner_parallelism, Elem};
use super::buffer::par_chunks_init;
use super::conv::{conv_image, Geom};
use super::maxpool::{pool_plane, Geometry as PoolGeom};

/// The op (see the module docs).
struct ConvEval {
    g: Geom,
    scale: Vec<f64>,
    shift: Vec<f64>,
    relu: bool,
    pool: Option<PoolGeom>,
}

impl ConvEval {
    fn shape(&self) -> Shape {
        match &self.pool {
            Some(pg) => Shape::from((self.g.n, self.g.co, pg.oh, pg.ow)),
            None => Shape::from((self.g.n, self.g.co, self.g.oh, self.g.ow)),
        }
    }

    fn run<T: Elem>(&self, x: &[T], w: &[T], b: Option<&[T]>) -> Vec<T> {
        let g = &self.g;
        let (l, in_len) = (g.oh * g.ow, g.c * g.h * g.w);
        let affine: Vec<(T, T)> = self
            .scale
            .iter()
            .zip(&self.shift)
            .map(|(&a, &s)| (T::from_f64(a), T::from_f64(s)))
            .collect();
        let par = inner_parallelism(g.n);
        let cols_len = if g.identity() { 0 } else { g.c * g.k * g.k * l };
        let out_len = match &self.pool {
            Some(pg) => g.co * pg.oh * pg.ow,
            None => g.co * l,
        };
        par_chunks_init(
            g.n * out_len,
            out_len,
            1,
            || {
                let full = if self.pool.is_some() { g.co * l } else { 0 };
                (vec![T::ZERO; cols_len], vec![T::ZERO; full])
            },
            |(cols, full), n, yn| {
                let xn = &x[n * in_len..(n + 1) * in_len];
                let conv_out: &mut [T] = if self.pool.is_some() { full } else { yn };
                conv_image(g, xn, w, b, false, cols, conv_out, par);
                for (plane, &(a, s)) in conv_out.chunks_mut(l).zip(&affine) {
                    for v in plane.iter_mut() {
                        *v = *v * a + s;
                    }
                    if self.relu {
                        for v in plane.iter_mut() {
                            *v = if *v > T::ZERO { *v } else { T::ZERO };
                        }
                    }
                }
                if let Some(pg) = &self.pool {
                    let pout = pg.oh * pg.ow;
                    for (plane, o) in full.chunks(l).zip(yn.chunks_mut(pout)) {
                        pool_plane(pg, plane, o, None);
                    }
                }
            },
        )
    }
}

fn contiguous<'a, T>(data: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("eval conv block: {what} must be contiguous"),
    }
}

impl CustomOp2 for ConvEval {
    fn name(&self) -> &'static str {
        "lepton-conv2d-eval"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(w)) => CpuStorage::F32(self.run(
                contiguous(x, l1, "input")?,
                contiguous(w, l2, "weight")?,
                None,
            )),
            (CpuStorage::F64(x), CpuStorage::F64(w)) => CpuStorage::F64(self.run(
                contiguous(x, l1, "input")?,
                contiguous(w, l2, "weight")?,
                None,
            )),
            _ => candle_core::bail!("eval conv block: input and weight must both be f32 or f64"),
        };
        Ok((out, self.shape()))
    }
}

impl CustomOp3 for ConvEval {
    fn name(&self) -> &'static str {
        "lepton-conv2d-eval"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) => {
                CpuStorage::F32(self.run(
                    contiguous(x, l1, "input")?,
                    contiguous(w, l2, "weight")?,
                    Some(contiguous(b, l3, "bias")?),
                ))
            }
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(b)) => {
                CpuStorage::F64(self.run(
                    contiguous(x, l1, "input")?,
                    contiguous(w, l2, "weight")?,
                    Some(contiguous(b, l3, "bias")?),
                ))
            }
            _ => {
                candle_core::bail!("eval conv block: input, weight and bias must all be f32 or f64")
            }
        };
        Ok((out, self.shape()))
    }
}

/// `conv2d(x, w) + b`, then `y·scale[c] + shift[c]` (an eval batch norm's
/// [`super::eval_affine`]), then `max(·, 0)` with `relu` and a max-pool `(kernel, stride,
/// padding)` with `pool`; no gradient. See the module docs.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_eval_block(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    p: super::Conv2dParams,
    scale: Vec<f64>,
    shift: Vec<f64>,
    relu: bool,
    pool: Option<(usize, usize, usize)>,
) -> Result<Tensor> {
    let g = Geom::new(
        x.dims(),
        w.dims(),
        p.stride,
        p.padding,
        p.dilation,
        p.groups,
    )?;
    if scale.len() != g.co || shift.len() != g.co {
        candle_core::bail!(
            "eval conv block: {} scales and {} shifts for {} output channels",
            scale.len(),
            shift.len(),
            g.co
        );
    }
    let pool = match pool {
        Some((k, s, pp)) => Some(PoolGeom::new(&[g.n, g.co, g.oh, g.ow], k, s, pp)?),
        None => None,
    };
    let op = ConvEval {
        g,
        scale,
        shift,
        relu,
        pool,
    };
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        None => x.apply_op2_no_bwd(&w, &op),
        Some(b) => {
            if b.dims() != [g.co] {
                candle_core::bail!(
                    "eval conv block: bias has shape {:?}, expected [{}]",
                    b.dims(),
                    g.co
                );
            }
            x.apply_op3_no_bwd(&w, &b.contiguous()?, &op)
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;
    use crate::kernels::{batch_norm, conv2d, eval_affine, Conv2dParams};

    /// The block equals the unfused kernels (convolution, then the eval batch norm with its
    /// ReLU and pool) bit for bit, in f32 and f64, with and without bias, pool and ReLU.
    #[test]
    fn equals_conv_then_eval_batch_norm_bit_for_bit() {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F64] {
            for (c, co, hw, k, pad, groups, bias, relu, pool) in [
                (1, 8, 12, 3, 1, 1, false, true, Some((2, 2, 0))),
                (4, 6, 9, 3, 1, 2, true, true, Some((3, 2, 1))),
                (3, 5, 7, 1, 0, 1, true, false, None),
                (2, 4, 8, 3, 0, 1, false, true, None),
            ] {
                let x = Tensor::randn(0f32, 1.0, (3, c, hw, hw), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let w = Tensor::randn(0f32, 0.5, (co, c / groups, k, k), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let b = bias.then(|| {
                    Tensor::randn(0f32, 0.5, co, &dev)
                        .unwrap()
                        .to_dtype(dtype)
                        .unwrap()
                });
                let host = |t: Tensor| t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
                let gamma = Tensor::randn(1f32, 0.3, co, &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let beta = Tensor::randn(0f32, 0.3, co, &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let mean = host(Tensor::randn(0f32, 0.3, co, &dev).unwrap());
                let var: Vec<f64> = host(Tensor::rand(0.5f32, 2.0, co, &dev).unwrap());
                let p = Conv2dParams {
                    stride: 1,
                    padding: pad,
                    dilation: 1,
                    groups,
                };
                let y = conv2d(&x, &w, b.as_ref(), p).unwrap();
                let want =
                    batch_norm(&y, &gamma, &beta, &mean, &var, 1e-5, false, relu, pool).unwrap();
                let (scale, shift) =
                    eval_affine(&host(gamma.clone()), &host(beta.clone()), &mean, &var, 1e-5);
                let got =
                    conv2d_eval_block(&x, &w, b.as_ref(), p, scale, shift, relu, pool).unwrap();
                assert_eq!(got.dims(), want.dims());
                let (got, want) = (
                    got.flatten_all().unwrap().to_dtype(DType::F64).unwrap(),
                    want.flatten_all().unwrap().to_dtype(DType::F64).unwrap(),
                );
                assert_eq!(
                    got.to_vec1::<f64>().unwrap(),
                    want.to_vec1::<f64>().unwrap(),
                    "{dtype:?} c {c} co {co} k {k} groups {groups} bias {bias} relu {relu} pool {pool:?}"
                );
            }
        }
    }
}
