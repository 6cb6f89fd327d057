//! 2-D convolution (optionally with bias) as one candle custom op, with its backward pass.
//!
//! Per image, `im2col` writes the patches as a `[C·K·K, OH·OW]` matrix (row `(c·K + ky)·K + kx`,
//! column `oy·OW + ox`) into a per-thread buffer that stays in cache, and one GEMM per group gives
//! the output plane block `y[n] = W · cols` directly in NCHW order. Images run in parallel (rayon);
//! with fewer images than threads the GEMM itself is parallel instead.
//!
//! Backward:
//! Each gradient is computed only when its operand needs one (`Tensor::track_op`: a `Var` or
//! the result of a tracked op); explanations differentiate the input through frozen weights.
//! - weight: `dW = Σ_n dy[n] · cols[n]ᵀ`, accumulated over a fixed partition of the batch into at
//!   most [`WEIGHT_CHUNKS`] chunks (one partial sum each, run in parallel) and the partials added
//!   in chunk order, so the result does not depend on thread scheduling;
//! - input (only when the input needs a gradient): `dcols = Wᵀ · dy[n]`, then `col2im`;
//! - bias: per-channel sums, in a fixed order.
//!
//! 1x1 convolutions with stride 1 and no padding skip `im2col` (the image is its own column matrix).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use std::sync::{Arc, Mutex};

use gemm::Parallelism;

use super::blas::{inner_parallelism, matmul, Elem, Mat};
use super::buffer::{par_chunks, par_chunks_init};
use super::maxpool::{pool_plane, unpool_plane, Geometry as PoolGeom};

/// Planes per rayon task in the per-plane passes (one plane is only ~100-700 elements).
const PLANES_PER_TASK: usize = 32;

/// The batch is split into at most this many chunks for the weight gradient.
pub const WEIGHT_CHUNKS: usize = 8;

/// Shapes of one convolution (PyTorch semantics, square kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        x: &[usize],
        w: &[usize],
        stride: usize,
        padding: usize,
        dilation: usize,
        groups: usize,
    ) -> Result<Geom> {
        let &[n, c, h, wd] = x else {
            candle_core::bail!("conv2d expects input [N, C, H, W], got {x:?}")
        };
        let &[co, cg, kh, kw] = w else {
            candle_core::bail!("conv2d weight must be [C_out, C_in/groups, K, K], got {w:?}")
        };
        if groups == 0 || kh != kw || cg * groups != c || co % groups != 0 {
            candle_core::bail!(
                "conv2d: weight {w:?} does not fit input {x:?} with {groups} groups (square kernels only)"
            );
        }
        let span = dilation * (kh.max(1) - 1) + 1;
        if kh == 0
            || stride == 0
            || dilation == 0
            || h + 2 * padding < span
            || wd + 2 * padding < span
        {
            candle_core::bail!(
                "conv2d: kernel {kh}, stride {stride}, padding {padding}, dilation {dilation} do not fit input {x:?}"
            );
        }
        Ok(Geom {
            n,
            c,
            h,
            w: wd,
            co,
            k: kh,
            stride,
            padding,
            dilation,
            groups,
            oh: (h + 2 * padding - span) / stride + 1,
            ow: (wd + 2 * padding - span) / stride + 1,
        })
    }

    fn l(&self) -> usize {
        self.oh * self.ow
    }
    fn kk(&self) -> usize {
        self.k * self.k
    }
    fn cg(&self) -> usize {
        self.c / self.groups
    }
    fn cog(&self) -> usize {
        self.co / self.groups
    }
    /// Rows of one group's column matrix = columns of its weight matrix.
    pub(crate) fn gk(&self) -> usize {
        self.cg() * self.kk()
    }
    fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    fn out_len(&self) -> usize {
        self.co * self.l()
    }
    fn cols_len(&self) -> usize {
        self.c * self.kk() * self.l()
    }
    pub(crate) fn identity(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.padding == 0
    }

    /// The `ox` range whose input column `ox·s + off` lies inside the row.
    fn valid_ox(&self, off: isize) -> (usize, usize) {
        let s = self.stride as isize;
        let lo = if off < 0 { (-off + s - 1) / s } else { 0 };
        let last = self.w as isize - 1 - off;
        let hi = if last < 0 { 0 } else { last / s + 1 };
        let lo = (lo as usize).min(self.ow);
        (lo, (hi as usize).clamp(lo, self.ow))
    }
}

