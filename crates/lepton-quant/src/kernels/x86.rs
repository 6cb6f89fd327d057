//! AVX2 and AVX512-VNNI (256-bit) versions of the tile kernels, bit-identical to the scalar
//! definitions in the parent module.
//!
//! In a group of eight blocks, each (weight row, activation row) pair keeps one vector of eight
//! i32 lanes: eight multiply-accumulates of 4-byte dot products over the interleaved codes leave
//! block `b`'s integer sum in lane `b` (see [`crate::layout`]). Then one conversion and
//! one fused multiply-add by the eight blocks' `d_w · d_x` per pair and group. The tail blocks
//! (stored plainly) are summed per pair of blocks and reduced across lanes.

use std::arch::x86_64::*;

use super::{Kind, MAX_ROWS};
use crate::layout::{GROUP, QK};

/// [`super::dot`] on the monomorphized kernel for the row count.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C, and AVX512-VNNI + AVX512-VL when `vnni`; the rows must
/// be in the kernel layout with the same block count; `out` as in [`super::dot`].
pub unsafe fn dot(
    kind: Kind,
    vnni: bool,
    w: &[u8],
    row_bytes: usize,
    rows: &[&[u8]],
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        macro_rules! go {
            ($plain:ident, $vnni:ident) => {
                match (rows.len(), vnni) {
                    (1, false) => $plain::<1>(w, row_bytes, rows, out, stride),
                    (2, false) => $plain::<2>(w, row_bytes, rows, out, stride),
                    (3, false) => $plain::<3>(w, row_bytes, rows, out, stride),
                    (4, false) => $plain::<4>(w, row_bytes, rows, out, stride),
                    (5, false) => $plain::<5>(w, row_bytes, rows, out, stride),
                    (6, false) => $plain::<6>(w, row_bytes, rows, out, stride),
                    (7, false) => $plain::<7>(w, row_bytes, rows, out, stride),
                    (8, false) => $plain::<8>(w, row_bytes, rows, out, stride),
                    (1, true) => $vnni::<1>(w, row_bytes, rows, out, stride),
                    (2, true) => $vnni::<2>(w, row_bytes, rows, out, stride),
                    (3, true) => $vnni::<3>(w, row_bytes, rows, out, stride),
                    (4, true) => $vnni::<4>(w, row_bytes, rows, out, stride),
                    (5, true) => $vnni::<5>(w, row_bytes, rows, out, stride),
                    (6, true) => $vnni::<6>(w, row_bytes, rows, out, stride),
                    (7, true) => $vnni::<7>(w, row_bytes, rows, out, stride),
                    (8, true) => $vnni::<8>(w, row_bytes, rows, out, stride),
                    (g, _) => unreachable!("{g} activation rows (at most {MAX_ROWS})"),
                }
            };
        }
        match kind {
            Kind::Q4_1 => go!(q4_1, q4_1_vnni),
            Kind::Q8_0 => go!(q8_0, q8_0_vnni),
        }
    }
}

/// ggml's `hsum_float_8`, same order of additions.
///
/// # Safety
/// The CPU must have AVX (the `#[target_feature]` kernels that inline this checked it).
#[inline(always)]
unsafe fn hsum(x: __m256) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        let mut res = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
        res = _mm_add_ps(res, _mm_movehl_ps(res, res));
        res = _mm_add_ss(res, _mm_movehdup_ps(res));
        _mm_cvtss_f32(res)
    }
}

