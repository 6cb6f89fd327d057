//! The loops over time of the fused recurrent op (`recurrent.rs`), generic over f32 (training)
//! and f64 (gradient checks): per step one GEMM `[B, H] x [H, G*H]` for the hidden projection,
//! then one pass over the gates per batch row; the backward walks the steps in reverse with one
//! GEMM `[B, G*H] x [G*H, H]` per step for the hidden-state gradient, and computes the weight and
//! bias gradients over all steps at the end (one GEMM each). Batch rows are independent, so each
//! thread runs the loop over time for its own group of rows.
//!
//! Buffers are batch-major like the tensors: `xp`, `dxp`, `dhp: [B, T, G*H]`, `hs: [B, T, H]`,
//! `acts: [B, T, S]` with `S` the per-step values kept for the backward (LSTM `i, f, g, o, c`,
//! 5H; GRU `r, z, n, W_hn h + b_hn`, 4H; RNN none, the output is enough).

use ::gemm::Parallelism;
use candle_core::CpuStorage;
use rayon::prelude::*;

use super::blas::{matmul, Elem, Mat};
use super::math;

/// Which cell, with PyTorch's gate order in the rows of the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecurrentCell {
    /// `i, f, g, o`.
    Lstm,
    /// `r, z, n`, with `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`.
    Gru,
    /// Elman with tanh.
    Rnn,
}

impl RecurrentCell {
    /// Gates per step: the rows of the weights are `gates * hidden-size`.
    pub fn gates(self) -> usize {
        match self {
            RecurrentCell::Lstm => 4,
            RecurrentCell::Gru => 3,
            RecurrentCell::Rnn => 1,
        }
    }

    /// Values kept per step and batch row for the backward, in units of `H`.
    pub(super) fn kept(self) -> usize {
        match self {
            RecurrentCell::Lstm => 5,
            RecurrentCell::Gru => 4,
            RecurrentCell::Rnn => 0,
        }
    }
}

/// The element types of the fused op: [`Elem`] plus the gate non-linearities.
pub(super) trait Real:
    Elem + std::ops::Neg<Output = Self> + std::ops::Div<Output = Self>
{
    fn sigmoid(self) -> Self;
    fn tanh(self) -> Self;
    fn cpu(s: &CpuStorage) -> Option<&[Self]>;
    fn storage(v: Vec<Self>) -> CpuStorage;
}

impl Real for f32 {
    /// Through the branch-free, vectorisable `math::exp` (libm's `expf` is a scalar call).
    #[inline(always)]
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + math::exp(-self))
    }
    /// `sign(x) (1 - e) / (1 + e)` with `e = exp(-2|x|)`: no overflow, no branch.
    #[inline(always)]
    fn tanh(self) -> Self {
        let e = math::exp(-2.0 * self.abs());
        ((1.0 - e) / (1.0 + e)).copysign(self)
    }
    fn cpu(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F32(v)
    }
}

impl Real for f64 {
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn cpu(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F64(v)
    }
}

/// The sizes and direction of one layer-direction.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dims {
    pub cell: RecurrentCell,
    pub reverse: bool,
    pub b: usize,
    pub t: usize,
    pub h: usize,
}

impl Dims {
    fn gh(&self) -> usize {
        self.cell.gates() * self.h
    }

    fn s(&self) -> usize {
        self.cell.kept() * self.h
    }

    /// The time index of the `s`-th step.
    fn time(&self, s: usize) -> usize {
        if self.reverse {
            self.t - 1 - s
        } else {
            s
        }
    }

    /// The time index of the step before time `t` (the one whose state `t` reads), if any.
    fn prev(&self, t: usize) -> Option<usize> {
        if self.reverse {
            (t + 1 < self.t).then_some(t + 1)
        } else {
            t.checked_sub(1)
        }
    }
}