/// Patches of one image `x: [C, H, W]` into `cols: [C·K·K, OH·OW]`. The loops of
/// a per-row helper written out: through a closure the per-row work (11-26 elements for LeNet)
/// was a call each, 12 % of a training step.
#[inline(always)]
pub fn im2col<T: Elem>(g: &Geom, x: &[T], cols: &mut [T]) {
    let (l, ow, s) = (g.l(), g.ow, g.stride);
    for c in 0..g.c {
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = ((c * g.k + ky) * g.k + kx) * l;
                let off = (kx * g.dilation) as isize - g.padding as isize;
                let (lo, hi) = g.valid_ox(off);
                for (oy, d) in cols[row..row + l].chunks_exact_mut(ow).enumerate() {
                    let iy = (oy * s + ky * g.dilation) as isize - g.padding as isize;
                    if iy < 0 || iy >= g.h as isize {
                        d.fill(T::ZERO);
                        continue;
                    }
                    let src = (c * g.h + iy as usize) * g.w;
                    d[..lo].fill(T::ZERO);
                    d[hi..].fill(T::ZERO);
                    let start = (src as isize + (lo * s) as isize + off) as usize;
                    if s == 1 {
                        d[lo..hi].copy_from_slice(&x[start..start + (hi - lo)]);
                    } else {
                        for (j, v) in d[lo..hi].iter_mut().enumerate() {
                            *v = x[start + j * s];
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column matrix of one image back onto `x: [C, H, W]` (the adjoint of [`im2col`]).
#[inline(always)]
pub fn col2im<T: Elem>(g: &Geom, cols: &[T], x: &mut [T]) {
    let (l, ow, s) = (g.l(), g.ow, g.stride);
    for c in 0..g.c {
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = ((c * g.k + ky) * g.k + kx) * l;
                let off = (kx * g.dilation) as isize - g.padding as isize;
                let (lo, hi) = g.valid_ox(off);
                for (oy, d) in cols[row..row + l].chunks_exact(ow).enumerate() {
                    let iy = (oy * s + ky * g.dilation) as isize - g.padding as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let src = (c * g.h + iy as usize) * g.w;
                    let start = (src as isize + (lo * s) as isize + off) as usize;
                    let seg = &d[lo..hi];
                    if s == 1 {
                        for (d, v) in x[start..start + seg.len()].iter_mut().zip(seg) {
                            *d += *v;
                        }
                    } else {
                        for (j, v) in seg.iter().enumerate() {
                            x[start + j * s] += *v;
                        }
                    }
                }
            }
        }
    }
}

fn contiguous<'a, T>(data: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("conv2d kernel: {what} must be contiguous"),
    }
}

/// One image: `yn = conv(xn, w) + b`, then `max(yn, 0)` with `relu`. The piecewise net calls
/// it too, so that its forward rounds exactly as the model's.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn conv_image<T: Elem>(
    g: &Geom,
    xn: &[T],
    w: &[T],
    b: Option<&[T]>,
    relu: bool,
    cols: &mut [T],
    yn: &mut [T],
    par: Parallelism,
) {
    let (l, gk, cog) = (g.l(), g.gk(), g.cog());
    let src: &[T] = if g.identity() {
        xn
    } else {
        im2col(g, xn, cols);
        cols
    };
    if let Some(b) = b {
        for (plane, &bo) in yn.chunks_mut(l).zip(b) {
            plane.fill(bo);
        }
    }
    for grp in 0..g.groups {
        matmul(
            cog,
            l,
            gk,
            &mut yn[grp * cog * l..],
            Mat::rows(&w[grp * cog * gk..], gk),
            Mat::rows(&src[grp * gk * l..], l),
            b.is_some(),
            par,
        );
    }
    if relu {
        for v in yn.iter_mut() {
            *v = if *v > T::ZERO { *v } else { T::ZERO };
        }
    }
}

