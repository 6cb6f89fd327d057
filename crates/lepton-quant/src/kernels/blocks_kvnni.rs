//! Q4_K/Q5_K/Q6_K tiles with AVX512-VNNI: `W` weight rows × `R` activation rows per pass over the
//! blocks, bit-identical to [`super::blocks::scalar`].
//!
//! The definition's lane sums `S_l = Σ sc_t · q_t · x_t` are exact integers, so any exact way of
//! forming them gives the same bits. Per 32-value chunk of a block, `maddubs` pairs the unsigned
//! codes with the activation codes (i16, exact: at most 2 · 63 · 128), Q6_K subtracts the pairs of
//! `32 · x` (one `maddubs` per activation chunk, shared by the tile's `W` weight rows), and one
//! `vpdpwssd` multiplies by the chunk's sub-block scales and adds to the lanes (exact, no
//! saturation: below 2^24). Then, as in the definition, one conversion and one fused multiply-add
//! by `d_w · d_x` per block and pair, and for Q4_K/Q5_K the `dmin_w · d_x · Σ m_s · bsum_s` term
//! with its integer sum formed by one `madd` of the block's 16 activation sums with the mins.
//!
//! Each activation chunk is loaded once for `W` weight rows and each weight chunk unpacked once
//! for `R` activation rows (the AVX2 kernel, [`super::blocks_x86`], unpacks one weight row per
//! call and reads every activation block once per weight row).

use std::arch::x86_64::*;

use super::blocks_x86::f16c_at;
use super::hsum8;
use crate::blocks::{scale_min_k4, BlockType, Q8K_BYTES, QK_K};
use crate::layout::f32_at;

const Q4K: u8 = 0;
const Q5K: u8 = 1;
const Q6K: u8 = 2;

/// `out[r · stride + k] = w_k · a[r]` for the `W` weight rows `w_k = w[k · row_bytes..][..row_bytes]`
/// (Q4_K, Q5_K or Q6_K blocks) and `R` activation rows quantized by [`BlockType::quantize_act`].
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C, AVX512-VNNI and AVX512-VL; `t` is a K-quant; `w` holds `W`
/// rows of `row_bytes` and each `a[r]` the matching activation row; `out` is valid for writes at
/// those offsets and no other thread accesses them.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub unsafe fn dot_tile_k<const W: usize, const R: usize>(
    t: BlockType,
    w: &[u8],
    row_bytes: usize,
    a: &[&[u8]; R],
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: the caller's promise, passed on.
    unsafe {
        match t {
            BlockType::Q4K => tile::<Q4K, W, R>(w, row_bytes, a, out, stride),
            BlockType::Q5K => tile::<Q5K, W, R>(w, row_bytes, a, out, stride),
            BlockType::Q6K => tile::<Q6K, W, R>(w, row_bytes, a, out, stride),
            _ => unreachable!("K-quants only"),
        }
    }
}