/// [`hsum`] of eight vectors at once, each with `hsum`'s additions in `hsum`'s order:
/// lanes `[h0, h2, h4, h6 | h1, h3, h5, h7]`.
///
/// # Safety
/// The CPU must have AVX2 (the `#[target_feature]` kernels that inline this checked it).
#[inline(always)]
unsafe fn hsum8x8(v: [__m256; 8]) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        // r_k = v_k + v_{k+4}, two vectors per register.
        let mut p = [_mm256_setzero_ps(); 4];
        for (i, p) in p.iter_mut().enumerate() {
            let (a, b) = (v[2 * i], v[2 * i + 1]);
            *p = _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(a, b),
                _mm256_permute2f128_ps::<0x31>(a, b),
            );
        }
        // u_0 = r_0 + r_2, u_1 = r_1 + r_3.
        let q01 = _mm256_add_ps(
            _mm256_shuffle_ps::<0x44>(p[0], p[1]),
            _mm256_shuffle_ps::<0xee>(p[0], p[1]),
        );
        let q23 = _mm256_add_ps(
            _mm256_shuffle_ps::<0x44>(p[2], p[3]),
            _mm256_shuffle_ps::<0xee>(p[2], p[3]),
        );
        // u_0 + u_1.
        _mm256_add_ps(
            _mm256_shuffle_ps::<0x88>(q01, q23),
            _mm256_shuffle_ps::<0xdd>(q01, q23),
        )
    }
}

/// `res[i] = hsum(a[i]) + hsum(s[i])` (or `hsum(a[i])` without `s`) for eight outputs,
/// bit-identical to one `hsum` per output.
///
/// # Safety
/// The CPU must have AVX2 (checked by the calling kernels). `res` is a slice: shorter
/// than 8 panics, it is never written out of bounds.
#[inline(always)]
unsafe fn finish8(a: [__m256; 8], s: Option<[__m256; 8]>, res: &mut [f32]) {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        let mut h = hsum8x8(a);
        if let Some(s) = s {
            h = _mm256_add_ps(h, hsum8x8(s));
        }
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        _mm256_storeu_ps(res[..8].as_mut_ptr(), _mm256_permutevar8x32_ps(h, order));
    }
}

/// The results of a `JT × G` tile: `res[j · G + r] = hsum(acc) (+ hsum(summs))`.
///
/// # Safety
/// The CPU must have AVX2 (checked by the calling kernels); `res` is indexed as a slice.
#[inline(always)]
unsafe fn finish<const JT: usize, const G: usize>(
    acc: &[[__m256; G]; JT],
    summs: Option<&[[__m256; G]; JT]>,
    res: &mut [f32],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        let n = JT * G;
        for c in 0..n / 8 {
            let mut a = [_mm256_setzero_ps(); 8];
            let mut s = [_mm256_setzero_ps(); 8];
            for i in 0..8 {
                let (j, r) = ((8 * c + i) / G, (8 * c + i) % G);
                a[i] = acc[j][r];
                if let Some(summs) = summs {
                    s[i] = summs[j][r];
                }
            }
            finish8(a, summs.map(|_| s), &mut res[8 * c..]);
        }
        for (i, out) in res.iter_mut().enumerate().take(n).skip(n / 8 * 8) {
            let (j, r) = (i / G, i % G);
            *out = hsum(acc[j][r]);
            if let Some(summs) = summs {
                *out += hsum(summs[j][r]);
            }
        }
    }
}

/// The lane sums `(Σ v0, Σ v1)` of two i32 vectors, repeated in every pair of lanes (exact).
///
/// # Safety
/// The CPU must have AVX2 (checked by the calling kernels).
#[inline(always)]
unsafe fn pair_sums(v0: __m256i, v1: __m256i) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        let h = _mm256_hadd_epi32(v0, v1);
        let h = _mm256_hadd_epi32(h, h);
        _mm256_add_epi32(h, _mm256_permute2x128_si256::<0x01>(h, h))
    }
}

/// `p` with lanes `2t` and `2t + 1` taken from `s` (`t` < 3: the tail has at most 6 blocks).
///
/// # Safety
/// The CPU must have AVX2 (checked by the calling kernels); `t` < 3.
#[inline(always)]
unsafe fn put_pair(p: __m256i, s: __m256i, t: usize) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        match t {
            0 => _mm256_blend_epi32::<0b0000_0011>(p, s),
            1 => _mm256_blend_epi32::<0b0000_1100>(p, s),
            _ => _mm256_blend_epi32::<0b0011_0000>(p, s),
        }
    }
}