/// Row `read` (shared) and row `write` (exclusive, a different row) of width `w` in `buf`.
fn read_write<T>(buf: &mut [T], w: usize, read: usize, write: usize) -> (&[T], &mut [T]) {
    debug_assert_ne!(read, write);
    if read < write {
        let (lo, hi) = buf.split_at_mut(write * w);
        (&lo[read * w..(read + 1) * w], &mut hi[..w])
    } else {
        let (lo, hi) = buf.split_at_mut(read * w);
        (&hi[..w], &mut lo[write * w..(write + 1) * w])
    }
}

/// The forward over all steps: the hidden states `hs: [B, T, H]` (time order) and the kept
/// activations `acts: [B, T, S]`. `xp: [B, T, G*H]` holds the input projections with `b_ih`,
/// `w_hh: [G*H, H]`, `b_hh: [G*H]` (all contiguous).
///
/// The batch rows are independent: each thread runs the whole loop over time for its own group
/// of rows (single-threaded GEMMs, no synchronisation per step); a single group (one row, or one
/// thread) parallelises inside its GEMMs instead.
pub(super) fn forward<T: Real>(d: Dims, xp: &[T], w_hh: &[T], b_hh: &[T]) -> (Vec<T>, Vec<T>) {
    let (b, t, h, gh, s) = (d.b, d.t, d.h, d.gh(), d.s());
    let mut hs = vec![T::ZERO; b * t * h];
    // (At least one value per batch row, so that the zipped chunks below have `b` rows.)
    let aw = (t * s).max(1);
    let mut acts = vec![T::ZERO; b * aw];
    // W_hhᵀ as a row-major [H, G*H] copy: gemm transposes a row-major product, and with this
    // layout its left operand (W_hh) is column-major already, so it is not packed at every step.
    let mut w_t = vec![T::ZERO; h * gh];
    for (g, row) in w_hh[..gh * h].chunks_exact(h).enumerate() {
        for (k, &v) in row.iter().enumerate() {
            w_t[k * gh + g] = v;
        }
    }
    let (rows, par) = groups(b);
    hs.par_chunks_mut(rows * t * h)
        .zip(acts.par_chunks_mut(rows * aw))
        .zip(xp[..b * t * gh].par_chunks(rows * t * gh))
        .for_each(|((hs, acts), xp)| {
            let d = Dims {
                b: hs.len() / (t * h),
                ..d
            };
            forward_rows(d, xp, &w_t, b_hh, hs, acts, par);
        });
    (hs, acts)
}

/// Batch rows per group (one group per thread, at most one per row) and the parallelism of the
/// groups' GEMMs.
fn groups(b: usize) -> (usize, Parallelism) {
    let n = rayon::current_num_threads().clamp(1, b.max(1));
    let rows = b.div_ceil(n).max(1);
    let par = if b.div_ceil(rows) > 1 {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    };
    (rows, par)
}

/// [`forward`] for one group of `d.b` rows, into its `hs` and `acts` rows.
#[allow(clippy::too_many_arguments)]
fn forward_rows<T: Real>(
    d: Dims,
    xp: &[T],
    w_t: &[T],
    b_hh: &[T],
    hs: &mut [T],
    acts: &mut [T],
    par: Parallelism,
) {
    let (b, t, h, gh, s) = (d.b, d.t, d.h, d.gh(), d.s());
    let aw = (t * s).max(1);
    let mut hp = vec![T::ZERO; b * gh];
    let zeros = vec![T::ZERO; h];
    for step in 0..t {
        let ti = d.time(step);
        let prev = d.prev(ti);
        // hp = b_hh + h_prev · W_hhᵀ (h_prev = 0 at the first step).
        for row in hp.chunks_exact_mut(gh) {
            row.copy_from_slice(&b_hh[..gh]);
        }
        if let Some(p) = prev {
            matmul(
                b,
                gh,
                h,
                &mut hp,
                Mat {
                    data: &hs[p * h..],
                    rs: t * h,
                    cs: 1,
                },
                Mat::rows(w_t, gh),
                true,
                par,
            );
        }
        hs.chunks_mut(t * h)
            .zip(acts.chunks_mut(aw))
            .zip(hp.chunks(gh))
            .enumerate()
            .for_each(|(bi, ((hrow, arow), hprow))| {
                let x = &xp[(bi * t + ti) * gh..][..gh];
                match d.cell {
                    RecurrentCell::Lstm => {
                        let (c_prev, a) = match prev {
                            Some(p) => {
                                let (r, w) = read_write(arow, s, p, ti);
                                (&r[4 * h..], w)
                            }
                            None => (&zeros[..], &mut arow[ti * s..(ti + 1) * s]),
                        };
                        let out = &mut hrow[ti * h..(ti + 1) * h];
                        lstm_step_v(h, x, hprow, c_prev, a, out);
                    }
                    RecurrentCell::Gru => {
                        let (h_prev, out) = match prev {
                            Some(p) => read_write(hrow, h, p, ti),
                            None => (&zeros[..], &mut hrow[ti * h..(ti + 1) * h]),
                        };
                        let a = &mut arow[ti * s..(ti + 1) * s];
                        gru_step_v(h, x, hprow, h_prev, a, out);
                    }
                    RecurrentCell::Rnn => {
                        let out = &mut hrow[ti * h..(ti + 1) * h];
                        rnn_step_v(x, hprow, out);
                    }
                }
            });
    }
}

