//! AVX2 versions of the GGML-block dot products, bit-identical to [`super::blocks::scalar`].
//!
//! Each weight block is unpacked once into vectors of 32 codes (one per 32 values, in value order)
//! and dotted with up to [`super::BLOCK_ROWS`] activation rows: `maddubs` (u8 × i8 pairs to i16) and `madd` by
//! the sub-block scales (i16 pairs to i32) leave the lane sums `S_l` of the definition, exact; one
//! conversion and one fused multiply-add per block and row follow.

use std::arch::x86_64::*;

use super::hsum8;
use crate::blocks::{bsum, scale_min_k4, BlockType, Q8K_BYTES, Q8_32_BYTES};
use crate::layout::f32_at;

/// [`super::blocks::dot`] for one activation row.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `w` and `a` whole rows of the same length.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot(t: BlockType, w: &[u8], a: &[u8]) -> f32 {
    let mut out = [0f32; 1];
    // SAFETY: as promised by the caller.
    unsafe { dot_rows::<1>(t, w, &[a], &mut out) };
    out[0]
}

/// `out[r] = w · a[r]` for `R` activation rows (1 ≤ `R` ≤ [`super::BLOCK_ROWS`]).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `w` and every `a[r]` whole rows of the same length.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_rows<const R: usize>(t: BlockType, w: &[u8], a: &[&[u8]; R], out: &mut [f32; R]) {
    // SAFETY: the CPU features are the caller's promise; every load below reads 16 or 32 bytes
    // inside a block of `w` or of an activation row (checked by the slice indexing).
    unsafe {
        let mut acc = [_mm256_setzero_ps(); R];
        let mut summ = [0f32; R];
        let m4 = _mm256_set1_epi8(0x0f);
        let bb = t.block_bytes();
        match t {
            BlockType::Q5_0 | BlockType::Q5_1 => {
                let ones = _mm256_set1_epi16(1);
                for (i, b) in w.chunks_exact(bb).enumerate() {
                    let five0 = t == BlockType::Q5_0;
                    let (qh_at, qs_at) = if five0 { (2, 6) } else { (4, 8) };
                    let qs = _mm_loadu_si128(b[qs_at..qs_at + 16].as_ptr().cast());
                    let nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), m4);
                    let bits = bytes_from_bits_32(&b[qh_at..qh_at + 4]);
                    let d = f16c_at(b, 0);
                    for r in 0..R {
                        let ab = &a[r][i * Q8_32_BYTES..(i + 1) * Q8_32_BYTES];
                        let x = _mm256_loadu_si256(ab.as_ptr().cast());
                        let p16 = if five0 {
                            // q − 16 = nibble | (bit ? 0 : 0xF0) as i8; |q − 16| · sign.
                            let q = _mm256_or_si256(
                                nib,
                                _mm256_andnot_si256(bits, _mm256_set1_epi8(0xf0u8 as i8)),
                            );
                            _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q))
                        } else {
                            summ[r] = f16c_at(b, 2).mul_add(f32_at(ab, 36), summ[r]);
                            let q = _mm256_or_si256(
                                nib,
                                _mm256_and_si256(bits, _mm256_set1_epi8(0x10)),
                            );
                            _mm256_maddubs_epi16(q, x)
                        };
                        let s = _mm256_madd_epi16(p16, ones);
                        let dd = _mm256_set1_ps(d * f32_at(ab, 32));
                        acc[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), acc[r]);
                    }
                }
            }
            BlockType::Q4K | BlockType::Q5K | BlockType::Q6K => {
                let m32 = _mm256_set1_epi8(32);
                let mut codes = [_mm256_setzero_si256(); 8];
                let mut scales = [_mm256_setzero_si256(); 8];
                let mut mins = [0i32; 8];
                for (i, b) in w.chunks_exact(bb).enumerate() {
                    let (d, dmin) = if t == BlockType::Q6K {
                        unpack_q6k(b, m4, &mut codes, &mut scales);
                        (f16c_at(b, 208), 0.0)
                    } else {
                        unpack_q45k(
                            b,
                            t == BlockType::Q5K,
                            m4,
                            &mut codes,
                            &mut scales,
                            &mut mins,
                        );
                        (f16c_at(b, 0), f16c_at(b, 2))
                    };
                    for r in 0..R {
                        let ab = &a[r][i * Q8K_BYTES..(i + 1) * Q8K_BYTES];
                        let dx = f32_at(ab, 0);
                        let mut s = _mm256_setzero_si256();
                        for c in 0..8 {
                            let x = _mm256_loadu_si256(ab[4 + 32 * c..36 + 32 * c].as_ptr().cast());
                            let mut p = _mm256_maddubs_epi16(codes[c], x);
                            if t == BlockType::Q6K {
                                p = _mm256_sub_epi16(p, _mm256_maddubs_epi16(m32, x));
                            }
                            s = _mm256_add_epi32(s, _mm256_madd_epi16(p, scales[c]));
                        }
                        if t != BlockType::Q6K {
                            let mut msum = 0i32;
                            for (sub, &m) in mins.iter().enumerate() {
                                msum += m * (bsum(ab, 2 * sub) + bsum(ab, 2 * sub + 1));
                            }
                            summ[r] = (dmin * dx).mul_add(msum as f32, summ[r]);
                        }
                        let dd = _mm256_set1_ps(d * dx);
                        acc[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), acc[r]);
                    }
                }
            }
        }
        for r in 0..R {
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r]);
            out[r] = match t {
                BlockType::Q5_0 | BlockType::Q6K => hsum8(lanes),
                BlockType::Q5_1 => hsum8(lanes) + summ[r],
                BlockType::Q4K | BlockType::Q5K => hsum8(lanes) - summ[r],
            };
        }
    }
}

