//! Q5_0/Q5_1 tiles with AVX512-VNNI: `W` weight rows × `R` activation rows per pass over the
//! blocks, bit-identical to [`super::blocks::scalar`].
//!
//! The definition's lane sums `S_l = Σ (q − 16) x` (Q5_0) or `Σ q x` (Q5_1) are exact integers, so
//! any exact way of forming them gives the same bits: here one `vpdpbusd` of a weight block's
//! unsigned 5-bit codes with the activation codes, started (Q5_0) from the lanes' `−16 · Σ x`, one
//! more `vpdpbusd` per activation block shared by the tile's `W` weight rows. Then, as in the
//! definition, one conversion and one fused multiply-add by `d_w · d_x` per block and pair, and
//! for Q5_1 the `m_w · s_x` term. Each activation block is loaded once for `W` weight rows and each
//! weight block unpacked once for `R` activation rows (the AVX2 kernel, [`super::blocks_x86`],
//! unpacks one weight row per call and reads every activation block once per weight row).

use std::arch::x86_64::*;

use super::blocks_x86::{bytes_from_bits_32, f16c_at};
use super::hsum8;
use super::x86::dpbusd;
use crate::blocks::{BlockType, Q8_32_BYTES};
use crate::layout::f32_at;

/// Most weight rows per tile.
pub const TILE_W: usize = 4;

/// `out[r · stride + k] = w_k · a[r]` for the `W` weight rows `w_k = w[k · row_bytes..][..row_bytes]`
/// (Q5_0 or Q5_1 blocks) and `R` activation rows quantized by [`BlockType::quantize_act`].
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C, AVX512-VNNI and AVX512-VL; `t` is Q5_0 or Q5_1; `w` holds
/// `W` rows of `row_bytes` and each `a[r]` the matching activation row; `out` is valid for writes
/// at those offsets and no other thread accesses them.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub unsafe fn dot_tile_q5<const W: usize, const R: usize>(
    t: BlockType,
    w: &[u8],
    row_bytes: usize,
    a: &[&[u8]; R],
    out: *mut f32,
    stride: usize,
) {
    debug_assert!(matches!(t, BlockType::Q5_0 | BlockType::Q5_1));
    // SAFETY: the CPU features and `out` are the caller's promise; every load reads 16 or 32
    // bytes inside a block of `w` or of an activation row (checked by the slice indexing).
    unsafe {
        let five0 = t == BlockType::Q5_0;
        let bb = t.block_bytes();
        let (qh_at, qs_at) = if five0 { (2, 6) } else { (4, 8) };
        let m4 = _mm256_set1_epi8(0x0f);
        let bit4 = _mm256_set1_epi8(0x10);
        let sixteen = _mm256_set1_epi8(16);
        let zero = _mm256_setzero_si256();
        let mut acc = [[_mm256_setzero_ps(); R]; W];
        let mut summ = [[0f32; R]; W];
        for i in 0..row_bytes / bb {
            let mut codes = [zero; W];
            let mut dw = [0f32; W];
            let mut mw = [0f32; W];
            for k in 0..W {
                let b = &w[k * row_bytes + i * bb..k * row_bytes + (i + 1) * bb];
                let qs = _mm_loadu_si128(b[qs_at..qs_at + 16].as_ptr().cast());
                let nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), m4);
                let bits = bytes_from_bits_32(&b[qh_at..qh_at + 4]);
                codes[k] = _mm256_or_si256(nib, _mm256_and_si256(bits, bit4));
                dw[k] = f16c_at(b, 0);
                if !five0 {
                    mw[k] = f16c_at(b, 2);
                }
            }
            for r in 0..R {
                let ab = &a[r][i * Q8_32_BYTES..(i + 1) * Q8_32_BYTES];
                let x = _mm256_loadu_si256(ab.as_ptr().cast());
                let dx = f32_at(ab, 32);
                let start = if five0 {
                    _mm256_sub_epi32(zero, dpbusd(zero, sixteen, x))
                } else {
                    zero
                };
                for k in 0..W {
                    let s = dpbusd(start, codes[k], x);
                    if !five0 {
                        summ[k][r] = mw[k].mul_add(f32_at(ab, 36), summ[k][r]);
                    }
                    let dd = _mm256_set1_ps(dw[k] * dx);
                    acc[k][r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), acc[k][r]);
                }
            }
        }
        for k in 0..W {
            for r in 0..R {
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[k][r]);
                *out.add(r * stride + k) = if five0 {
                    hsum8(lanes)
                } else {
                    hsum8(lanes) + summ[k][r]
                };
            }
        }
    }
}