/// [`dot_tile_k`] for the type `T`.
///
/// # Safety
/// As [`dot_tile_k`].
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
unsafe fn tile<const T: u8, const W: usize, const R: usize>(
    w: &[u8],
    row_bytes: usize,
    a: &[&[u8]; R],
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: the CPU features and `out` are the caller's promise; every load reads 32 bytes
    // inside a block of `w` or of an activation row (checked by the slice indexing).
    unsafe {
        let bb = match T {
            Q4K => BlockType::Q4K.block_bytes(),
            Q5K => BlockType::Q5K.block_bytes(),
            _ => BlockType::Q6K.block_bytes(),
        };
        let zero = _mm256_setzero_si256();
        let m32 = _mm256_set1_epi8(32);
        let mut acc = [[_mm256_setzero_ps(); R]; W];
        let mut summ = [[0f32; R]; W];
        // `scales[c][k]`: chunk `c`'s sub-block scales of weight row `k` (i16, broadcast).
        let mut scales = [[zero; W]; 8];
        let mut mins = [zero; W];
        for i in 0..row_bytes / bb {
            let blk = |k: usize| &w[k * row_bytes + i * bb..k * row_bytes + (i + 1) * bb];
            let mut d = [0f32; W];
            let mut dmin = [0f32; W];
            for k in 0..W {
                let b = blk(k);
                if T == Q6K {
                    d[k] = f16c_at(b, 208);
                    for (c, sc) in scales.iter_mut().enumerate() {
                        let s = &b[192 + 2 * c..194 + 2 * c];
                        sc[k] = _mm256_set_m128i(
                            _mm_set1_epi16(s[1] as i8 as i16),
                            _mm_set1_epi16(s[0] as i8 as i16),
                        );
                    }
                } else {
                    d[k] = f16c_at(b, 0);
                    dmin[k] = f16c_at(b, 2);
                    let mut m = [0i16; 16];
                    for (c, sc) in scales.iter_mut().enumerate() {
                        let (s, mn) = scale_min_k4(c, &b[4..16]);
                        sc[k] = _mm256_set1_epi16(s as i16);
                        m[2 * c] = mn as i16;
                        m[2 * c + 1] = mn as i16;
                    }
                    mins[k] = _mm256_loadu_si256(m.as_ptr().cast());
                }
            }
            let mut s = [[zero; R]; W];
            for (c, sc) in scales.iter().enumerate() {
                let xs: [__m256i; R] = std::array::from_fn(|r| {
                    let at = i * Q8K_BYTES + 4 + 32 * c;
                    _mm256_loadu_si256(a[r][at..at + 32].as_ptr().cast())
                });
                let x32: [__m256i; R] = if T == Q6K {
                    std::array::from_fn(|r| _mm256_maddubs_epi16(m32, xs[r]))
                } else {
                    [zero; R]
                };
                for k in 0..W {
                    let q = chunk::<T>(blk(k), c);
                    for r in 0..R {
                        let mut p = _mm256_maddubs_epi16(q, xs[r]);
                        if T == Q6K {
                            p = _mm256_sub_epi16(p, x32[r]);
                        }
                        s[k][r] = dpwssd(s[k][r], p, sc[k]);
                    }
                }
            }
            for r in 0..R {
                let ab = &a[r][i * Q8K_BYTES..(i + 1) * Q8K_BYTES];
                let dx = f32_at(ab, 0);
                let bsums = if T == Q6K {
                    zero
                } else {
                    _mm256_loadu_si256(ab[4 + QK_K..4 + QK_K + 32].as_ptr().cast())
                };
                for k in 0..W {
                    if T != Q6K {
                        let msum = hsum_i32(_mm256_madd_epi16(bsums, mins[k]));
                        summ[k][r] = (dmin[k] * dx).mul_add(msum as f32, summ[k][r]);
                    }
                    let dd = _mm256_set1_ps(d[k] * dx);
                    acc[k][r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s[k][r]), acc[k][r]);
                }
            }
        }
        for k in 0..W {
            for r in 0..R {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[k][r]);
                *out.add(r * stride + k) = if T == Q6K {
                    hsum8(lanes)
                } else {
                    hsum8(lanes) - summ[k][r]
                };
            }
        }
    }
}

/// The 32 unsigned codes of chunk `c` (values `32c..32c + 32`) of a K-quant block `b`.
///
/// # Safety
/// The CPU must have AVX2 (inlined into [`tile`]); memory is read through checked slice indexing.
#[inline(always)]
unsafe fn chunk<const T: u8>(b: &[u8], c: usize) -> __m256i {
    // SAFETY: loads of 32 bytes inside the block (indexing checked); features from the caller.
    unsafe {
        let m4 = _mm256_set1_epi8(0x0f);
        let load = |at: usize| _mm256_loadu_si256(b[at..at + 32].as_ptr().cast::<__m256i>());
        let nibble = |q: __m256i, high: bool| {
            if high {
                _mm256_and_si256(_mm256_srli_epi16(q, 4), m4)
            } else {
                _mm256_and_si256(q, m4)
            }
        };
        match T {
            Q4K => nibble(load(16 + 32 * (c / 2)), c % 2 == 1),
            Q5K => {
                let h = _mm256_and_si256(
                    _mm256_srl_epi16(load(16), _mm_cvtsi32_si128(c as i32)),
                    _mm256_set1_epi8(1),
                );
                _mm256_or_si256(
                    nibble(load(48 + 32 * (c / 2)), c % 2 == 1),
                    _mm256_slli_epi16(h, 4),
                )
            }
            _ => {
                let (half, j) = (c / 4, c % 4);
                let lo = nibble(load(64 * half + 32 * (j % 2)), j >= 2);
                let h = _mm256_and_si256(
                    _mm256_srl_epi16(load(128 + 32 * half), _mm_cvtsi32_si128(2 * j as i32)),
                    _mm256_set1_epi8(3),
                );
                _mm256_or_si256(lo, _mm256_slli_epi16(h, 4))
            }
        }
    }
}