/// One LSTM step for one batch row: `x`, `p` the input and hidden projections `[4H]`, `c_prev`
/// the previous cell state `[H]`; writes `a = [i, f, g, o, c]` and `out = h`.
#[inline(always)]
fn lstm_step<T: Real>(h: usize, x: &[T], p: &[T], c_prev: &[T], a: &mut [T], out: &mut [T]) {
    let (xi, xf, xg, xo) = quarters(&x[..4 * h], h);
    let (pi, pf, pg, po) = quarters(&p[..4 * h], h);
    let (c_prev, out) = (&c_prev[..h], &mut out[..h]);
    let (ai, rest) = a[..5 * h].split_at_mut(h);
    let (af, rest) = rest.split_at_mut(h);
    let (ag, rest) = rest.split_at_mut(h);
    let (ao, ac) = rest.split_at_mut(h);
    for j in 0..h {
        let i = (xi[j] + pi[j]).sigmoid();
        let f = (xf[j] + pf[j]).sigmoid();
        let g = (xg[j] + pg[j]).tanh();
        let o = (xo[j] + po[j]).sigmoid();
        let c = f * c_prev[j] + i * g;
        ai[j] = i;
        af[j] = f;
        ag[j] = g;
        ao[j] = o;
        ac[j] = c;
        out[j] = o * c.tanh();
    }
}

/// The four `[h]` quarters of `v: [4h]` (three for a GRU's `[3h]`: the last is empty).
#[inline(always)]
fn quarters<T>(v: &[T], h: usize) -> (&[T], &[T], &[T], &[T]) {
    let (a, rest) = v.split_at(h);
    let (b, rest) = rest.split_at(h);
    let (c, d) = rest.split_at(h);
    (a, b, c, d)
}

/// One GRU step for one batch row: writes `a = [r, z, n, W_hn h + b_hn]` and `out = h`.
#[inline(always)]
fn gru_step<T: Real>(h: usize, x: &[T], p: &[T], h_prev: &[T], a: &mut [T], out: &mut [T]) {
    let (xr, xz, xn, _) = quarters(&x[..3 * h], h);
    let (pr, pz, pn, _) = quarters(&p[..3 * h], h);
    let (h_prev, out) = (&h_prev[..h], &mut out[..h]);
    let (ar, rest) = a[..4 * h].split_at_mut(h);
    let (az, rest) = rest.split_at_mut(h);
    let (an, ahn) = rest.split_at_mut(h);
    for j in 0..h {
        let r = (xr[j] + pr[j]).sigmoid();
        let z = (xz[j] + pz[j]).sigmoid();
        let hn = pn[j];
        let n = (xn[j] + r * hn).tanh();
        ar[j] = r;
        az[j] = z;
        an[j] = n;
        ahn[j] = hn;
        out[j] = n + z * (h_prev[j] - n);
    }
}

