//! The per-sample operations of a [`super::PiecewiseNet`]: forward (recording ReLU masks and
//! pool argmaxes into the sample's tape) and input gradient, through per-thread buffers.
//!
//! A convolution's input gradient is a GEMM and col2im when its output gradient is dense; when
//! at most a third of it is non-zero (a one-hot output gradient, a strided pool after it), the
//! sparse input gradient of [`super::sparse_grad`] instead: the work is proportional to the
//! non-zeros, and no col2im.

use gemm::Parallelism;

use super::blas::Elem;
use super::conv::{input_grad_image, Geom};
use super::maxpool::{pool_plane, Geometry as PoolGeom};
use super::piecewise_conv::{conv_forward, SLACK};
use super::sparse_grad::{self, taps_last, NONE};

/// A convolution's output gradient with at most one value in `SPARSE` non-zero takes the
/// sparse input gradient ([`sparse_grad`]). Its cost is a multiply-add per non-zero and weight
/// plus a pass over the output gradient; on the MNIST CNN's second convolution (32→64 channels,
/// 3x3, 14x14) it took half the dense GEMM + col2im's time at 18 % non-zero (what a 2x2 max-pool
/// and a ReLU after it leave) and broke even near 40 %.
pub(super) const SPARSE: usize = 3;

/// `fn $name` runs `self.$body(..)` (`#[inline(always)]`) compiled for AVX-512 or AVX2 (+FMA)
/// when the CPU has them, so that the element loops it inlines (interpolation, im2col, pooling,
/// masks, scatter) run 16 or 8 lanes wide; otherwise the baseline code.
macro_rules! simd {
    ($(#[$m:meta])* $name:ident = $body:ident($($arg:ident: $ty:ty),*)) => {
        $(#[$m])*
        pub(super) fn $name(&self, $($arg: $ty),*) -> bool {
            #[cfg(target_arch = "x86_64")]
            {
                /// # Safety
                /// The CPU must support AVX-512F, AVX2 and FMA; the body is safe code.
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn v4<T: Elem>(op: &Op<T>, $($arg: $ty),*) -> bool {
                    op.$body($($arg),*)
                }
                /// # Safety
                /// The CPU must support AVX2 and FMA; the body is safe code.
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3<T: Elem>(op: &Op<T>, $($arg: $ty),*) -> bool {
                    op.$body($($arg),*)
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked), and AVX2 and FMA with it.
                    return unsafe { v4(self, $($arg),*) };
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA (checked).
                    return unsafe { v3(self, $($arg),*) };
                }
            }
            self.$body($($arg),*)
        }
    };
}

/// A compiled operation.
#[derive(Debug, Clone)]
pub(super) enum Op<T> {
    /// `w: [co, c/groups, k, k]`; `wt`: the same values as `[co, k, k, c/groups]` (filled by
    /// [`Op::finish`]), for the sparse input gradient.
    Conv {
        w: Vec<T>,
        wt: Vec<T>,
        b: Option<Vec<T>>,
        g: Geom,
    },
    Linear {
        w: Vec<T>,
        b: Vec<T>,
        inp: usize,
        out: usize,
    },
    Scale {
        scale: Vec<T>,
        shift: Vec<T>,
        inner: usize,
    },
    Relu,
    Pool {
        g: PoolGeom,
        relu: bool,
    },
    Reshape,
}

impl<T> Op<T> {
    pub(super) fn affine(&self) -> bool {
        matches!(
            self,
            Op::Conv { .. } | Op::Linear { .. } | Op::Scale { .. } | Op::Reshape
        )
    }
}

impl<T: Elem> Op<T> {
    /// Derived data, once the weights are final.
    pub(super) fn finish(&mut self) {
        if let Op::Conv { w, wt, g, .. } = self {
            *wt = taps_last(g, w);
        }
    }

    /// Whether [`Op::add_backward`] handles this op.
    pub(super) fn fused_sum(&self) -> bool {
        matches!(self, Op::Relu | Op::Pool { .. })
    }

    /// `acc += weight · (this op's input gradient)` from the output gradient `g` of one sample,
    /// for a ReLU (masked) or a pool (scattered to the argmaxes): integrated gradients' weighted
    /// sum at the first nonlinearity, without an input-sized gradient per sample.
    pub(super) fn add_backward(
        &self,
        (len_in, len_out): (usize, usize),
        g: &[T],
        tape: &[u32],
        weight: T,
        acc: &mut [T],
    ) {
        match self {
            Op::Relu => {
                for ((a, &v), &m) in acc[..len_in].iter_mut().zip(g).zip(&tape[..len_in]) {
                    if m != 0 {
                        *a += weight * v;
                    }
                }
            }
            Op::Pool { g: pg, .. } => {
                let (pin, pout) = (pg.h * pg.w, pg.oh * pg.ow);
                for ((d, gy), at) in acc[..len_in]
                    .chunks_mut(pin)
                    .zip(g[..len_out].chunks(pout))
                    .zip(tape[..len_out].chunks(pout))
                {
                    for (&v, &i) in gy.iter().zip(at) {
                        if i != NONE {
                            d[i as usize] += weight * v;
                        }
                    }
                }
            }
            _ => unreachable!("add_backward of an op without fused_sum"),
        }
    }

    /// Scratch values one sample needs besides the two activation buffers (which need
    /// [`SLACK`] values past the largest activation).
    pub(super) fn scratch_len(&self) -> usize {
        match self {
            Op::Conv { g, .. } => {
                let sparse = g.c * g.h * g.w + sparse_grad::dense_work_len(g);
                (g.c * g.k * g.k * g.oh * g.ow + SLACK).max(sparse)
            }
            _ => 0,
        }
    }

    /// Index scratch one sample needs (the sparse convolution input gradient's channel lists).
    pub(super) fn index_len(&self) -> usize {
        match self {
            Op::Conv { g, .. } => sparse_grad::dense_index_len(g),
            _ => 0,
        }
    }
    simd!(
        /// This op on one sample (`lens`: values in and out, its record in `tape`) from `a` (in
        /// place, returns false) or into `b` (returns true).
        forward = forward_body(lens: (usize, usize), a: &mut [T], b: &mut [T], cols: &mut [T], tape: &mut [u32], par: Parallelism)
    );
    simd!(
        /// The input gradient of this op for one sample from the output gradient in `a` (in
        /// place, returns false) or into `b` (returns true).
        backward = backward_body(lens: (usize, usize), a: &mut [T], b: &mut [T], work: (&mut [T], &mut [u32]), tape: &[u32], par: Parallelism)
    );

    simd!(
        /// A linear op over a few rows `x: [rows, inp]` into `y: [rows, out]` (overwritten):
        /// `y = x·wᵀ + b`, each output a dot product of a weight row, the sum then added to the
        /// bias (as the GEMM with the bias in its destination rounds). For one or two rows (a
        /// saliency map, integrated gradients' two ends): the weights are read once per row,
        /// with no packing and no thread hand-off. Returns true.
        linear_rows = linear_rows_body(x: &[T], y: &mut [T])
    );
    simd!(
        /// The input gradient of a linear op over a few rows: `dx = g·w` (`g: [rows, out]`, `dx:
        /// [rows, inp]` overwritten), skipping the weight rows whose gradient is zero (a ReLU
        /// after the op leaves about half of them). Returns true.
        linear_rows_grad = linear_rows_grad_body(g: &[T], dx: &mut [T])
    );

    #[inline(always)]
    fn linear_rows_body(&self, x: &[T], y: &mut [T]) -> bool {
        const L: usize = 16;
        let Op::Linear { w, b, inp, out } = self else {
            unreachable!("linear_rows on a linear op")
        };
        let (inp, out) = (*inp, *out);
        let full = inp - inp % (4 * L);
        for (xr, yr) in x.chunks_exact(inp).zip(y.chunks_exact_mut(out)) {
            for ((yj, row), &bj) in yr.iter_mut().zip(w.chunks_exact(inp)).zip(b) {
                // Four independent chains of fixed-size blocks: they unroll and stay in
                // registers.
                let mut acc = [[T::ZERO; L]; 4];
                for (xc, wc) in xr[..full]
                    .chunks_exact(4 * L)
                    .zip(row[..full].chunks_exact(4 * L))
                {
                    for (k, a) in acc.iter_mut().enumerate() {
                        let xs: &[T; L] = xc[k * L..(k + 1) * L].try_into().expect("a block");
                        let ws: &[T; L] = wc[k * L..(k + 1) * L].try_into().expect("a block");
                        for ((a, &xv), &wv) in a.iter_mut().zip(xs).zip(ws) {
                            *a = xv.mul_add(wv, *a);
                        }
                    }
                }
                let mut sum = T::ZERO;
                for (&xv, &wv) in xr[full..].iter().zip(&row[full..]) {
                    sum = xv.mul_add(wv, sum);
                }
                let [a0, a1, a2, a3] = acc;
                let mut lanes = T::ZERO;
                for k in 0..L {
                    lanes += (a0[k] + a1[k]) + (a2[k] + a3[k]);
                }
                *yj = bj + (lanes + sum);
            }
        }
        true
    }

    #[inline(always)]
    fn linear_rows_grad_body(&self, g: &[T], dx: &mut [T]) -> bool {
        let Op::Linear { w, inp, out, .. } = self else {
            unreachable!("linear_rows_grad on a linear op")
        };
        let (inp, out) = (*inp, *out);
        for (gr, dr) in g.chunks_exact(out).zip(dx.chunks_exact_mut(inp)) {
            dr.fill(T::ZERO);
            // Four live rows at a time: one pass over `dr` per four weight rows.
            let mut rows: [(T, &[T]); 4] = [(T::ZERO, &[]); 4];
            let mut k = 0;
            for (&v, row) in gr.iter().zip(w.chunks_exact(inp)) {
                if v == T::ZERO {
                    continue;
                }
                rows[k] = (v, row);
                k += 1;
                if k == 4 {
                    let [(g0, w0), (g1, w1), (g2, w2), (g3, w3)] = rows;
                    for ((((d, &a), &b), &c), &e) in dr.iter_mut().zip(w0).zip(w1).zip(w2).zip(w3) {
                        *d = g3.mul_add(e, g2.mul_add(c, g1.mul_add(b, g0.mul_add(a, *d))));
                    }
                    k = 0;
                }
            }
            for &(v, row) in &rows[..k] {
                for (d, &a) in dr.iter_mut().zip(row) {
                    *d = v.mul_add(a, *d);
                }
            }
        }
        true
    }

    #[inline(always)]
    fn forward_body(
        &self,
        (len_in, len_out): (usize, usize),
        a: &mut [T],
        b: &mut [T],
        cols: &mut [T],
        tape: &mut [u32],
        par: Parallelism,
    ) -> bool {
        match self {
            Op::Conv { w, b: bias, g, .. } => {
                // The model's own per-image convolution: the same GEMM, the same rounding; `a`
                // and `cols` carry the slack of the block patch copy.
                let cols = if g.identity() {
                    cols
                } else {
                    &mut cols[..g.gk() * g.groups * g.oh * g.ow + SLACK]
                };
                conv_forward(g, a, w, bias.as_deref(), cols, &mut b[..len_out], par);
                true
            }
            Op::Scale {
                scale,
                shift,
                inner,
            } => {
                for ((plane, &s), &t) in a[..len_in].chunks_mut(*inner).zip(scale).zip(shift) {
                    for v in plane {
                        *v = *v * s + t;
                    }
                }
                false
            }
            Op::Relu => {
                for (v, m) in a[..len_in].iter_mut().zip(&mut tape[..len_in]) {
                    let on = *v > T::ZERO;
                    *m = u32::from(on);
                    if !on {
                        *v = T::ZERO;
                    }
                }
                false
            }
            Op::Pool { g, relu } => {
                let (pin, pout) = (g.h * g.w, g.oh * g.ow);
                let at = &mut tape[..len_out];
                for ((plane, o), at) in a[..len_in]
                    .chunks(pin)
                    .zip(b[..len_out].chunks_mut(pout))
                    .zip(at.chunks_mut(pout))
                {
                    pool_plane(g, plane, o, Some(at));
                }
                if *relu {
                    for (v, i) in b[..len_out].iter_mut().zip(at.iter_mut()) {
                        if *v <= T::ZERO {
                            *v = T::ZERO;
                            *i = NONE;
                        }
                    }
                }
                true
            }
            Op::Linear { .. } => unreachable!("linear ops run over the batch"),
            Op::Reshape => false,
        }
    }

    #[inline(always)]
    fn backward_body(
        &self,
        (len_in, len_out): (usize, usize),
        a: &mut [T],
        b: &mut [T],
        (cols, idx): (&mut [T], &mut [u32]),
        tape: &[u32],
        par: Parallelism,
    ) -> bool {
        match self {
            Op::Conv { w, wt, g, .. } => {
                let (l, gk) = (g.oh * g.ow, g.gk());
                let dy = &a[..len_out];
                let nonzero = dy.iter().filter(|&&v| v != T::ZERO).count();
                if SPARSE * nonzero <= len_out {
                    let (dxt, work) = cols.split_at_mut(len_in);
                    sparse_grad::from_dense(g, wt, dy, b, dxt, work, idx);
                    return true;
                }
                let cols = if g.identity() {
                    cols
                } else {
                    &mut cols[..gk * g.groups * l]
                };
                input_grad_image(g, w, dy, cols, &mut b[..len_in], par);
                true
            }
            Op::Scale { scale, inner, .. } => {
                for (plane, &s) in a[..len_in].chunks_mut(*inner).zip(scale) {
                    for v in plane {
                        let x = *v;
                        *v = x * s;
                    }
                }
                false
            }
            Op::Relu => {
                for (v, &m) in a[..len_in].iter_mut().zip(&tape[..len_in]) {
                    if m == 0 {
                        *v = T::ZERO;
                    }
                }
                false
            }
            Op::Pool { g, .. } => {
                let (pin, pout) = (g.h * g.w, g.oh * g.ow);
                let dx = &mut b[..len_in];
                dx.fill(T::ZERO);
                for ((d, gy), at) in dx
                    .chunks_mut(pin)
                    .zip(a[..len_out].chunks(pout))
                    .zip(tape[..len_out].chunks(pout))
                {
                    for (&v, &i) in gy.iter().zip(at) {
                        if i != NONE {
                            d[i as usize] += v;
                        }
                    }
                }
                true
            }
            Op::Linear { .. } => unreachable!("linear ops run over the batch"),
            Op::Reshape => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sparse_grad::tests::naive_input_grad;
    use super::*;

    #[test]
    fn the_few_row_linear_kernels_equal_the_definition() {
        // Lengths off the 64-lane blocks and the 4-row groups; gradients with zeros.
        for (rows, inp, out) in [(1, 3136, 128), (2, 70, 7), (1, 5, 3), (2, 128, 10)] {
            let w: Vec<f64> = (0..out * inp)
                .map(|i| ((i * 37) % 23) as f64 / 8.0 - 1.4)
                .collect();
            let b: Vec<f64> = (0..out).map(|i| i as f64 * 0.25 - 1.0).collect();
            let op = Op::Linear {
                w: w.clone(),
                b: b.clone(),
                inp,
                out,
            };
            let x: Vec<f64> = (0..rows * inp)
                .map(|i| ((i * 13) % 11) as f64 / 4.0 - 1.2)
                .collect();
            let mut y = vec![f64::NAN; rows * out];
            assert!(op.linear_rows(&x, &mut y));
            for r in 0..rows {
                for j in 0..out {
                    let want: f64 = b[j]
                        + (0..inp)
                            .map(|i| x[r * inp + i] * w[j * inp + i])
                            .sum::<f64>();
                    let got = y[r * out + j];
                    assert!(
                        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                        "y[{r}, {j}] {got} vs {want}"
                    );
                }
            }
            let g: Vec<f64> = (0..rows * out)
                .map(|i| {
                    if i % 3 == 1 {
                        0.0
                    } else {
                        ((i * 7) % 5) as f64 - 2.0
                    }
                })
                .collect();
            let mut dx = vec![f64::NAN; rows * inp];
            assert!(op.linear_rows_grad(&g, &mut dx));
            for r in 0..rows {
                for i in 0..inp {
                    let want: f64 = (0..out).map(|j| g[r * out + j] * w[j * inp + i]).sum();
                    let got = dx[r * inp + i];
                    assert!(
                        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                        "dx[{r}, {i}] {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn sparse_and_dense_conv_input_gradients_equal_the_definition() {
        for (c, h, w, co, k, s, p, d, groups) in [
            (4, 9, 8, 6, 3, 1, 1, 1, 1),
            (4, 11, 10, 6, 2, 2, 1, 2, 2),
            (3, 7, 7, 5, 3, 2, 0, 1, 1),
            (2, 5, 6, 4, 1, 1, 0, 1, 2),
        ] {
            let g = Geom::new(&[1, c, h, w], &[co, c / groups, k, k], s, p, d, groups).unwrap();
            let wv: Vec<f64> = (0..co * (c / groups) * k * k)
                .map(|i| ((i * 37) % 17) as f64 / 8.0 - 1.0)
                .collect();
            let mut op = Op::Conv {
                w: wv.clone(),
                wt: Vec::new(),
                b: None,
                g,
            };
            op.finish();
            let (len_in, len_out) = (c * h * w, co * g.oh * g.ow);
            // Every 5th value (the sparse path) and every value (the GEMM + col2im path).
            for every in [5, 1] {
                let dy: Vec<f64> = (0..len_out)
                    .map(|i| {
                        if i % every == 0 {
                            ((i * 13) % 7) as f64 - 2.5
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let big = len_in.max(len_out);
                let mut a = dy.clone();
                a.resize(big, 0.0);
                let (mut b, mut cols) = (vec![0.0; big], vec![0.0; op.scratch_len()]);
                let mut idx = vec![0; op.index_len()];
                assert!(op.backward(
                    (len_in, len_out),
                    &mut a,
                    &mut b,
                    (&mut cols, &mut idx),
                    &[],
                    Parallelism::None
                ));
                let want = naive_input_grad(&g, &wv, &dy);
                for (i, (x, y)) in b[..len_in].iter().zip(&want).enumerate() {
                    assert!(
                        (x - y).abs() < 1e-12,
                        "{g:?} every {every}: dx[{i}] {x} vs {y}"
                    );
                }
            }
        }
    }
}
