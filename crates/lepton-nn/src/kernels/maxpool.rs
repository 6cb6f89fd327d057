//! Max pooling as a candle custom op, with a backward pass for any kernel, stride and padding
//! (candle's own max-pool backward only handles kernel == stride and spreads the gradient over
//! the window). The forward pass records each window's argmax (first maximum, as PyTorch) when the
//! input needs a gradient, and the backward routes the whole gradient there. Padding is -inf, as
//! in PyTorch.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::buffer::par_chunks;

/// Pooling window geometry over `[N, C, H, W]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    pub fn new(dims: &[usize], k: usize, s: usize, p: usize) -> Result<Self> {
        let &[n, c, h, w] = dims else {
            candle_core::bail!("max-pool2d expects [N, C, H, W], got {dims:?}")
        };
        if k == 0 || s == 0 || 2 * p > k || h + 2 * p < k || w + 2 * p < k {
            candle_core::bail!(
                "max-pool2d: kernel {k}, stride {s}, padding {p} do not fit input {dims:?} (padding is at most half the kernel)"
            );
        }
        Ok(Self {
            n,
            c,
            h,
            w,
            k,
            s,
            p,
            oh: (h + 2 * p - k) / s + 1,
            ow: (w + 2 * p - k) / s + 1,
        })
    }

    /// Index (within the plane) of the first maximum of output cell (oy, ox). Every window holds
    /// at least one input cell (padding is at most half the kernel).
    #[inline]
    fn argmax<T: PartialOrd + Copy>(&self, plane: &[T], oy: usize, ox: usize) -> usize {
        let (ylo, yhi) = self.span(oy, self.h);
        let (xlo, xhi) = self.span(ox, self.w);
        let mut at = ylo * self.w + xlo;
        let mut best = plane[at];
        for y in ylo..yhi {
            let row = &plane[y * self.w..y * self.w + xhi];
            for (x, &v) in row.iter().enumerate().skip(xlo) {
                if v > best {
                    best = v;
                    at = y * self.w + x;
                }
            }
        }
        at
    }

    /// The input range covered by output index `o` along an axis of length `len`.
    #[inline]
    fn span(&self, o: usize, len: usize) -> (usize, usize) {
        let start = (o * self.s) as isize - self.p as isize;
        (
            start.max(0) as usize,
            ((start + self.k as isize) as usize).min(len),
        )
    }
}

/// Max-pools one plane into `o`, recording each window's first argmax (index within the plane)
/// in `at` when given.
#[inline(always)]
pub fn pool_plane<T: PartialOrd + Copy>(
    g: &Geometry,
    plane: &[T],
    o: &mut [T],
    at: Option<&mut [u32]>,
) {
    let mut at = at;
    if g.k == 2 && g.s == 2 && g.p == 0 {
        // The common 2x2 window: rows sliced to their exact length up front (no bounds checks
        // in the loop) and compares as selects, so LLVM vectorises it with interleaved loads.
        let (w, ow) = (g.w, g.ow);
        for oy in 0..g.oh {
            let top = 2 * oy * w;
            let r0 = &plane[top..top + 2 * ow];
            let r1 = &plane[top + w..top + w + 2 * ow];
            let orow = &mut o[oy * ow..(oy + 1) * ow];
            match at.as_deref_mut() {
                Some(at) => {
                    let arow = &mut at[oy * ow..(oy + 1) * ow];
                    for (ox, ((a, b), (o, at))) in r0
                        .chunks_exact(2)
                        .zip(r1.chunks_exact(2))
                        .zip(orow.iter_mut().zip(arow.iter_mut()))
                        .enumerate()
                    {
                        let base = (top + 2 * ox) as u32;
                        let (mut best, mut off) = (a[0], 0u32);
                        for (v, cand) in [(a[1], 1), (b[0], w as u32), (b[1], w as u32 + 1)] {
                            let gt = v > best;
                            best = if gt { v } else { best };
                            off = if gt { cand } else { off };
                        }
                        *o = best;
                        *at = base + off;
                    }
                }
                None => {
                    for ((a, b), o) in r0
                        .chunks_exact(2)
                        .zip(r1.chunks_exact(2))
                        .zip(orow.iter_mut())
                    {
                        let mut best = a[0];
                        for v in [a[1], b[0], b[1]] {
                            best = if v > best { v } else { best };
                        }
                        *o = best;
                    }
                }
            }
        }
        return;
    }
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let i = g.argmax(plane, oy, ox);
            o[oy * g.ow + ox] = plane[i];
            if let Some(at) = at.as_deref_mut() {
                at[oy * g.ow + ox] = i as u32;
            }
        }
    }
}

/// Adds each output gradient of one plane to its window's argmax.
pub fn unpool_plane<T: Copy + std::ops::AddAssign>(gy: &[T], at: &[u32], gx: &mut [T]) {
    for (&v, &i) in gy.iter().zip(at) {
        gx[i as usize] += v;
    }
}

/// Planes per rayon task (one plane is only ~100-700 elements).
const PLANES_PER_TASK: usize = 32;

fn contiguous<'a, T>(data: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("max-pool2d kernel needs a contiguous input"),
    }
}

/// The forward op. With `keep` it records each output's argmax (index within its plane) for the
/// backward pass, which is then a plain scatter.
struct MaxPool {
    g: Geometry,
    keep: bool,
    argmax: Mutex<Option<Arc<Vec<u32>>>>,
}

