//! The loops over time of the fused recurrent op (`recurrent.rs`), generic over f32 (training)
//! and f64 (gradient checks): per step one GEMM `[B, H] x [H, G*H]` for the hidden projection,
//! then one pass over the gates per batch row; the backward walks the steps in reverse with one
//! GEMM `[B, G*H] x [G*H, H]` per step for the hidden-state gradient, and computes the weight and
//! bias gradients over all steps at the end (one GEMM each).
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

    /// Batch rows per parallel task: about 4,096 gate values each.
    fn rows_per_task(&self) -> usize {
        (4096 / self.gh().max(1)).max(1)
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
pub(super) fn forward<T: Real>(d: Dims, xp: &[T], w_hh: &[T], b_hh: &[T]) -> (Vec<T>, Vec<T>) {
    let (b, t, h, gh, s) = (d.b, d.t, d.h, d.gh(), d.s());
    let mut hs = vec![T::ZERO; b * t * h];
    // (At least one value per batch row, so that the zipped chunks below have `b` rows.)
    let aw = (t * s).max(1);
    let mut acts = vec![T::ZERO; b * aw];
    let mut hp = vec![T::ZERO; b * gh];
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
                Mat::rows_t(w_hh, h),
                true,
                Parallelism::Rayon(0),
            );
        }
        hs.par_chunks_mut(t * h)
            .zip(acts.par_chunks_mut(aw))
            .zip(hp.par_chunks(gh))
            .enumerate()
            .with_min_len(d.rows_per_task())
            .for_each(|(bi, ((hrow, arow), hprow))| {
                let x = &xp[(bi * t + ti) * gh..][..gh];
                match d.cell {
                    RecurrentCell::Lstm => {
                        let (c_prev, a) = match prev {
                            Some(p) => {
                                let (r, w) = read_write(arow, s, p, ti);
                                (Some(&r[4 * h..]), w)
                            }
                            None => (None, &mut arow[ti * s..(ti + 1) * s]),
                        };
                        lstm_step(h, x, hprow, c_prev, a, &mut hrow[ti * h..(ti + 1) * h]);
                    }
                    RecurrentCell::Gru => {
                        let (h_prev, out) = match prev {
                            Some(p) => {
                                let (r, w) = read_write(hrow, h, p, ti);
                                (Some(r), w)
                            }
                            None => (None, &mut hrow[ti * h..(ti + 1) * h]),
                        };
                        gru_step(h, x, hprow, h_prev, &mut arow[ti * s..(ti + 1) * s], out);
                    }
                    RecurrentCell::Rnn => {
                        for ((o, &a), &p) in hrow[ti * h..(ti + 1) * h].iter_mut().zip(x).zip(hprow)
                        {
                            *o = (a + p).tanh();
                        }
                    }
                }
            });
    }
    (hs, acts)
}

/// One LSTM step for one batch row: `x`, `p` the input and hidden projections `[4H]`, `c_prev`
/// the previous cell state (none: zero); writes `a = [i, f, g, o, c]` and `out = h`.
#[inline(always)]
fn lstm_step<T: Real>(
    h: usize,
    x: &[T],
    p: &[T],
    c_prev: Option<&[T]>,
    a: &mut [T],
    out: &mut [T],
) {
    let (x, p, out) = (&x[..4 * h], &p[..4 * h], &mut out[..h]);
    let (ai, rest) = a[..5 * h].split_at_mut(h);
    let (af, rest) = rest.split_at_mut(h);
    let (ag, rest) = rest.split_at_mut(h);
    let (ao, ac) = rest.split_at_mut(h);
    for j in 0..h {
        let i = (x[j] + p[j]).sigmoid();
        let f = (x[h + j] + p[h + j]).sigmoid();
        let g = (x[2 * h + j] + p[2 * h + j]).tanh();
        let o = (x[3 * h + j] + p[3 * h + j]).sigmoid();
        let cp = c_prev.map_or(T::ZERO, |c| c[j]);
        let c = f * cp + i * g;
        ai[j] = i;
        af[j] = f;
        ag[j] = g;
        ao[j] = o;
        ac[j] = c;
        out[j] = o * c.tanh();
    }
}