/// Forward: `y = conv(x, w) + b`, then `max(y, 0)` with `relu`.
fn forward<T: Elem>(g: &Geom, x: &[T], w: &[T], b: Option<&[T]>, relu: bool) -> Vec<T> {
    let par = inner_parallelism(g.n);
    let cols_len = if g.identity() { 0 } else { g.cols_len() };
    par_chunks_init(
        g.n * g.out_len(),
        g.out_len(),
        1,
        || vec![T::ZERO; cols_len],
        |cols, n, yn| {
            let xn = &x[n * g.in_len()..(n + 1) * g.in_len()];
            conv_image(g, xn, w, b, relu, cols, yn, par)
        },
    )
}

/// Forward with a fused max-pool: each image's convolution output stays in a per-thread buffer and
/// only the pooled planes (and their argmax indices) are written out.
fn forward_pooled<T: Elem>(
    g: &Geom,
    pg: &PoolGeom,
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    relu: bool,
) -> (Vec<T>, Vec<u32>) {
    let per = pg.oh * pg.ow;
    let mut y = vec![T::ZERO; g.n * g.co * per];
    let mut at = vec![0u32; y.len()];
    let par = inner_parallelism(g.n);
    let cols_len = if g.identity() { 0 } else { g.cols_len() };
    y.par_chunks_mut(g.co * per)
        .zip(at.par_chunks_mut(g.co * per))
        .zip(x.par_chunks(g.in_len()))
        .for_each_init(
            || (vec![T::ZERO; cols_len], vec![T::ZERO; g.out_len()]),
            |(cols, full), ((yn, atn), xn)| {
                conv_image(g, xn, w, b, relu, cols, full, par);
                for ((plane, o), a) in full
                    .chunks(g.l())
                    .zip(yn.chunks_mut(per))
                    .zip(atn.chunks_mut(per))
                {
                    pool_plane(pg, plane, o, Some(a));
                }
            },
        );
    (y, at)
}