#[cfg(test)]
pub(in crate::kernels) mod tests {
    use super::super::{blocks::scalar, dot_blocks_tile, Level, BLOCK_ROWS};
    use super::*;

    /// Every tile shape up to `TILE_W` weight rows × `BLOCK_ROWS` activation rows over `w`
    /// (rows of `rb` bytes) and `rows` equals the scalar definition bit for bit, and writes
    /// nothing past the tile. Shared with the K-quant tiles' test.
    pub(in crate::kernels) fn assert_tiles_equal_the_definition(
        t: BlockType,
        w: &[u8],
        rb: usize,
        rows: &[&[u8]],
        blocks: usize,
    ) {
        for nw in 1..=TILE_W {
            for nr in 1..=BLOCK_ROWS {
                let stride = TILE_W + 1;
                let mut out = vec![f32::NAN; BLOCK_ROWS * stride];
                // SAFETY: VNNI checked above; `out` has `nr` rows of `stride > nw`.
                unsafe {
                    dot_blocks_tile(
                        t,
                        Level::Vnni,
                        &w[..nw * rb],
                        rb,
                        &rows[..nr],
                        out.as_mut_ptr(),
                        stride,
                    )
                };
                for r in 0..nr {
                    for j in 0..nw {
                        let want = scalar(t, &w[j * rb..(j + 1) * rb], rows[r]);
                        let got = out[r * stride + j];
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{t:?}, {blocks} blocks, tile {nw}x{nr}, ({r}, {j}): {got} vs {want}"
                        );
                    }
                    assert!(out[r * stride + nw].is_nan(), "wrote past the tile");
                }
            }
        }
    }

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Every tile shape (1-4 weight rows × 1-4 activation rows) equals the plain-Rust definition
    /// bit for bit, on random raw blocks (every code pattern, both signs of `d` and `m`) and
    /// activations with codes at ±127.
    #[test]
    fn q5_tiles_equal_the_definition() {
        if Level::detect() != Level::Vnni {
            eprintln!("skipped: this CPU has no AVX512-VNNI");
            return;
        }
        for t in [BlockType::Q5_0, BlockType::Q5_1] {
            for blocks in [1usize, 3, 20] {
                let bb = t.block_bytes();
                let rb = blocks * bb;
                let mut s = 7 + blocks as u64;
                let mut w: Vec<u8> = (0..TILE_W * rb)
                    .map(|_| {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (s >> 40) as u8
                    })
                    .collect();
                for (i, b) in w.chunks_exact_mut(bb).enumerate() {
                    let d = half::f16::from_f32(if i % 3 == 0 { -0.013 } else { 0.021 });
                    b[0..2].copy_from_slice(&d.to_bits().to_le_bytes());
                    if t == BlockType::Q5_1 {
                        let m = half::f16::from_f32(if i % 2 == 0 { -0.3 } else { 0.05 });
                        b[2..4].copy_from_slice(&m.to_bits().to_le_bytes());
                    }
                }
                let k = blocks * 32;
                let acts: Vec<Vec<u8>> = (0..BLOCK_ROWS as u64)
                    .map(|r| {
                        let mut x = lcg(k, 100 + r);
                        x[0] = 5.0; // a code of +127 in the first block
                        x[33.min(k - 1)] = -5.0;
                        let mut a = vec![0u8; t.act_row_bytes(k)];
                        t.quantize_act(&x, &mut a);
                        a
                    })
                    .collect();
                let rows: Vec<&[u8]> = acts.iter().map(Vec::as_slice).collect();
                assert_tiles_equal_the_definition(t, &w, rb, &rows, blocks);
            }
        }
    }
}