/// One GRU step for one batch row: writes `a = [r, z, n, W_hn h + b_hn]` and `out = h`.
#[inline(always)]
fn gru_step<T: Real>(h: usize, x: &[T], p: &[T], h_prev: Option<&[T]>, a: &mut [T], out: &mut [T]) {
    let (x, p, out) = (&x[..3 * h], &p[..3 * h], &mut out[..h]);
    let (ar, rest) = a[..4 * h].split_at_mut(h);
    let (az, rest) = rest.split_at_mut(h);
    let (an, ahn) = rest.split_at_mut(h);
    for j in 0..h {
        let r = (x[j] + p[j]).sigmoid();
        let z = (x[h + j] + p[h + j]).sigmoid();
        let hn = p[2 * h + j];
        let n = (x[2 * h + j] + r * hn).tanh();
        let hp = h_prev.map_or(T::ZERO, |v| v[j]);
        ar[j] = r;
        az[j] = z;
        an[j] = n;
        ahn[j] = hn;
        out[j] = n + z * (hp - n);
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
    let mut carry_h = vec![T::ZERO; b * h];
    let mut carry_c = vec![T::ZERO; b * h];
    for step in (0..t).rev() {
        let ti = d.time(step);
        let prev = d.prev(ti);
        dxp.par_chunks_mut(t * gh)
            .zip(carry_h.par_chunks_mut(h))
            .zip(carry_c.par_chunks_mut(h))
            .zip(dhp_gru.par_chunks_mut(dw_gru))
            .enumerate()
            .with_min_len(d.rows_per_task())
            .for_each(|(bi, (((dx, ch), cc), dhp))| {
                let at = |ti: usize| &acts[(bi * t + ti) * s..][..s];
                let dyr = &dy[(bi * t + ti) * h..][..h];
                let dx = &mut dx[ti * gh..(ti + 1) * gh];
                match d.cell {
                    RecurrentCell::Lstm => {
                        let c_prev = prev.map(|p| &at(p)[4 * h..]);
                        lstm_step_back(h, dyr, at(ti), c_prev, ch, cc, dx);
                    }
                    RecurrentCell::Gru => {
                        let h_prev = prev.map(|p| &hs[(bi * t + p) * h..][..h]);
                        let dhp = &mut dhp[ti * gh..(ti + 1) * gh];
                        gru_step_back(h, dyr, at(ti), h_prev, ch, dx, dhp);
                    }
                    RecurrentCell::Rnn => {
                        let hr = &hs[(bi * t + ti) * h..][..h];
                        for j in 0..h {
                            let g = dyr[j] + ch[j];
                            dx[j] = g * (T::ONE - hr[j] * hr[j]);
                        }
                    }
                }
            });
        // ∂L/∂h_prev (+)= dhp_t · W_hh.
        if prev.is_some() {
            let dhp: &[T] = if gru { &dhp_gru } else { &dxp };
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
                Parallelism::Rayon(0),
            );
        }
    }
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

/// One LSTM step back for one batch row. `ch`: in, `∂L/∂h` from the later steps; `cc`: in
/// `∂L/∂c` from the later steps, out `∂L/∂c_prev`. Writes the gate pre-activation gradients `dx`.
#[inline(always)]
fn lstm_step_back<T: Real>(
    h: usize,
    dy: &[T],
    a: &[T],
    c_prev: Option<&[T]>,
    ch: &[T],
    cc: &mut [T],
    dx: &mut [T],
) {
    let (dy, ch, cc) = (&dy[..h], &ch[..h], &mut cc[..h]);
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
        let cp = c_prev.map_or(T::ZERO, |c| c[j]);
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
    h_prev: Option<&[T]>,
    ch: &mut [T],
    dx: &mut [T],
    dhp: &mut [T],
) {
    let (dy, ch) = (&dy[..h], &mut ch[..h]);
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
        let hp = h_prev.map_or(T::ZERO, |v| v[j]);
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