/// The f16 at byte `at` of `b` as f32, by F16C in the calling kernel (no out-of-line call and
/// no run-time feature check per block; the same value as `half`'s conversion, which is exact).
///
/// # Safety
/// The CPU must have F16C (inlined into the `#[target_feature(enable = "avx2,fma,f16c")]`
/// kernels of this file, which are only called after that check); `b[at..at + 2]` is read
/// through checked indexing.
#[inline(always)]
pub(super) unsafe fn f16c_at(b: &[u8], at: usize) -> f32 {
    // SAFETY: register-only operations; the features come from the calling kernel.
    unsafe {
        let bits = u16::from_le_bytes([b[at], b[at + 1]]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }
}

/// 0xFF in byte `j` where bit `j` of the 32 bits is set, else 0 (ggml's `bytes_from_bits_32`).
///
/// # Safety
/// The CPU must have AVX2 (this is inlined into the `#[target_feature(enable = "avx2")]` kernels of
/// this file, which are only called after that check); memory is read through checked slice
/// indexing only.
#[inline(always)]
pub(super) unsafe fn bytes_from_bits_32(qh: &[u8]) -> __m256i {
    // SAFETY: register-only operations; the features come from the calling kernel.
    unsafe {
        let x = i32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
        let shuf = _mm256_set_epi64x(
            0x0303030303030303,
            0x0202020202020202,
            0x0101010101010101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x), shuf);
        let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
        _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
    }
}

/// A Q4_K/Q5_K block's 8 sub-blocks of unsigned codes, their scales (i16, broadcast) and mins.
///
/// # Safety
/// The CPU must have AVX2 (this is inlined into the `#[target_feature(enable = "avx2")]` kernels of
/// this file, which are only called after that check); memory is read through checked slice
/// indexing only.
#[inline(always)]
unsafe fn unpack_q45k(
    b: &[u8],
    five: bool,
    m4: __m256i,
    codes: &mut [__m256i; 8],
    scales: &mut [__m256i; 8],
    mins: &mut [i32; 8],
) {
    // SAFETY: loads of 32 bytes inside the block (indexing checked); features from the caller.
    unsafe {
        let qs_at = if five { 48 } else { 16 };
        let hbits = if five {
            _mm256_loadu_si256(b[16..48].as_ptr().cast())
        } else {
            _mm256_setzero_si256()
        };
        let one = _mm256_set1_epi8(1);
        for k in 0..4 {
            let q = _mm256_loadu_si256(b[qs_at + 32 * k..qs_at + 32 * k + 32].as_ptr().cast());
            let mut lo = _mm256_and_si256(q, m4);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if five {
                let h0 = _mm256_and_si256(
                    _mm256_srl_epi16(hbits, _mm_cvtsi32_si128(2 * k as i32)),
                    one,
                );
                let h1 = _mm256_and_si256(
                    _mm256_srl_epi16(hbits, _mm_cvtsi32_si128(2 * k as i32 + 1)),
                    one,
                );
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(h0, 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(h1, 4));
            }
            codes[2 * k] = lo;
            codes[2 * k + 1] = hi;
        }
        for (s, (sc, m)) in scales.iter_mut().zip(mins.iter_mut()).enumerate() {
            let (scale, min) = scale_min_k4(s, &b[4..16]);
            *sc = _mm256_set1_epi16(scale as i16);
            *m = min as i32;
        }
    }
}

/// A Q6_K block's 8 chunks of 32 unsigned codes (0..64) and their two scales each (i16: the first
/// 16 values' in the low half, the next 16 values' in the high half).
///
/// # Safety
/// The CPU must have AVX2 (this is inlined into the `#[target_feature(enable = "avx2")]` kernels of
/// this file, which are only called after that check); memory is read through checked slice
/// indexing only.
#[inline(always)]
unsafe fn unpack_q6k(b: &[u8], m4: __m256i, codes: &mut [__m256i; 8], scales: &mut [__m256i; 8]) {
    // SAFETY: loads of 32 bytes inside the block (indexing checked); features from the caller.
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        for half in 0..2 {
            let ql0 = _mm256_loadu_si256(b[64 * half..64 * half + 32].as_ptr().cast());
            let ql1 = _mm256_loadu_si256(b[64 * half + 32..64 * half + 64].as_ptr().cast());
            let qh = _mm256_loadu_si256(b[128 + 32 * half..160 + 32 * half].as_ptr().cast());
            macro_rules! high {
                ($shift:expr) => {
                    _mm256_slli_epi16(
                        _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128($shift)), m3),
                        4,
                    )
                };
            }
            let c = &mut codes[4 * half..4 * half + 4];
            c[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), high!(0));
            c[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), high!(2));
            c[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), high!(4));
            c[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), high!(6));
            for q in 0..4 {
                let sc = &b[192 + 8 * half + 2 * q..];
                scales[4 * half + q] = _mm256_set_m128i(
                    _mm_set1_epi16(sc[1] as i8 as i16),
                    _mm_set1_epi16(sc[0] as i8 as i16),
                );
            }
        }
    }
}