/// `acc + Σ of 4 u8 · i8 products per i32 lane`: `vpdpbusd` (AVX512-VNNI), or `maddubs` + `madd`
/// (AVX2), the same integers when a pair of products fits `maddubs`'s i16 (Q4 codes: ≤ 2 · 15 ·
/// 128; Q8_0 after the sign trick: ≤ 2 · 128 · 127).
///
/// # Safety
/// The CPU must have AVX2, and AVX512-VNNI + AVX512-VL when `VNNI` (checked by the calling
/// kernels).
#[inline(always)]
unsafe fn dpb<const VNNI: bool>(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        if VNNI {
            dpbusd(acc, u, s)
        } else {
            _mm256_add_epi32(
                acc,
                _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)),
            )
        }
    }
}

/// `acc + vpdpbusd(u, s)`. `_mm256_dpbusd_epi32` needs Rust 1.89 (the workspace supports 1.85):
/// the same instruction through `asm!`, on any of the 32 vector registers AVX-512 provides.
///
/// # Safety
/// The CPU must have AVX2, AVX512-VNNI and AVX512-VL.
#[inline]
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
pub(super) unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        let mut acc = acc;
        std::arch::asm!(
            "vpdpbusd {acc:y}, {u:y}, {s:y}",
            acc = inout(zmm_reg) acc,
            u = in(zmm_reg) u,
            s = in(zmm_reg) s,
            options(pure, nomem, nostack)
        );
        acc
    }
}

/// Prefetch weight rows at least four rows ahead (rows are contiguous: the next tile, or the one
/// after for one-row tiles); the hardware prefetcher alone left the kernel waiting on loads.
///
/// # Safety
/// The CPU must have SSE (every x86-64 does). Each `w[j]` must point into the weight
/// matrix; the prefetched addresses may lie past its end (a prefetch never faults), they are
/// computed with wrapping arithmetic and never dereferenced.
#[inline(always)]
unsafe fn prefetch_next<const JT: usize>(w: &[*const u8; JT], row_len: usize) {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        for p in w {
            let next = p.wrapping_add(JT.max(4) * row_len);
            for off in (0..row_len).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(off) as *const i8);
            }
        }
    }
}

/// Eight f16 at `p` (`n` ≤ 8 of them, `n` even, the rest 0) as f32.
///
/// # Safety
/// The CPU must have AVX2 and F16C; `p` must be valid for reading `2 · n` bytes, `n` ≤ 8.
#[inline(always)]
unsafe fn load_f16x8(p: *const u8, n: usize) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        if n == 8 {
            _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
        } else {
            let mask = _mm_cmpgt_epi32(_mm_set1_epi32(n as i32 / 2), _mm_setr_epi32(0, 1, 2, 3));
            _mm256_cvtph_ps(_mm_maskload_epi32(p as *const i32, mask))
        }
    }
}

/// Mask of the first `n` ≤ 8 lanes.
///
/// # Safety
/// The CPU must have AVX2; `n` ≤ 8.
#[inline(always)]
unsafe fn first_lanes(n: usize) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

/// Eight f32 at `p` (`n` ≤ 8 of them, the rest 0).
///
/// # Safety
/// The CPU must have AVX2; `p` must be valid for reading `4 · n` bytes, `n` ≤ 8.
#[inline(always)]
unsafe fn load_f32x8(p: *const u8, n: usize) -> __m256 {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        if n == 8 {
            _mm256_loadu_ps(p as *const f32)
        } else {
            _mm256_maskload_ps(p as *const f32, first_lanes(n))
        }
    }
}

/// Eight i32 at `p` (`n` ≤ 8 of them, the rest 0).
///
/// # Safety
/// The CPU must have AVX2; `p` must be valid for reading `4 · n` bytes, `n` ≤ 8.
#[inline(always)]
unsafe fn load_i32x8(p: *const u8, n: usize) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        if n == 8 {
            _mm256_loadu_si256(p as *const __m256i)
        } else {
            _mm256_maskload_epi32(p as *const i32, first_lanes(n))
        }
    }
}

