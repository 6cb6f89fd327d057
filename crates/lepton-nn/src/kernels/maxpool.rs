//! Max pooling as a candle custom op, with a backward pass for any kernel, stride and padding
//! (candle's own max-pool backward only handles kernel == stride and spreads the gradient over
//! the window). The backward recomputes each window's argmax (first maximum, as PyTorch) and
//! routes the whole gradient there. Padding is -inf, as in PyTorch.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    p: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    fn new(dims: &[usize], k: usize, s: usize, p: usize) -> Result<Self> {
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

fn contiguous<'a, T>(data: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("max-pool2d kernel needs a contiguous input"),
    }
}

struct MaxPool(Geometry);

impl MaxPool {
    fn fwd<T: PartialOrd + Copy + Send + Sync + Default>(&self, x: &[T]) -> Vec<T> {
        let g = self.0;
        let mut out = vec![T::default(); g.n * g.c * g.oh * g.ow];
        out.par_chunks_mut(g.oh * g.ow)
            .zip(x.par_chunks(g.h * g.w))
            .for_each(|(o, plane)| {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        o[oy * g.ow + ox] = plane[g.argmax(plane, oy, ox)];
                    }
                }
            });
        out
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "lepton-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let shape = Shape::from((g.n, g.c, g.oh, g.ow));
        match s {
            CpuStorage::F32(v) => Ok((CpuStorage::F32(self.fwd(contiguous(v, l)?)), shape)),
            CpuStorage::F64(v) => Ok((CpuStorage::F64(self.fwd(contiguous(v, l)?)), shape)),
            _ => candle_core::bail!("max-pool2d: only f32 and f64 are supported"),
        }
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad_res.contiguous()?,
            &MaxPoolBackward(self.0),
        )?))
    }
}

struct MaxPoolBackward(Geometry);

impl MaxPoolBackward {
    fn bwd<T: PartialOrd + Copy + Send + Sync + Default + std::ops::AddAssign>(
        &self,
        x: &[T],
        gy: &[T],
    ) -> Vec<T> {
        let g = self.0;
        let mut gx = vec![T::default(); x.len()];
        gx.par_chunks_mut(g.h * g.w)
            .zip(x.par_chunks(g.h * g.w))
            .zip(gy.par_chunks(g.oh * g.ow))
            .for_each(|((gxp, plane), gyp)| {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        gxp[g.argmax(plane, oy, ox)] += gyp[oy * g.ow + ox];
                    }
                }
            });
        gx
    }
}

impl CustomOp2 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "lepton-max-pool2d-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let shape = Shape::from((g.n, g.c, g.h, g.w));
        match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(gy)) => Ok((
                CpuStorage::F32(self.bwd(contiguous(x, l1)?, contiguous(gy, l2)?)),
                shape,
            )),
            (CpuStorage::F64(x), CpuStorage::F64(gy)) => Ok((
                CpuStorage::F64(self.bwd(contiguous(x, l1)?, contiguous(gy, l2)?)),
                shape,
            )),
            _ => candle_core::bail!("max-pool2d backward: unsupported or mismatched dtypes"),
        }
    }
}

/// Max pooling over `[N, C, H, W]`: square window `kernel`, `stride`, -inf `padding`.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let g = Geometry::new(x.dims(), kernel, stride, padding)?;
    x.contiguous()?.apply_op1(MaxPool(g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_candle_forward_when_kernel_equals_stride() {
        let x = Tensor::randn(0f32, 1.0, (2, 3, 8, 6), &Device::Cpu).unwrap();
        let ours = max_pool2d(&x, 2, 2, 0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let theirs = x
            .max_pool2d(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(ours, theirs);
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