impl MaxPool {
    fn fwd<T: PartialOrd + Copy + Send + Sync + Default>(&self, x: &[T]) -> Vec<T> {
        let g = self.g;
        let per = g.oh * g.ow;
        let mut out = vec![T::default(); g.n * g.c * per];
        let mut idx = vec![0u32; if self.keep { out.len() } else { 0 }];
        let run = |o: &mut [T], at: Option<&mut [u32]>, plane: &[T]| pool_plane(&g, plane, o, at);
        if self.keep {
            out.par_chunks_mut(per)
                .zip(idx.par_chunks_mut(per))
                .zip(x.par_chunks(g.h * g.w))
                .with_min_len(PLANES_PER_TASK)
                .for_each(|((o, at), plane)| run(o, Some(at), plane));
            *self.argmax.lock().expect("max-pool argmax lock") = Some(Arc::new(idx));
        } else {
            out.par_chunks_mut(per)
                .zip(x.par_chunks(g.h * g.w))
                .with_min_len(PLANES_PER_TASK)
                .for_each(|(o, plane)| run(o, None, plane));
        }
        out
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "lepton-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.g;
        let shape = Shape::from((g.n, g.c, g.oh, g.ow));
        match s {
            CpuStorage::F32(v) => Ok((CpuStorage::F32(self.fwd(contiguous(v, l)?)), shape)),
            CpuStorage::F64(v) => Ok((CpuStorage::F64(self.fwd(contiguous(v, l)?)), shape)),
            _ => candle_core::bail!("max-pool2d: only f32 and f64 are supported"),
        }
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let Some(argmax) = self.argmax.lock().expect("max-pool argmax lock").clone() else {
            candle_core::bail!("max-pool2d backward: the forward pass kept no argmax")
        };
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(
            &MaxPoolBackward { g: self.g, argmax },
        )?))
    }
}

/// Routes each output gradient to its window's argmax.
struct MaxPoolBackward {
    g: Geometry,
    argmax: Arc<Vec<u32>>,
}

impl MaxPoolBackward {
    fn bwd<T: Copy + Send + Sync + Default + std::ops::AddAssign>(&self, gy: &[T]) -> Vec<T> {
        let g = self.g;
        let per = g.oh * g.ow;
        par_chunks(
            g.n * g.c * g.h * g.w,
            g.h * g.w,
            PLANES_PER_TASK,
            |p, gxp| {
                let r = p * per..(p + 1) * per;
                unpool_plane(&gy[r.clone()], &self.argmax[r], gxp)
            },
        )
    }
}

impl CustomOp1 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "lepton-max-pool2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.g;
        let shape = Shape::from((g.n, g.c, g.h, g.w));
        match s {
            CpuStorage::F32(gy) => Ok((CpuStorage::F32(self.bwd(contiguous(gy, l)?)), shape)),
            CpuStorage::F64(gy) => Ok((CpuStorage::F64(self.bwd(contiguous(gy, l)?)), shape)),
            _ => candle_core::bail!("max-pool2d backward: only f32 and f64 are supported"),
        }
    }
}

/// The max-pool backward for a pool fused into another op: routes `gy` (`[N, C, OH, OW]`) to
/// the `argmax` positions of `g`'s input planes.
pub(crate) fn unpool(gy: &Tensor, g: Geometry, argmax: Arc<Vec<u32>>) -> Result<Tensor> {
    gy.contiguous()?
        .apply_op1_no_bwd(&MaxPoolBackward { g, argmax })
}

/// Max pooling over `[N, C, H, W]`: square window `kernel`, `stride`, -inf `padding`.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let g = Geometry::new(x.dims(), kernel, stride, padding)?;
    let x = x.contiguous()?;
    let op = MaxPool {
        g,
        keep: x.track_op(),
        argmax: Mutex::new(None),
    };
    if op.keep {
        x.apply_op1(op)
    } else {
        x.apply_op1_no_bwd(&op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::weighted_grads;
    use candle_core::Device;

    #[test]
    fn matches_candle_forward_when_kernel_equals_stride() {
        // Even and odd sizes (the fast 2x2 path drops the last row and column, as candle does).
        for (shape, k) in [((2, 3, 8, 6), 2), ((2, 3, 7, 9), 2), ((1, 2, 9, 7), 3)] {
            let x = Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap();
            let ours = max_pool2d(&x, k, k, 0)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let theirs = x
                .max_pool2d(k)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn backward_matches_candle_when_kernel_equals_stride() {
        let x = candle_core::Var::from_tensor(
            &Tensor::randn(0f32, 1.0, (3, 4, 9, 6), &Device::Cpu).unwrap(),
        )
        .unwrap();
        let r = Tensor::randn(0f32, 1.0, (3, 4, 3, 2), &Device::Cpu).unwrap();
        let grad = |y: Tensor| {
            let g = weighted_grads(&y, &r);
            g.get(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let ours = grad(max_pool2d(&x, 3, 3, 0).unwrap());
        // candle routes the gradient to the argmax too, but divided by the window size.
        let theirs = grad(x.max_pool2d(3).unwrap());
        assert_eq!(ours.iter().filter(|v| **v != 0.0).count(), 3 * 4 * 3 * 2);
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - 9.0 * b).abs() < 1e-5, "{a} vs 9 x {b}");
        }
    }

    #[test]
    fn padding_is_minus_infinity_and_gradient_goes_to_the_argmax() {
        // All-negative input: zero padding would win, -inf padding must not.
        let x = candle_core::Var::new(&[[[[-1.0f64, -2.0], [-3.0, -4.0]]]], &Device::Cpu).unwrap();
        let y = max_pool2d(x.as_tensor(), 2, 1, 1).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            vec![-1.0, -1.0, -2.0, -1.0, -1.0, -2.0, -3.0, -3.0, -4.0]
        );
        let g = y.sum_all().unwrap().backward().unwrap();
        let gx = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(gx, vec![4.0, 2.0, 2.0, 1.0]);
    }
}
