//! A convolution's input gradient from a sparse output gradient, for the piecewise net's
//! backward pass (explanations: no weight gradient).
//!
//! `dx[c, iy, ix] = Σ dy[o, oy, ox] · W[o, c, ky, kx]` over the taps that land there. With the
//! non-zero `dy` grouped by output position `(oy, ox)`, each position's weighted weight rows are
//! summed into `K·K·C/groups` values held in registers ([`axpy_rows`]: loads of the weights and
//! multiply-adds only), then added once to the `K·K` input positions the position touches, in a
//! channels-last buffer `dxt: [H·W, C]` transposed to `dx: [C, H, W]` at the end. The work is a
//! multiply-add per non-zero and weight, against `C·K·K` per output value for the dense
//! `Wᵀ·dy` GEMM and col2im.
//!
//! The entries come from a dense `dy` (a branch-free compaction per position: [`from_dense`]) or,
//! behind a max-pool, straight from the pool's argmaxes and output gradient, through the batch
//! norm's scale in between ([`from_pool`]): a counting sort of the live windows by position, no
//! conv-sized gradient at all. The sums round differently from the GEMM's (the gradient is
//! continuous: nothing downstream decides on it); the tests compare with the definition.

use super::blas::Elem;
use super::conv::Geom;
use super::maxpool::Geometry as PoolGeom;

/// An argmax that receives no gradient (the pooled value was ≤ 0 under a fused ReLU).
pub(super) const NONE: u32 = u32::MAX;

/// Values per register block of [`axpy_rows`]: six AVX-512 (twelve AVX2) vectors of f32, enough
/// independent multiply-add chains to hide their latency.
const BLOCK: usize = 96;

/// Lanes of [`axpy_rows`]' short-tail block (one AVX-512 vector of f32).
const TAIL: usize = 16;