/// The low and high nibbles of 32 bytes at `p`.
///
/// # Safety
/// The CPU must have AVX2; `p` must be valid for reading 32 bytes.
#[inline(always)]
unsafe fn unpack(p: *const u8) -> [__m256i; 2] {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        let low = _mm256_set1_epi8(0x0f);
        let packed = load(p);
        [
            _mm256_and_si256(packed, low),
            _mm256_and_si256(_mm256_srli_epi16::<4>(packed), low),
        ]
    }
}

/// `p` + the Σ q_w q_x products of offset weight codes `wv` and activation codes `y` (with VNNI
/// the offset's `128 · Σ q_x` is still in it).
///
/// # Safety
/// The CPU must have AVX2, and AVX512-VNNI + AVX512-VL when `VNNI`.
#[inline(always)]
unsafe fn mac_q8<const VNNI: bool>(p: __m256i, wv: __m256i, y: __m256i) -> __m256i {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        if VNNI {
            dpb::<true>(p, wv, y)
        } else {
            let x = _mm256_xor_si256(wv, _mm256_set1_epi8(-128));
            dpb::<false>(p, _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
        }
    }
}

/// # Safety
/// The CPU must have AVX; `p` must be valid for reading 32 bytes.
#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// Every weight row of `w` against the `G` activation rows in tiles of four weight rows (the
/// rest one by one): each activation load serves four weight rows, and with one activation row
/// more loads are in flight while decoding. Four-row tiles against eight activation rows
/// (training, prefill: m = 512) took a Q4_1 1536×576 matmul from 105.8 to 72.3 ms and a Q8_0
/// 576×1536 one from 93.4 to 60.9 ms against one-row tiles (medians of 9, same process, a loaded
/// machine; bench/RESULTS.md, issue 15 session 10); the accumulators no longer all fit in
/// registers, but they are touched once per eight blocks.
macro_rules! drive {
    ($imp:ident, $vnni:expr, $g:ident, $w:ident, $rb:ident, $rows:ident, $out:ident, $stride:ident) => {{
        let n = $w.len() / $rb;
        let a: [*const u8; $g] = std::array::from_fn(|r| $rows[r].as_ptr());
        let base = $w.as_ptr();
        let mut res = [0f32; 4 * MAX_ROWS];
        let mut j = 0;
        while j + 4 <= n {
            let ws: [*const u8; 4] = std::array::from_fn(|t| base.add((j + t) * $rb));
            $imp::<4, $g, $vnni>(&ws, &a, $rb, j + 4 < n, &mut res);
            for t in 0..4 {
                for r in 0..$g {
                    *$out.add(r * $stride + j + t) = res[t * $g + r];
                }
            }
            j += 4;
        }
        while j < n {
            $imp::<1, $g, $vnni>(&[base.add(j * $rb)], &a, $rb, j + 1 < n, &mut res);
            for (r, v) in res[..$g].iter().enumerate() {
                *$out.add(r * $stride + j) = *v;
            }
            j += 1;
        }
    }};
}

macro_rules! entry_points {
    ($plain:ident, $vnni:ident, $imp:ident) => {
        /// # Safety
        /// As [`dot`] (without VNNI): AVX2, FMA and F16C; `w` and `rows` in the kernel layout;
        /// `out` valid for `(r, j)` at `r · stride + j` for every activation row `r` and weight row
        /// `j`, written by no other thread.
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $plain<const G: usize>(
            w: &[u8],
            row_bytes: usize,
            rows: &[&[u8]],
            out: *mut f32,
            stride: usize,
        ) {
            unsafe { drive!($imp, false, G, w, row_bytes, rows, out, stride) }
        }

        /// # Safety
        /// As [`dot`] with VNNI: AVX2, FMA, F16C, AVX512-VNNI and AVX512-VL; `w`, `rows` and `out`
        /// as for the plain kernel.
        #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
        unsafe fn $vnni<const G: usize>(
            w: &[u8],
            row_bytes: usize,
            rows: &[&[u8]],
            out: *mut f32,
            stride: usize,
        ) {
            unsafe { drive!($imp, true, G, w, row_bytes, rows, out, stride) }
        }
    };
}