/// The sum of the eight i32 lanes (exact integers: any order).
///
/// # Safety
/// The CPU must have AVX2 (inlined into [`tile`]).
#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    // SAFETY: register-only operations; the features come from the calling kernel.
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }
}

/// `acc + Σ of 2 i16 · i16 products per i32 lane` (`vpdpwssd`, no saturation).
/// `_mm256_dpwssd_epi32` needs Rust 1.89 (the workspace supports 1.85): the same instruction
/// through `asm!`, on any of the 32 vector registers AVX-512 provides.
///
/// # Safety
/// The CPU must have AVX2, AVX512-VNNI and AVX512-VL.
#[inline]
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
unsafe fn dpwssd(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: register-only instruction; the features are the caller's promise.
    unsafe {
        let mut acc = acc;
        std::arch::asm!(
            "vpdpwssd {acc:y}, {a:y}, {b:y}",
            acc = inout(zmm_reg) acc,
            a = in(zmm_reg) a,
            b = in(zmm_reg) b,
            options(pure, nomem, nostack)
        );
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::super::blocks_vnni::tests::assert_tiles_equal_the_definition;
    use super::super::{Level, BLOCK_ROWS, TILE_W};
    use super::*;

    /// Random raw bytes for `n` blocks of `t`, with finite f16 scales of both signs (every code
    /// pattern, negative Q6_K scales, the 6-bit scales and mins of Q4_K/Q5_K at their extremes).
    fn random_blocks(t: BlockType, n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        let mut w: Vec<u8> = (0..n * t.block_bytes()).map(|_| next() as u8).collect();
        for (i, b) in w.chunks_exact_mut(t.block_bytes()).enumerate() {
            let f = |v: f32| half::f16::from_f32(v).to_bits().to_le_bytes();
            let d = f(if i % 3 == 0 { -0.013 } else { 0.021 });
            let m = f(if i % 2 == 0 { -0.3 } else { 0.05 });
            if t == BlockType::Q6K {
                b[208..210].copy_from_slice(&d);
            } else {
                b[0..2].copy_from_slice(&d);
                b[2..4].copy_from_slice(&m);
            }
        }
        // The extremes of the 6-bit scales/mins and of the Q6_K scales in the first block.
        match t {
            BlockType::Q6K => w[192..208].copy_from_slice(&[0x80, 0x7f].repeat(8)),
            _ => w[4..16].fill(0xff),
        }
        w
    }

    /// Every tile shape (1-4 weight rows × 1-4 activation rows) equals the plain-Rust definition
    /// bit for bit, on random raw blocks and activations with codes at -127 and +127 (the Q8_K range).
    #[test]
    fn k_quant_tiles_equal_the_definition() {
        if Level::detect() != Level::Vnni {
            eprintln!("skipped: this CPU has no AVX512-VNNI");
            return;
        }
        for t in [BlockType::Q4K, BlockType::Q5K, BlockType::Q6K] {
            for blocks in [1usize, 3] {
                let rb = blocks * t.block_bytes();
                let w = random_blocks(t, TILE_W * blocks, 11 + blocks as u64);
                let k = blocks * QK_K;
                let acts: Vec<Vec<u8>> = (0..BLOCK_ROWS as u64)
                    .map(|r| {
                        let mut s = 100 + r;
                        let mut x: Vec<f32> = (0..k)
                            .map(|_| {
                                s = s
                                    .wrapping_mul(6364136223846793005)
                                    .wrapping_add(1442695040888963407);
                                ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
                            })
                            .collect();
                        x[0] = -5.0; // a code of -127 in the first block
                        x[40] = 5.0; // and of +127
                        let mut a = vec![0u8; t.act_row_bytes(k)];
                        t.quantize_act(&x, &mut a);
                        a
                    })
                    .collect();
                assert!(
                    acts.iter().all(|a| a[4] == 0x81 && a[44] == 0x7f),
                    "codes of -127 and +127 are tested"
                );
                let rows: Vec<&[u8]> = acts.iter().map(Vec::as_slice).collect();
                assert_tiles_equal_the_definition(t, &w, rb, &rows, blocks);
            }
        }
    }
}