/// The CPU's vector level, checked once: 2 AVX-512F (+AVX2, FMA), 1 AVX2 + FMA, 0 neither.
#[cfg(target_arch = "x86_64")]
fn level() -> u8 {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<u8> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if avx2 && is_x86_feature_detected!("avx512f") {
            2
        } else {
            u8::from(avx2)
        }
    })
}

/// `fn $name` runs `$body` (an `#[inline(always)]` gate loop) compiled for AVX-512 or AVX2 (+FMA)
/// when the CPU has them, so that the loop and its `exp` run 16 or 8 lanes wide; otherwise the
/// baseline code. (A closure passed to one `#[target_feature]` function is not inlined into it.)
macro_rules! vectorised {
    ($name:ident = $body:ident($($arg:ident: $ty:ty),*)) => {
        fn $name<T: Real>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                /// # Safety
                /// The CPU must support AVX-512F, AVX2 and FMA; the body is safe code.
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn v4<T: Real>($($arg: $ty),*) {
                    $body($($arg),*)
                }
                /// # Safety
                /// The CPU must support AVX2 and FMA; the body is safe code.
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3<T: Real>($($arg: $ty),*) {
                    $body($($arg),*)
                }
                match level() {
                    // SAFETY: the CPU has AVX-512F, AVX2 and FMA (checked by `level`).
                    2 => return unsafe { v4($($arg),*) },
                    // SAFETY: the CPU has AVX2 and FMA (checked by `level`).
                    1 => return unsafe { v3($($arg),*) },
                    _ => {}
                }
            }
            $body($($arg),*)
        }
    };
}

vectorised!(lstm_step_v = lstm_step(h: usize, x: &[T], p: &[T], c_prev: &[T], a: &mut [T], out: &mut [T]));
vectorised!(gru_step_v = gru_step(h: usize, x: &[T], p: &[T], h_prev: &[T], a: &mut [T], out: &mut [T]));
vectorised!(rnn_step_v = rnn_step(x: &[T], p: &[T], out: &mut [T]));
vectorised!(lstm_step_back_v = lstm_step_back(h: usize, dy: &[T], a: &[T], c_prev: &[T], ch: &[T], cc: &mut [T], dx: &mut [T]));
vectorised!(gru_step_back_v = gru_step_back(h: usize, dy: &[T], a: &[T], h_prev: &[T], ch: &mut [T], dx: &mut [T], dhp: &mut [T]));
vectorised!(rnn_step_back_v = rnn_step_back(dy: &[T], ch: &[T], hs: &[T], dx: &mut [T]));

/// One Elman step for one batch row: `out = tanh(x + p)`.
#[inline(always)]
fn rnn_step<T: Real>(x: &[T], p: &[T], out: &mut [T]) {
    for ((o, &a), &p) in out.iter_mut().zip(x).zip(p) {
        *o = (a + p).tanh();
    }
}

/// One Elman step back for one batch row: `dx = (dy + ch) (1 - h²)`.
#[inline(always)]
fn rnn_step_back<T: Real>(dy: &[T], ch: &[T], hs: &[T], dx: &mut [T]) {
    for (((d, &y), &c), &o) in dx.iter_mut().zip(dy).zip(ch).zip(hs) {
        *d = (y + c) * (T::ONE - o * o);
    }
}