entry_points!(q4_1, q4_1_vnni, q4_1_impl);
entry_points!(q8_0, q8_0_vnni, q8_0_impl);

/// Q4_1 weights · Q8_1 activations for a `JT × G` tile.
///
/// # Safety
/// The CPU features of the calling kernel (AVX2, FMA, F16C; VNNI when `VNNI`). Each `w[j]`
/// must be valid for reading `row_bytes` bytes and each `a[r]` a Q8_1 row of the same block count
/// in the kernel layout; `res` holds at least `JT · G` values.
#[inline(always)]
pub(super) unsafe fn q4_1_impl<const JT: usize, const G: usize, const VNNI: bool>(
    w: &[*const u8; JT],
    a: &[*const u8; G],
    row_bytes: usize,
    prefetch: bool,
    res: &mut [f32],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        let nbp = row_bytes / 20;
        let (groups, tail) = (nbp / GROUP, nbp % GROUP);
        if prefetch {
            prefetch_next(w, row_bytes);
        }
        let mut acc = [[_mm256_setzero_ps(); G]; JT];
        let mut summs = [[_mm256_setzero_ps(); G]; JT];
        // acc += d_w · d_x · p and summs += m_w · s_x for the `n` blocks from `b0`.
        macro_rules! scale {
            ($p:expr, $b0:expr, $n:expr) => {{
                let (p, b0, n): (&[[__m256i; G]; JT], usize, usize) = (&$p, $b0, $n);
                for j in 0..JT {
                    let d0 = load_f16x8(w[j].add(nbp * 16 + 2 * b0), n);
                    let m0 = load_f16x8(w[j].add(nbp * 18 + 2 * b0), n);
                    for r in 0..G {
                        let d1 = load_f32x8(a[r].add(nbp * QK + 4 * b0), n);
                        let s1 = load_f32x8(a[r].add(nbp * QK + 4 * nbp + 4 * b0), n);
                        let x = _mm256_cvtepi32_ps(p[j][r]);
                        acc[j][r] = _mm256_fmadd_ps(_mm256_mul_ps(d0, d1), x, acc[j][r]);
                        summs[j][r] = _mm256_fmadd_ps(m0, s1, summs[j][r]);
                    }
                }
            }};
        }
        for g in 0..groups {
            let mut p = [[_mm256_setzero_si256(); G]; JT];
            for q in 0..4 {
                let mut x = [[_mm256_setzero_si256(); 2]; JT];
                for j in 0..JT {
                    x[j] = unpack(w[j].add(g * 128 + q * 32));
                }
                for r in 0..G {
                    let y0 = load(a[r].add(g * 256 + q * 32));
                    let y1 = load(a[r].add(g * 256 + (q + 4) * 32));
                    for j in 0..JT {
                        p[j][r] = dpb::<VNNI>(p[j][r], x[j][0], y0);
                        p[j][r] = dpb::<VNNI>(p[j][r], x[j][1], y1);
                    }
                }
            }
            scale!(p, g * GROUP, GROUP);
        }
        if tail > 0 {
            let b0 = groups * GROUP;
            let mut p = [[_mm256_setzero_si256(); G]; JT];
            for t in 0..tail / 2 {
                let mut x = [[_mm256_setzero_si256(); 2]; JT];
                for j in 0..JT {
                    x[j] = unpack(w[j].add(b0 * 16 + t * 32));
                }
                for r in 0..G {
                    let y0 = load(a[r].add((b0 + 2 * t) * 32));
                    let y1 = load(a[r].add((b0 + 2 * t + 1) * 32));
                    for j in 0..JT {
                        let zero = _mm256_setzero_si256();
                        let s = pair_sums(
                            dpb::<VNNI>(zero, x[j][0], y0),
                            dpb::<VNNI>(zero, x[j][1], y1),
                        );
                        p[j][r] = put_pair(p[j][r], s, t);
                    }
                }
            }
            scale!(p, b0, tail);
        }
        finish(&acc, Some(&summs), res);
    }
}