/// `fn $name(..)` runs `$body(..)` compiled for AVX-512 or AVX2 + FMA when the CPU has them (the
/// loops it inlines then run 16 or 8 lanes wide, the multiply-adds fused), else the baseline.
macro_rules! dispatch {
    ($(#[$m:meta])* fn $name:ident <T> = $body:ident ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        pub(super) fn $name<T: Elem>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                /// # Safety
                /// The CPU must support AVX-512F, AVX2 and FMA; the body is safe code.
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn v4<T: Elem>($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                /// # Safety
                /// The CPU must support AVX2 and FMA; the body is safe code.
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3<T: Elem>($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked), and AVX2 and FMA with it.
                    return unsafe { v4($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA (checked).
                    return unsafe { v3($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// `T` values [`from_dense`] needs in `work` besides `dxt`.
pub(super) fn dense_work_len(g: &Geom) -> usize {
    g.k * g.k * (g.c / g.groups) + g.co / g.groups + 1
}

/// Indices [`from_dense`] needs.
pub(super) fn dense_index_len(g: &Geom) -> usize {
    g.co / g.groups + 1
}

/// `T` values [`from_pool`] needs in `work` besides `dxt`, for a pool `pg` after `g`.
pub(super) fn pool_work_len(g: &Geom, pg: &PoolGeom) -> usize {
    g.k * g.k * g.c + pg.c * pg.oh * pg.ow
}

/// Indices [`from_pool`] needs.
pub(super) fn pool_index_len(g: &Geom, pg: &PoolGeom) -> usize {
    g.oh * g.ow + 1 + pg.c * pg.oh * pg.ow
}

dispatch!(
    /// `dx: [C, H, W]` (overwritten) from the dense output gradient `dy: [co, OH, OW]`, with
    /// `wt: [co, K, K, C/groups]`; `dxt` holds `C·H·W` values, `work` [`dense_work_len`], `idx`
    /// [`dense_index_len`].
    fn from_dense<T> = from_dense_body(g: &Geom, wt: &[T], dy: &[T], dx: &mut [T], dxt: &mut [T], work: &mut [T], idx: &mut [u32]) -> ()
);

/// Per output position and group, the channels with a non-zero gradient (a branch-free
/// compaction), then [`add_position`].
#[inline(always)]
fn from_dense_body<T: Elem>(
    g: &Geom,
    wt: &[T],
    dy: &[T],
    dx: &mut [T],
    dxt: &mut [T],
    work: &mut [T],
    idx: &mut [u32],
) {
    let (l, cg, cog) = (g.oh * g.ow, g.c / g.groups, g.co / g.groups);
    let row = g.k * g.k * cg;
    let (acc, rest) = work.split_at_mut(row);
    let vals = &mut rest[..cog + 1];
    let idx = &mut idx[..cog + 1];
    let dxt = &mut dxt[..g.c * g.h * g.w];
    dxt.fill(T::ZERO);
    for grp in 0..g.groups {
        let (dyg, wg) = (
            &dy[grp * cog * l..(grp + 1) * cog * l],
            &wt[grp * cog * row..(grp + 1) * cog * row],
        );
        for pos in 0..l {
            let mut n = 0;
            for o in 0..cog {
                let v = dyg[o * l + pos];
                vals[n] = v;
                idx[n] = o as u32;
                n += usize::from(v != T::ZERO);
            }
            if n > 0 {
                axpy_rows(acc, wg, &vals[..n], &idx[..n]);
                add_position(g, pos, grp * cg, acc, dxt);
            }
        }
    }
    to_planes(g, dxt, dx);
}

dispatch!(
    /// `dx: [C, H, W]` (overwritten) of a convolution `g` (one group) followed by an optional
    /// per-channel `scale` and a max-pool `pg`, from the pool's output gradient `gy` and its
    /// argmaxes `at` (each an index within its plane, [`NONE`] for no gradient), with `wt: [co, K,
    /// K, C]`; `dxt` holds `C·H·W` values, `work` [`pool_work_len`], `idx` [`pool_index_len`].
    /// Returns false, touching nothing but `idx`, when more than one output value in `sparse`
    /// would be non-zero (the dense path is then faster).
    fn from_pool<T> = from_pool_body(g: &Geom, wt: &[T], scale: Option<&[T]>, pg: &PoolGeom, gy: &[T], at: &[u32], sparse: usize, dx: &mut [T], dxt: &mut [T], work: &mut [T], idx: &mut [u32]) -> bool
);

/// A counting sort of the live windows by the output position of their argmax, then
/// [`add_position`] per position.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn from_pool_body<T: Elem>(
    g: &Geom,
    wt: &[T],
    scale: Option<&[T]>,
    pg: &PoolGeom,
    gy: &[T],
    at: &[u32],
    sparse: usize,
    dx: &mut [T],
    dxt: &mut [T],
    work: &mut [T],
    idx: &mut [u32],
) -> bool {
    debug_assert_eq!(g.groups, 1, "from_pool: one group");
    let (l, pout, row) = (g.oh * g.ow, pg.oh * pg.ow, g.k * g.k * g.c);
    let cells = g.co * pout;
    let (gy, at) = (&gy[..cells], &at[..cells]);
    let (ends, ent) = idx.split_at_mut(l + 1);
    let ent = &mut ent[..cells];
    // `ends[p + 1]`: entries at position p, then (prefix sums) where position p's entries end.
    ends.fill(0);
    let mut live = 0;
    for (&v, &a) in gy.iter().zip(at) {
        if a != NONE && v != T::ZERO {
            ends[a as usize + 1] += 1;
            live += 1;
        }
    }
    if sparse * live > g.co * l {
        return false;
    }
    for p in 1..=l {
        ends[p] += ends[p - 1];
    }
    let (acc, rest) = work.split_at_mut(row);
    let vals = &mut rest[..cells];
    // Fill: `ends[p]` moves from the start of position p's entries to their end.
    for (o, (gyo, ato)) in gy.chunks_exact(pout).zip(at.chunks_exact(pout)).enumerate() {
        let s = scale.map_or(T::ONE, |s| s[o]);
        for (&v, &a) in gyo.iter().zip(ato) {
            if a != NONE && v != T::ZERO {
                let slot = &mut ends[a as usize];
                vals[*slot as usize] = v * s;
                ent[*slot as usize] = o as u32;
                *slot += 1;
            }
        }
    }
    let dxt = &mut dxt[..g.c * g.h * g.w];
    dxt.fill(T::ZERO);
    let mut start = 0;
    for (pos, &end) in ends[..l].iter().enumerate() {
        let end = end as usize;
        if end > start {
            axpy_rows(acc, wt, &vals[start..end], &ent[start..end]);
            add_position(g, pos, 0, acc, dxt);
        }
        start = end;
    }
    to_planes(g, dxt, dx);
    true
}

/// `acc = Σ_j vals[j] · rows[idx[j]]` (each row `acc.len()` long), a [`BLOCK`] of `acc` at a
/// time held in a local array (registers) across all `j`.
#[inline(always)]
fn axpy_rows<T: Elem>(acc: &mut [T], rows: &[T], vals: &[T], idx: &[u32]) {
    let len = acc.len();
    let full = len - len % BLOCK;
    for start in (0..full).step_by(BLOCK) {
        let mut r = [T::ZERO; BLOCK];
        for (&v, &o) in vals.iter().zip(idx) {
            let w: &[T; BLOCK] = rows[o as usize * len + start..][..BLOCK]
                .try_into()
                .expect("a whole block");
            for (r, &w) in r.iter_mut().zip(w) {
                *r = v.mul_add(w, *r);
            }
        }
        acc[start..full.min(start + BLOCK)].copy_from_slice(&r);
    }
    let t = len - full;
    if 0 < t && t <= TAIL {
        // A short tail (a 3x3 convolution of one input channel has rows of 9) as one fixed
        // block of `TAIL` lanes, reading past the row into the next one where there is one (the
        // extra lanes are dropped): registers instead of a scalar loop per entry.
        // The last row's entries go to `q`: `r` is only ever touched whole, so it stays in
        // registers.
        let (mut r, mut q) = ([T::ZERO; TAIL], [T::ZERO; TAIL]);
        for (&v, &o) in vals.iter().zip(idx) {
            let at = o as usize * len + full;
            if at + TAIL <= rows.len() {
                let w: &[T; TAIL] = rows[at..at + TAIL].try_into().expect("a whole block");
                for (r, &w) in r.iter_mut().zip(w) {
                    *r = v.mul_add(w, *r);
                }
            } else {
                for (q, &w) in q.iter_mut().zip(&rows[at..at + t]) {
                    *q = v.mul_add(w, *q);
                }
            }
        }
        for ((a, &r), &q) in acc[full..].iter_mut().zip(&r).zip(&q) {
            *a = r + q;
        }
    } else if full < len {
        let tail = &mut acc[full..];
        tail.fill(T::ZERO);
        for (&v, &o) in vals.iter().zip(idx) {
            let w = &rows[o as usize * len + full..(o as usize + 1) * len];
            for (r, &w) in tail.iter_mut().zip(w) {
                *r = v.mul_add(w, *r);
            }
        }
    }
}

/// Adds `acc: [K, K, cg]` (one output position's gradient per tap) to the input positions the
/// taps of output position `pos` land on, channels `c0..c0 + cg` of `dxt: [H·W, C]`.
#[inline(always)]
fn add_position<T: Elem>(g: &Geom, pos: usize, c0: usize, acc: &[T], dxt: &mut [T]) {
    let (k, cg) = (g.k, g.c / g.groups);
    let (oy, ox) = (pos / g.ow, pos % g.ow);
    let (s, d, p) = (g.stride, g.dilation, g.padding as isize);
    for ky in 0..k {
        let iy = (oy * s + ky * d) as isize - p;
        if iy < 0 || iy >= g.h as isize {
            continue;
        }
        for kx in 0..k {
            let ix = (ox * s + kx * d) as isize - p;
            if ix < 0 || ix >= g.w as isize {
                continue;
            }
            let at = (iy as usize * g.w + ix as usize) * g.c + c0;
            let src = &acc[(ky * k + kx) * cg..(ky * k + kx + 1) * cg];
            for (dst, &v) in dxt[at..at + cg].iter_mut().zip(src) {
                *dst += v;
            }
        }
    }
}

/// `dx: [C, H, W]` from the channels-last `dxt: [H·W, C]`.
#[inline(always)]
fn to_planes<T: Elem>(g: &Geom, dxt: &[T], dx: &mut [T]) {
    let hw = g.h * g.w;
    let dx = &mut dx[..g.c * hw];
    for (pos, row) in dxt.chunks_exact(g.c).enumerate() {
        for (ch, &v) in row.iter().enumerate() {
            dx[ch * hw + pos] = v;
        }
    }
}

/// `wt: [co, K, K, C/groups]` from `w: [co, C/groups, K, K]`.
pub(super) fn taps_last<T: Elem>(g: &Geom, w: &[T]) -> Vec<T> {
    let (kk, cg) = (g.k * g.k, g.c / g.groups);
    let mut wt = vec![T::ZERO; w.len()];
    for (src, dst) in w.chunks(cg * kk).zip(wt.chunks_mut(cg * kk)) {
        for c in 0..cg {
            for t in 0..kk {
                dst[t * cg + c] = src[c * kk + t];
            }
        }
    }
    wt
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::kernels::maxpool::pool_plane;

    /// `dx[c, iy, ix] = Σ dy[o, oy, ox] · w[o, c − c0, ky, kx]` over the taps that land there.
    pub(crate) fn naive_input_grad(g: &Geom, w: &[f64], dy: &[f64]) -> Vec<f64> {
        let (cg, cog, k) = (g.c / g.groups, g.co / g.groups, g.k);
        let mut dx = vec![0.0; g.c * g.h * g.w];
        for o in 0..g.co {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let v = dy[(o * g.oh + oy) * g.ow + ox];
                    for ci in 0..cg {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy =
                                    (oy * g.stride + ky * g.dilation) as isize - g.padding as isize;
                                let ix =
                                    (ox * g.stride + kx * g.dilation) as isize - g.padding as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let c = (o / cog) * cg + ci;
                                dx[(c * g.h + iy as usize) * g.w + ix as usize] +=
                                    v * w[((o * cg + ci) * k + ky) * k + kx];
                            }
                        }
                    }
                }
            }
        }
        dx
    }

    fn weights(n: usize) -> Vec<f64> {
        (0..n).map(|i| ((i * 37) % 17) as f64 / 8.0 - 1.0).collect()
    }

    fn close(got: &[f64], want: &[f64], what: &str) {
        for (i, (x, y)) in got.iter().zip(want).enumerate() {
            assert!((x - y).abs() < 1e-12, "{what}: dx[{i}] {x} vs {y}");
        }
    }

    #[test]
    fn from_dense_equals_the_definition_for_any_geometry() {
        // Rows of K·K·C/groups shorter than, equal to and longer than a register block.
        for (c, h, w, co, k, s, p, d, groups) in [
            (4, 9, 8, 6, 3, 1, 1, 1, 1),
            (4, 11, 10, 6, 2, 2, 1, 2, 2),
            (3, 7, 7, 5, 3, 2, 0, 1, 1),
            (2, 5, 6, 4, 1, 1, 0, 1, 2),
            (32, 6, 5, 8, 3, 1, 1, 1, 1),
            (12, 6, 6, 4, 3, 1, 1, 1, 1),
        ] {
            let g = Geom::new(&[1, c, h, w], &[co, c / groups, k, k], s, p, d, groups).unwrap();
            let wv = weights(co * (c / groups) * k * k);
            let wt = taps_last(&g, &wv);
            let len_out = co * g.oh * g.ow;
            for every in [1, 3, 7] {
                let dy: Vec<f64> = (0..len_out)
                    .map(|i| match i % every {
                        0 => ((i * 13) % 7) as f64 - 2.5,
                        _ => 0.0,
                    })
                    .collect();
                let mut dx = vec![f64::NAN; c * h * w];
                let mut dxt = vec![f64::NAN; c * h * w];
                let mut work = vec![f64::NAN; dense_work_len(&g)];
                let mut idx = vec![0; dense_index_len(&g)];
                from_dense(&g, &wt, &dy, &mut dx, &mut dxt, &mut work, &mut idx);
                close(
                    &dx,
                    &naive_input_grad(&g, &wv, &dy),
                    &format!("{g:?} every {every}"),
                );
            }
        }
    }

    #[test]
    fn from_pool_equals_unpool_scale_and_the_definition() {
        // 2x2/2 pools (each conv output position the argmax of at most one window) and an
        // overlapping 3x3/1 pool with padding (of several windows: entries add up).
        for (c, hw, co, k, (pk, ps, pp)) in [
            (3, 8, 5, 3, (2, 2, 0)),
            (32, 6, 4, 3, (2, 2, 0)),
            (2, 7, 3, 3, (3, 1, 1)),
            (4, 9, 2, 1, (2, 2, 0)),
            // One input channel, 3x3: rows of 9, the short-tail block (past the last row too).
            (1, 8, 4, 3, (2, 2, 0)),
        ] {
            let g = Geom::new(&[1, c, hw, hw], &[co, c, k, k], 1, k / 2, 1, 1).unwrap();
            let pg = PoolGeom::new(&[1, co, g.oh, g.ow], pk, ps, pp).unwrap();
            let wv = weights(co * c * k * k);
            let wt = taps_last(&g, &wv);
            let (l, pout) = (g.oh * g.ow, pg.oh * pg.ow);
            // Conv outputs with ties (the first maximum wins) and pooled values ≤ 0 (NONE).
            let y: Vec<f64> = (0..co * l).map(|i| ((i * 7) % 5) as f64 - 1.0).collect();
            let mut pooled = vec![0.0; co * pout];
            let mut at = vec![0u32; co * pout];
            for ((plane, o), a) in y
                .chunks(l)
                .zip(pooled.chunks_mut(pout))
                .zip(at.chunks_mut(pout))
            {
                pool_plane(&pg, plane, o, Some(a));
            }
            for (v, a) in pooled.iter().zip(at.iter_mut()) {
                if *v <= 0.0 {
                    *a = NONE;
                }
            }
            let gy: Vec<f64> = (0..co * pout)
                .map(|i| ((i * 11) % 9) as f64 - 4.0)
                .collect();
            let scale: Vec<f64> = (0..co).map(|o| 0.5 + o as f64).collect();
            // The unfused chain: unpool to the argmaxes, times the scale, the definition.
            let mut dy = vec![0.0; co * l];
            for o in 0..co {
                for q in 0..pout {
                    let a = at[o * pout + q];
                    if a != NONE {
                        dy[o * l + a as usize] += gy[o * pout + q] * scale[o];
                    }
                }
            }
            let want = naive_input_grad(&g, &wv, &dy);
            let mut dx = vec![f64::NAN; c * hw * hw];
            let mut dxt = vec![f64::NAN; c * hw * hw];
            let mut work = vec![f64::NAN; pool_work_len(&g, &pg)];
            let mut idx = vec![0; pool_index_len(&g, &pg)];
            let what = format!("{g:?} {pg:?}");
            // Sparse enough at any bound: computed.
            assert!(from_pool(
                &g,
                &wt,
                Some(&scale),
                &pg,
                &gy,
                &at,
                1,
                &mut dx,
                &mut dxt,
                &mut work,
                &mut idx
            ));
            close(&dx, &want, &what);
            // Denser than one in `co·l` non-zero: declined, `dx` untouched.
            let mut untouched = vec![7.0; c * hw * hw];
            assert!(!from_pool(
                &g,
                &wt,
                Some(&scale),
                &pg,
                &gy,
                &at,
                co * l,
                &mut untouched,
                &mut dxt,
                &mut work,
                &mut idx
            ));
            assert!(untouched.iter().all(|&v| v == 7.0), "{what}");
        }
    }
}