/// The gradients of one layer-direction from `dy = ∂L/∂hs: [B, T, H]`: `(dxp, dw_hh, db_hh)`,
/// with `dxp: [B, T, G*H]` the gradient of the input projections (and so of `b_ih`).
pub(super) fn backward<T: Real>(
    d: Dims,
    dy: &[T],
    hs: &[T],
    acts: &[T],
    w_hh: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (b, t, h, gh, s) = (d.b, d.t, d.h, d.gh(), d.s());
    let gru = d.cell == RecurrentCell::Gru;
    let mut dxp = vec![T::ZERO; b * t * gh];
    // The hidden projections' gradient differs from the input projections' for the GRU only
    // (one unused value per batch row for the others, so that the zipped chunks have `b` rows).
    let dw_gru = if gru { t * gh } else { 1 };
    let mut dhp_gru = vec![T::ZERO; b * dw_gru];
    let aw = (t * s).max(1);
    // Each group of batch rows walks back through time on its own thread, as in `forward`.
    let (rows, par) = groups(b);
    dxp.par_chunks_mut(rows * t * gh)
        .zip(dhp_gru.par_chunks_mut(rows * dw_gru))
        .zip(dy[..b * t * h].par_chunks(rows * t * h))
        .zip(hs[..b * t * h].par_chunks(rows * t * h))
        .zip(acts[..b * aw].par_chunks(rows * aw))
        .for_each(|((((dxp, dhp), dy), hs), acts)| {
            let d = Dims {
                b: dy.len() / (t * h),
                ..d
            };
            backward_rows(d, dy, hs, acts, w_hh, dxp, dhp, par);
        });
    let dhp: &[T] = if gru { &dhp_gru } else { &dxp };
    // dW_hh = Σ_steps dhp_tᵀ · h_prev(t): one GEMM over all B·T rows, h_prev = 0 at the first step.
    let mut h_prev = vec![T::ZERO; b * t * h];
    h_prev
        .par_chunks_mut(t * h)
        .zip(hs.par_chunks(t * h))
        .for_each(|(dst, src)| {
            for ti in 0..t {
                if let Some(p) = d.prev(ti) {
                    dst[ti * h..(ti + 1) * h].copy_from_slice(&src[p * h..(p + 1) * h]);
                }
            }
        });
    let rows = b * t;
    let mut dw = vec![T::ZERO; gh * h];
    matmul(
        gh,
        h,
        rows,
        &mut dw,
        Mat::rows_t(dhp, gh),
        Mat::rows(&h_prev, h),
        false,
        Parallelism::Rayon(0),
    );
    // db_hh = 1ᵀ · dhp.
    let ones = vec![T::ONE; rows];
    let mut db = vec![T::ZERO; gh];
    matmul(
        1,
        gh,
        rows,
        &mut db,
        Mat::rows(&ones, rows),
        Mat::rows(dhp, gh),
        false,
        Parallelism::Rayon(0),
    );
    (dxp, dw, db)
}

/// The loop back through time of [`backward`] for one group of `d.b` rows: their `dxp` (and
/// the GRU's `dhp`) rows.
#[allow(clippy::too_many_arguments)]
fn backward_rows<T: Real>(
    d: Dims,
    dy: &[T],
    hs: &[T],
    acts: &[T],
    w_hh: &[T],
    dxp: &mut [T],
    dhp_gru: &mut [T],
    par: Parallelism,
) {
    let (b, t, h, gh, s) = (d.b, d.t, d.h, d.gh(), d.s());
    let gru = d.cell == RecurrentCell::Gru;
    let dw_gru = if gru { t * gh } else { 1 };
    let mut carry_h = vec![T::ZERO; b * h];
    let mut carry_c = vec![T::ZERO; b * h];
    let zeros = vec![T::ZERO; h];
    for step in (0..t).rev() {
        let ti = d.time(step);
        let prev = d.prev(ti);
        dxp.chunks_mut(t * gh)
            .zip(carry_h.chunks_mut(h))
            .zip(carry_c.chunks_mut(h))
            .zip(dhp_gru.chunks_mut(dw_gru))
            .enumerate()
            .for_each(|(bi, (((dx, ch), cc), dhp))| {
                let at = |ti: usize| &acts[(bi * t + ti) * s..][..s];
                let dyr = &dy[(bi * t + ti) * h..][..h];
                let dx = &mut dx[ti * gh..(ti + 1) * gh];
                match d.cell {
                    RecurrentCell::Lstm => {
                        let c_prev = prev.map_or(&zeros[..], |p| &at(p)[4 * h..]);
                        lstm_step_back_v(h, dyr, at(ti), c_prev, ch, cc, dx);
                    }
                    RecurrentCell::Gru => {
                        let h_prev = prev.map_or(&zeros[..], |p| &hs[(bi * t + p) * h..][..h]);
                        let dhp = &mut dhp[ti * gh..(ti + 1) * gh];
                        gru_step_back_v(h, dyr, at(ti), h_prev, ch, dx, dhp);
                    }
                    RecurrentCell::Rnn => {
                        let hr = &hs[(bi * t + ti) * h..][..h];
                        rnn_step_back_v(dyr, ch, hr, dx);
                    }
                }
            });
        // ∂L/∂h_prev (+)= dhp_t · W_hh.
        if prev.is_some() {
            let dhp: &[T] = if gru { dhp_gru } else { dxp };
            matmul(
                b,
                h,
                gh,
                &mut carry_h,
                Mat {
                    data: &dhp[ti * gh..],
                    rs: t * gh,
                    cs: 1,
                },
                Mat::rows(w_hh, h),
                gru,
                par,
            );
        }
    }
}