/// Q8_0 weights · Q8_0 activations for a `JT × G` tile. The weights are stored offset by 128
/// (unsigned): with VNNI `vpdpbusd` sums `(q_w + 128) q_x` and the layout's `128 · Σq_x` is
/// subtracted per block; without, ggml's sign trick on `q_w` gives `Σ q_w q_x` directly.
///
/// # Safety
/// The CPU features of the calling kernel (AVX2, FMA, F16C; VNNI when `VNNI`). Each `w[j]`
/// must be valid for reading `row_bytes` bytes and each `a[r]` a Q8_0 row of the same block count
/// in the kernel layout; `res` holds at least `JT · G` values.
#[inline(always)]
pub(super) unsafe fn q8_0_impl<const JT: usize, const G: usize, const VNNI: bool>(
    w: &[*const u8; JT],
    a: &[*const u8; G],
    row_bytes: usize,
    prefetch: bool,
    res: &mut [f32],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        let nbp = row_bytes / 34;
        let (groups, tail) = (nbp / GROUP, nbp % GROUP);
        if prefetch {
            prefetch_next(w, row_bytes);
        }
        let mut acc = [[_mm256_setzero_ps(); G]; JT];
        macro_rules! scale {
            ($p:expr, $b0:expr, $n:expr) => {{
                let (p, b0, n): (&[[__m256i; G]; JT], usize, usize) = (&$p, $b0, $n);
                for j in 0..JT {
                    let d0 = load_f16x8(w[j].add(nbp * 32 + 2 * b0), n);
                    for r in 0..G {
                        let d1 = load_f32x8(a[r].add(nbp * QK + 4 * b0), n);
                        let mut pr = p[j][r];
                        if VNNI {
                            let c = load_i32x8(a[r].add(nbp * QK + 8 * nbp + 4 * b0), n);
                            pr = _mm256_sub_epi32(pr, c);
                        }
                        let x = _mm256_cvtepi32_ps(pr);
                        acc[j][r] = _mm256_fmadd_ps(_mm256_mul_ps(d0, d1), x, acc[j][r]);
                    }
                }
            }};
        }
        for g in 0..groups {
            let mut p = [[_mm256_setzero_si256(); G]; JT];
            for k in 0..GROUP {
                let mut x = [_mm256_setzero_si256(); JT];
                for j in 0..JT {
                    x[j] = load(w[j].add(g * 256 + k * 32));
                }
                for r in 0..G {
                    let y = load(a[r].add(g * 256 + k * 32));
                    for j in 0..JT {
                        p[j][r] = mac_q8::<VNNI>(p[j][r], x[j], y);
                    }
                }
            }
            scale!(p, g * GROUP, GROUP);
        }
        if tail > 0 {
            let b0 = groups * GROUP;
            let mut p = [[_mm256_setzero_si256(); G]; JT];
            for t in 0..tail / 2 {
                let (b, zero) = (b0 + 2 * t, _mm256_setzero_si256());
                let mut x = [[zero; 2]; JT];
                for j in 0..JT {
                    x[j] = [load(w[j].add(b * 32)), load(w[j].add(b * 32 + 32))];
                }
                for r in 0..G {
                    let y = [load(a[r].add(b * 32)), load(a[r].add(b * 32 + 32))];
                    for j in 0..JT {
                        let s = pair_sums(
                            mac_q8::<VNNI>(zero, x[j][0], y[0]),
                            mac_q8::<VNNI>(zero, x[j][1], y[1]),
                        );
                        p[j][r] = put_pair(p[j][r], s, t);
                    }
                }
            }
            scale!(p, b0, tail);
        }
        finish(&acc, None, res);
    }
}