/// Weight gradient `Σ_n dy[n] · cols[n]ᵀ`, summed in a fixed order.
fn weight_grad<T: Elem>(g: &Geom, x: &[T], dy: &[T]) -> Vec<T> {
    let (l, gk, cog) = (g.l(), g.gk(), g.cog());
    let wlen = g.co * gk;
    let chunks = g.n.clamp(1, WEIGHT_CHUNKS);
    let per = g.n.div_ceil(chunks);
    let par = inner_parallelism(chunks);
    let cols_len = if g.identity() { 0 } else { g.cols_len() };
    let partials: Vec<Vec<T>> = (0..g.n.div_ceil(per))
        .into_par_iter()
        .map(|ci| {
            let mut dw = vec![T::ZERO; wlen];
            let mut cols = vec![T::ZERO; cols_len];
            for n in ci * per..((ci + 1) * per).min(g.n) {
                let xn = &x[n * g.in_len()..(n + 1) * g.in_len()];
                let dyn_ = &dy[n * g.out_len()..(n + 1) * g.out_len()];
                let src: &[T] = if g.identity() {
                    xn
                } else {
                    im2col(g, xn, &mut cols);
                    &cols
                };
                for grp in 0..g.groups {
                    matmul(
                        cog,
                        gk,
                        l,
                        &mut dw[grp * cog * gk..],
                        Mat::rows(&dyn_[grp * cog * l..], l),
                        Mat::rows_t(&src[grp * gk * l..], l),
                        true,
                        par,
                    );
                }
            }
            dw
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut dw = parts.next().unwrap_or_else(|| vec![T::ZERO; wlen]);
    for p in parts {
        for (a, b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
    dw
}

/// The input gradient of one image: `dx = col2im(Wᵀ · dy)` (the GEMM writes `dx` directly for a
/// 1x1 stride-1 unpadded conv). `cols` holds at least [`Geom::cols_len`] values unless the conv is
/// an identity; `dx` is overwritten.
pub(crate) fn input_grad_image<T: Elem>(
    g: &Geom,
    w: &[T],
    dy: &[T],
    cols: &mut [T],
    dx: &mut [T],
    par: Parallelism,
) {
    let (l, gk, cog) = (g.l(), g.gk(), g.cog());
    let dst: &mut [T] = if g.identity() { &mut *dx } else { &mut *cols };
    for grp in 0..g.groups {
        matmul(
            gk,
            l,
            cog,
            &mut dst[grp * gk * l..],
            Mat::rows_t(&w[grp * cog * gk..], gk),
            Mat::rows(&dy[grp * cog * l..], l),
            false,
            par,
        );
    }
    if !g.identity() {
        dx.fill(T::ZERO);
        col2im(g, cols, dx);
    }
}

/// Input gradient: `col2im(Wᵀ · dy[n])` per image.
fn input_grad<T: Elem>(g: &Geom, w: &[T], dy: &[T]) -> Vec<T> {
    let par = inner_parallelism(g.n);
    let cols_len = if g.identity() { 0 } else { g.cols_len() };
    par_chunks_init(
        g.n * g.in_len(),
        g.in_len(),
        1,
        || vec![T::ZERO; cols_len],
        |cols, n, dxn| {
            let dyn_ = &dy[n * g.out_len()..(n + 1) * g.out_len()];
            input_grad_image(g, w, dyn_, cols, dxn, par);
        },
    )
}

/// Bias gradient: per output channel, the sum of `dy` over images and positions.
fn bias_grad<T: Elem>(g: &Geom, dy: &[T]) -> Vec<T> {
    let l = g.l();
    (0..g.co)
        .into_par_iter()
        .map(|o| {
            let mut s = T::ZERO;
            for n in 0..g.n {
                let plane = &dy[(n * g.co + o) * l..][..l];
                // Sixteen lanes (one AVX-512 or two AVX2 registers), then combined pairwise:
                // a fixed order, and vectorised.
                let mut acc = [T::ZERO; 16];
                let mut it = plane.chunks_exact(16);
                for c in &mut it {
                    for j in 0..16 {
                        acc[j] += c[j];
                    }
                }
                for (j, &v) in it.remainder().iter().enumerate() {
                    acc[j] += v;
                }
                let mut width = 16;
                while width > 1 {
                    width /= 2;
                    for j in 0..width {
                        let upper = acc[j + width];
                        acc[j] += upper;
                    }
                }
                s += acc[0];
            }
            s
        })
        .collect()
}

/// The forward op; with `relu` the activation is fused (the ReLU layer after it is skipped).
struct ConvFwd {
    g: Geom,
    relu: bool,
    /// A max-pool fused after the (ReLU of the) convolution; the forward records its argmax.
    pool: Option<PoolGeom>,
    argmax: Mutex<Option<Arc<Vec<u32>>>>,
}
struct WeightGrad(Geom);
struct InputGrad(Geom);
struct BiasGrad(Geom);

impl ConvFwd {
    fn shape(&self) -> Shape {
        match &self.pool {
            Some(pg) => Shape::from((self.g.n, self.g.co, pg.oh, pg.ow)),
            None => Shape::from((self.g.n, self.g.co, self.g.oh, self.g.ow)),
        }
    }

    fn run<T: Elem>(&self, x: &[T], w: &[T], b: Option<&[T]>) -> Vec<T> {
        match &self.pool {
            None => forward(&self.g, x, w, b, self.relu),
            Some(pg) => {
                let (y, at) = forward_pooled(&self.g, pg, x, w, b, self.relu);
                *self.argmax.lock().expect("conv2d argmax lock") = Some(Arc::new(at));
                y
            }
        }
    }

    /// The gradient at the convolution's output (through the fused ReLU and max-pool, if any).
    fn dy(&self, res: &Tensor, grad: &Tensor) -> Result<Tensor> {
        if let Some(pg) = self.pool {
            let Some(argmax) = self.argmax.lock().expect("conv2d argmax lock").clone() else {
                candle_core::bail!("conv2d backward: the forward pass kept no argmax")
            };
            let op = Unpool {
                g: self.g,
                pg,
                argmax,
                relu: self.relu,
            };
            return res.contiguous()?.apply_op2_no_bwd(&grad.contiguous()?, &op);
        }
        if self.relu {
            super::activation::relu_backward(res, grad)
        } else {
            grad.contiguous()
        }
    }

    /// The input and weight gradients, each only when its operand needs one: the data fed to
    /// the first layer of a training step needs no input gradient (col2im and its GEMMs are
    /// skipped), while an explanation's input (a `Var`) through frozen inference weights needs
    /// only the input gradient (the weight GEMMs are skipped).
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dw = if w.track_op() {
            Some(x.apply_op2_no_bwd(dy, &WeightGrad(self.g))?)
        } else {
            None
        };
        let dx = if x.track_op() {
            Some(w.apply_op2_no_bwd(dy, &InputGrad(self.g))?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

impl CustomOp2 for ConvFwd {
    fn name(&self) -> &'static str {
        "lepton-conv2d"
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
            _ => candle_core::bail!("conv2d: input and weight must both be f32 or f64"),
        };
        Ok((out, self.shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.grads(x, w, &self.dy(res, grad)?)
    }
}

impl CustomOp3 for ConvFwd {
    fn name(&self) -> &'static str {
        "lepton-conv2d-bias"
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
            _ => candle_core::bail!("conv2d: input, weight and bias must all be f32 or f64"),
        };
        Ok((out, self.shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = self.dy(res, grad)?;
        let (dx, dw) = self.grads(x, w, &dy)?;
        let db = if b.track_op() {
            Some(dy.apply_op1_no_bwd(&BiasGrad(self.g))?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

/// The gradient at the convolution's output from the gradient at the fused max-pool's output:
/// each pooled gradient goes to its window's argmax (only where the pooled value is positive when
/// a ReLU is fused). Inputs: the pooled output and its gradient.
struct Unpool {
    g: Geom,
    pg: PoolGeom,
    argmax: Arc<Vec<u32>>,
    relu: bool,
}

impl Unpool {
    fn run<T: Elem>(&self, y: &[T], gy: &[T]) -> Vec<T> {
        let (l, per) = (self.g.l(), self.pg.oh * self.pg.ow);
        // Thousands of small planes: split them into a few tasks, not one each.
        par_chunks(self.g.n * self.g.out_len(), l, PLANES_PER_TASK, |p, d| {
            let (ys, gs) = (&y[p * per..(p + 1) * per], &gy[p * per..(p + 1) * per]);
            let at = &self.argmax[p * per..(p + 1) * per];
            if self.relu {
                for ((&yv, &gv), &i) in ys.iter().zip(gs).zip(at) {
                    if yv > T::ZERO {
                        d[i as usize] += gv;
                    }
                }
            } else {
                unpool_plane(gs, at, d);
            }
        })
    }
}

impl CustomOp2 for Unpool {
    fn name(&self) -> &'static str {
        "lepton-conv2d-unpool"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match (s1, s2) {
            (CpuStorage::F32(y), CpuStorage::F32(g)) => CpuStorage::F32(self.run(
                contiguous(y, l1, "pooled output")?,
                contiguous(g, l2, "gradient")?,
            )),
            (CpuStorage::F64(y), CpuStorage::F64(g)) => CpuStorage::F64(self.run(
                contiguous(y, l1, "pooled output")?,
                contiguous(g, l2, "gradient")?,
            )),
            _ => candle_core::bail!("conv2d max-pool backward: mismatched dtypes"),
        };
        Ok((
            out,
            Shape::from((self.g.n, self.g.co, self.g.oh, self.g.ow)),
        ))
    }
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "lepton-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(dy)) => CpuStorage::F32(weight_grad(
                g,
                contiguous(x, l1, "input")?,
                contiguous(dy, l2, "output gradient")?,
            )),
            (CpuStorage::F64(x), CpuStorage::F64(dy)) => CpuStorage::F64(weight_grad(
                g,
                contiguous(x, l1, "input")?,
                contiguous(dy, l2, "output gradient")?,
            )),
            _ => candle_core::bail!("conv2d weight gradient: mismatched dtypes"),
        };
        Ok((out, Shape::from((g.co, g.cg(), g.k, g.k))))
    }
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "lepton-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let out = match (s1, s2) {
            (CpuStorage::F32(w), CpuStorage::F32(dy)) => CpuStorage::F32(input_grad(
                g,
                contiguous(w, l1, "weight")?,
                contiguous(dy, l2, "output gradient")?,
            )),
            (CpuStorage::F64(w), CpuStorage::F64(dy)) => CpuStorage::F64(input_grad(
                g,
                contiguous(w, l1, "weight")?,
                contiguous(dy, l2, "output gradient")?,
            )),
            _ => candle_core::bail!("conv2d input gradient: mismatched dtypes"),
        };
        Ok((out, Shape::from((g.n, g.c, g.h, g.w))))
    }
}

impl CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        "lepton-conv2d-bias-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let out = match s {
            CpuStorage::F32(dy) => CpuStorage::F32(bias_grad(g, contiguous(dy, l, "gradient")?)),
            CpuStorage::F64(dy) => CpuStorage::F64(bias_grad(g, contiguous(dy, l, "gradient")?)),
            _ => candle_core::bail!("conv2d bias gradient: only f32 and f64 are supported"),
        };
        Ok((out, Shape::from(g.co)))
    }
}

/// `conv2d(x, w) + b`, followed by `max(·, 0)` with `relu` and by a max-pool `(kernel, stride,
/// padding)` with `pool`; see the module docs.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    geom: Geom,
    relu: bool,
    pool: Option<(usize, usize, usize)>,
) -> Result<Tensor> {
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let pool = match pool {
        Some((k, s, p)) => Some(PoolGeom::new(
            &[geom.n, geom.co, geom.oh, geom.ow],
            k,
            s,
            p,
        )?),
        None => None,
    };
    let op = ConvFwd {
        g: geom,
        relu,
        pool,
        argmax: Mutex::new(None),
    };
    match b {
        None => x.apply_op2(&w, op),
        Some(b) => {
            if b.dims() != [geom.co] {
                candle_core::bail!(
                    "conv2d: bias has shape {:?}, expected [{}]",
                    b.dims(),
                    geom.co
                );
            }
            x.apply_op3(&w, &b.contiguous()?, op)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> == <x, col2im(c)> for random x, c, on a strided, padded, dilated window.
        let g = Geom::new(&[1, 2, 7, 6], &[3, 2, 3, 3], 2, 1, 2, 1).unwrap();
        let x: Vec<f64> = (0..g.in_len())
            .map(|i| ((i * 37) % 11) as f64 - 5.0)
            .collect();
        let c: Vec<f64> = (0..g.cols_len())
            .map(|i| ((i * 53) % 13) as f64 - 6.0)
            .collect();
        let mut cols = vec![0.0; g.cols_len()];
        im2col(&g, &x, &mut cols);
        let mut back = vec![0.0; g.in_len()];
        col2im(&g, &c, &mut back);
        let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
        assert_eq!(lhs, rhs);
    }
}