/// One LSTM step back for one batch row. `ch`: in, `∂L/∂h` from the later steps; `cc`: in
/// `∂L/∂c` from the later steps, out `∂L/∂c_prev`. Writes the gate pre-activation gradients `dx`.
#[inline(always)]
fn lstm_step_back<T: Real>(
    h: usize,
    dy: &[T],
    a: &[T],
    c_prev: &[T],
    ch: &[T],
    cc: &mut [T],
    dx: &mut [T],
) {
    let (dy, ch, cc, c_prev) = (&dy[..h], &ch[..h], &mut cc[..h], &c_prev[..h]);
    let (ai, rest) = a[..5 * h].split_at(h);
    let (af, rest) = rest.split_at(h);
    let (ag, rest) = rest.split_at(h);
    let (ao, ac) = rest.split_at(h);
    let (di, rest) = dx[..4 * h].split_at_mut(h);
    let (df, rest) = rest.split_at_mut(h);
    let (dg, d_o) = rest.split_at_mut(h);
    let one = T::ONE;
    for j in 0..h {
        let (i, f, g, o) = (ai[j], af[j], ag[j], ao[j]);
        let tc = ac[j].tanh();
        let dh = dy[j] + ch[j];
        let dc = cc[j] + dh * o * (one - tc * tc);
        let cp = c_prev[j];
        di[j] = dc * g * i * (one - i);
        df[j] = dc * cp * f * (one - f);
        dg[j] = dc * i * (one - g * g);
        d_o[j] = dh * tc * o * (one - o);
        cc[j] = dc * f;
    }
}

/// One GRU step back for one batch row. `ch`: in `∂L/∂h` from the later steps, out the direct
/// part of `∂L/∂h_prev` (`z ⊙ ∂L/∂h`; the GEMM adds the rest). Writes the input projections'
/// gradient `dx` and the hidden projections' `dhp` (they differ in the `n` gate by `r`).
#[inline(always)]
fn gru_step_back<T: Real>(
    h: usize,
    dy: &[T],
    a: &[T],
    h_prev: &[T],
    ch: &mut [T],
    dx: &mut [T],
    dhp: &mut [T],
) {
    let (dy, ch, h_prev) = (&dy[..h], &mut ch[..h], &h_prev[..h]);
    let (ar, rest) = a[..4 * h].split_at(h);
    let (az, rest) = rest.split_at(h);
    let (an, ahn) = rest.split_at(h);
    let (dxr, rest) = dx[..3 * h].split_at_mut(h);
    let (dxz, dxn) = rest.split_at_mut(h);
    let (dhr, rest) = dhp[..3 * h].split_at_mut(h);
    let (dhz, dhn) = rest.split_at_mut(h);
    let one = T::ONE;
    for j in 0..h {
        let (r, z, n, hn) = (ar[j], az[j], an[j], ahn[j]);
        let hp = h_prev[j];
        let dh = dy[j] + ch[j];
        let dn = dh * (one - z) * (one - n * n);
        let dr = dn * hn * r * (one - r);
        let dz = dh * (hp - n) * z * (one - z);
        dxr[j] = dr;
        dxz[j] = dz;
        dxn[j] = dn;
        dhr[j] = dr;
        dhz[j] = dz;
        dhn[j] = dn * r;
        ch[j] = dh * z;
    }
}
