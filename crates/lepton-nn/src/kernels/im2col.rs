//! `im2col` / `col2im` as candle custom ops, each the other's backward, so a convolution written
//! as `W · im2col(x)` gets its gradients from candle's matmul backward. This replaces candle's
//! conv2d backward, which is slow and fails when the strided windows do not cover the input.
//!
//! `im2col`: `[N, C, H, W]` -> `[N, OH·OW, C·K·K]`: row `oy·OW + ox`, column `(c·K + ky)·K + kx`,
//! holding `x[n, c, oy·s - p + ky·d, ox·s - p + kx·d]` (zero outside the input). With this
//! layout the whole batch is one `[N·OH·OW, C·K·K]` matrix, so the convolution is a single large
//! GEMM instead of N small ones.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Convolution window geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
}

impl Window {
    pub fn out_hw(&self) -> (usize, usize) {
        let span = self.dilation * (self.k - 1) + 1;
        (
            (self.h + 2 * self.padding - span) / self.stride + 1,
            (self.w + 2 * self.padding - span) / self.stride + 1,
        )
    }

    fn check(&self) -> Result<()> {
        let span = self.dilation * (self.k - 1) + 1;
        if self.k == 0
            || self.stride == 0
            || self.dilation == 0
            || self.h + 2 * self.padding < span
            || self.w + 2 * self.padding < span
        {
            candle_core::bail!("conv window {self:?} does not fit the input");
        }
        Ok(())
    }

    /// Visit every (column-matrix index, input index) pair of one sample, in column-matrix order.
    #[inline]
    fn for_each(&self, mut f: impl FnMut(usize, usize)) {
        let (oh, ow) = self.out_hw();
        let ckk = self.c * self.k * self.k;
        for oy in 0..oh {
            for ox in 0..ow {
                let row = (oy * ow + ox) * ckk;
                for c in 0..self.c {
                    for ky in 0..self.k {
                        let iy = (oy * self.stride + ky * self.dilation) as isize
                            - self.padding as isize;
                        if iy < 0 || iy >= self.h as isize {
                            continue;
                        }
                        let base = (c * self.h + iy as usize) * self.w;
                        let col = row + (c * self.k + ky) * self.k;
                        for kx in 0..self.k {
                            let ix = (ox * self.stride + kx * self.dilation) as isize
                                - self.padding as isize;
                            if ix >= 0 && ix < self.w as isize {
                                f(col + kx, base + ix as usize);
                            }
                        }
                    }
                }
            }
        }
    }

    fn sample_in(&self) -> usize {
        self.c * self.h * self.w
    }

    fn sample_cols(&self) -> usize {
        let (oh, ow) = self.out_hw();
        self.c * self.k * self.k * oh * ow
    }
}

fn contiguous<'a, T>(data: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("im2col kernels need contiguous inputs"),
    }
}

struct Im2Col(Window);
struct Col2Im(Window);

fn im2col<T: Copy + Default + Send + Sync>(win: &Window, x: &[T], n: usize) -> Vec<T> {
    let mut cols = vec![T::default(); n * win.sample_cols()];
    cols.par_chunks_mut(win.sample_cols())
        .zip(x.par_chunks(win.sample_in()))
        .for_each(|(col, xs)| {
            win.for_each(|ci, xi| col[ci] = xs[xi]);
        });
    cols
}

fn col2im<T: Copy + Default + Send + Sync + std::ops::AddAssign>(
    win: &Window,
    cols: &[T],
    n: usize,
) -> Vec<T> {
    let mut x = vec![T::default(); n * win.sample_in()];
    x.par_chunks_mut(win.sample_in())
        .zip(cols.par_chunks(win.sample_cols()))
        .for_each(|(xs, col)| {
            win.for_each(|ci, xi| xs[xi] += col[ci]);
        });
    x
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "lepton-im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = self.0;
        let n = l.dims()[0];
        let (oh, ow) = w.out_hw();
        let shape = Shape::from((n, oh * ow, w.c * w.k * w.k));
        match s {
            CpuStorage::F32(v) => Ok((CpuStorage::F32(im2col(&w, contiguous(v, l)?, n)), shape)),
            CpuStorage::F64(v) => Ok((CpuStorage::F64(im2col(&w, contiguous(v, l)?, n)), shape)),
            _ => candle_core::bail!("im2col: only f32 and f64 are supported"),
        }
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "lepton-col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let w = self.0;
        let n = l.dims()[0];
        let shape = Shape::from((n, w.c, w.h, w.w));
        match s {
            CpuStorage::F32(v) => Ok((CpuStorage::F32(col2im(&w, contiguous(v, l)?, n)), shape)),
            CpuStorage::F64(v) => Ok((CpuStorage::F64(col2im(&w, contiguous(v, l)?, n)), shape)),
            _ => candle_core::bail!("col2im: only f32 and f64 are supported"),
        }
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.contiguous()?.apply_op1(Im2Col(self.0))?))
    }
}

/// `[N, C, H, W]` -> `[N, OH·OW, C·K·K]` patches.
pub fn unfold(x: &Tensor, win: Window) -> Result<Tensor> {
    win.check()?;
    let &[_, c, h, w] = x.dims() else {
        candle_core::bail!("im2col expects [N, C, H, W], got {:?}", x.dims())
    };
    if (c, h, w) != (win.c, win.h, win.w) {
        candle_core::bail!(
            "im2col: input {:?} does not match the window {win:?}",
            x.dims()
        );
    }
    x.contiguous()?.apply_op1(Im2Col(win))
}
