//! Where every code and scale sits in the kernels' weight and activation rows.
//!
//! A row of `nb` blocks of [`QK`] values is padded to `nbp` blocks: `nb` rounded up to an even
//! number, or to a multiple of 8 when that is one block away (padding blocks are zero). The first
//! `8 · (nbp / 8)` blocks form *groups* of eight, stored interleaved: the codes of a group are
//! eight 32-byte vectors, vector `k` holding values `4k..4k+4` of block `b` at bytes `4b..4b+4`,
//! so that eight multiply-accumulates of 4-byte dot products (`vpdpbusd`) leave block `b`'s whole
//! integer dot product in lane `b`, with no horizontal reduction. The rest (the *tail*: 0, 2, 4
//! or 6 blocks) is stored plainly, 32 bytes per block.
//!
//! - Activations (Q8_1/Q8_0 codes, one byte per value): the code vectors above, then per block an
//!   f32 scale `d`, an f32 `s = d · Σq` (Q8_1) and an i32 `128 · Σq` (for the unsigned Q8_0
//!   weights' offset); [`Q8_BYTES`] per block.
//! - Q8_0 weights: the same code positions (codes offset by 128, unsigned), then f16 scales.
//! - Q4_1 weights: half a byte per value. In a group, the vectors `k` and `k + 4` share 32 bytes
//!   (low and high nibble), 128 bytes per group; in the tail, blocks `2p` and `2p + 1` share 32
//!   bytes (low and high nibble of byte `i` hold value `i` of each). Then the f16 scales `d` and
//!   the f16 minimums `m`, one per block.

use half::f16;

/// Values per quantization block (Q4_1, Q8_0, Q8_1).
pub const QK: usize = 32;
/// Blocks per interleaved group.
pub const GROUP: usize = 8;
/// Bytes per quantized activation block: 32 codes, f32 `d`, f32 `s`, i32 `128 · Σq`.
pub const Q8_BYTES: usize = QK + 12;

/// Blocks per row after padding (see the module docs).
pub fn padded_blocks(cols: usize) -> usize {
    let nb = cols / QK;
    let tail = (nb % GROUP).div_ceil(2) * 2;
    nb / GROUP * GROUP + if tail == GROUP { GROUP } else { tail }
}

/// Byte of value `v` of block `b` in a row of one-byte codes with `nbp` blocks.
#[inline]
pub fn byte_code_at(nbp: usize, b: usize, v: usize) -> usize {
    let full = nbp / GROUP * GROUP;
    if b < full {
        (b / GROUP) * GROUP * QK + (v / 4) * QK + 4 * (b % GROUP) + v % 4
    } else {
        b * QK + v
    }
}

/// Byte and nibble shift of value `v` of block `b` in a Q4_1 row with `nbp` blocks.
#[inline]
pub fn nibble_at(nbp: usize, b: usize, v: usize) -> (usize, u32) {
    let full = nbp / GROUP * GROUP;
    if b < full {
        let k = v / 4;
        let byte = (b / GROUP) * GROUP * QK / 2 + (k % 4) * QK + 4 * (b % GROUP) + v % 4;
        (byte, 4 * (k / 4) as u32)
    } else {
        let p = b - full;
        (full * QK / 2 + (p / 2) * QK + v, 4 * (p % 2) as u32)
    }
}

#[inline]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

#[inline]
pub(crate) fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// GGML Q4_1 rows (20-byte blocks: f16 `d`, f16 `m`, 16 bytes of codes with values `i` and `i + 16`
/// in the low and high nibble of byte `i`) to the kernel layout.
pub fn repack_q4_1(rows: usize, cols: usize, data: &[u8]) -> Vec<u8> {
    let nb = cols / QK;
    let nbp = padded_blocks(cols);
    let mut out = vec![0u8; rows * nbp * 20];
    for (src, dst) in data
        .chunks_exact(nb * 20)
        .zip(out.chunks_exact_mut(nbp * 20))
    {
        for (b, blk) in src.chunks_exact(20).enumerate() {
            for i in 0..QK / 2 {
                for (v, code) in [(i, blk[4 + i] & 0x0f), (i + QK / 2, blk[4 + i] >> 4)] {
                    let (at, shift) = nibble_at(nbp, b, v);
                    dst[at] |= code << shift;
                }
            }
            dst[nbp * 16 + 2 * b..nbp * 16 + 2 * b + 2].copy_from_slice(&blk[0..2]);
            dst[nbp * 18 + 2 * b..nbp * 18 + 2 * b + 2].copy_from_slice(&blk[2..4]);
        }
    }
    out
}

/// GGML Q8_0 rows (34-byte blocks: f16 `d`, 32 signed codes) to the kernel layout: codes offset by
/// 128 (unsigned, for `vpdpbusd`; padding blocks hold 128, i.e. zero), then the f16 scales.
pub fn repack_q8_0(rows: usize, cols: usize, data: &[u8]) -> Vec<u8> {
    let nb = cols / QK;
    let nbp = padded_blocks(cols);
    let mut out = vec![0u8; rows * nbp * 34];
    for (src, dst) in data
        .chunks_exact(nb * 34)
        .zip(out.chunks_exact_mut(nbp * 34))
    {
        dst[..nbp * QK].fill(0x80);
        for (b, blk) in src.chunks_exact(34).enumerate() {
            for (v, &c) in blk[2..].iter().enumerate() {
                dst[byte_code_at(nbp, b, v)] = c ^ 0x80;
            }
            dst[nbp * 32 + 2 * b..nbp * 32 + 2 * b + 2].copy_from_slice(&blk[0..2]);
        }
    }
    out
}

/// Quantize one activation row (`cols` values) to Q8_1 in the kernel layout (`out` is
/// `padded_blocks(cols) · Q8_BYTES` bytes), as ggml's `quantize_row_q8_1` (AVX2): per block
/// `d = max|x| / 127`, `q = round(x / d)` ties-to-even, `d` and `s = d · Σq` rounded through f16.
/// The same codes and `d` are ggml's Q8_0 quantization.
pub fn quantize_row_q8_1(x: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU feature was just checked.
        return unsafe { quantize_row_q8_1_avx2(x, out) };
    }
    quantize_row_q8_1_generic(x, out)
}

/// The same code compiled for AVX2 (the block loops vectorise).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_row_q8_1_avx2(x: &[f32], out: &mut [u8]) {
    quantize_row_q8_1_generic(x, out)
}

#[inline(always)]
fn quantize_row_q8_1_generic(x: &[f32], out: &mut [u8]) {
    let nbp = out.len() / Q8_BYTES;
    let (codes, scales) = out.split_at_mut(nbp * QK);
    let mut block = [0u8; QK];
    for (b, xb) in x.chunks_exact(QK).enumerate() {
        let (d, s, sum) = quantize_block(xb, &mut block);
        // Values 4k..4k+4 stay together in every layout.
        for (k, quad) in block.chunks_exact(4).enumerate() {
            let at = byte_code_at(nbp, b, 4 * k);
            codes[at..at + 4].copy_from_slice(quad);
        }
        scales[4 * b..4 * b + 4].copy_from_slice(&d.to_le_bytes());
        scales[nbp * 4 + 4 * b..nbp * 4 + 4 * b + 4].copy_from_slice(&s.to_le_bytes());
        scales[nbp * 8 + 4 * b..nbp * 8 + 4 * b + 4].copy_from_slice(&(128 * sum).to_le_bytes());
    }
    let done = x.len() / QK;
    for b in done..nbp {
        for v in 0..QK {
            codes[byte_code_at(nbp, b, v)] = 0;
        }
        for at in [4 * b, nbp * 4 + 4 * b, nbp * 8 + 4 * b] {
            scales[at..at + 4].fill(0);
        }
    }
}

/// One block of [`QK`] values to codes; returns `d` and `s = d · Σq` (both rounded through f16)
/// and `Σq`.
#[inline(always)]
pub(crate) fn quantize_block(xb: &[f32], codes: &mut [u8; QK]) -> (f32, f32, i32) {
    // max |x| in eight lanes (max is exact, so the order does not matter).
    let mut m = [0f32; 8];
    for c in xb.chunks_exact(8) {
        for l in 0..8 {
            m[l] = m[l].max(c[l].abs());
        }
    }
    let amax = m.iter().fold(0f32, |a, &v| a.max(v));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (o, v) in codes.iter_mut().zip(xb) {
        // Round half to even, as `round_ties_even` (|v · id| ≤ 127 ≪ 2^22), without a libm call.
        let q = ((v * id + 12_582_912.0) - 12_582_912.0) as i32;
        sum += q;
        *o = q as i8 as u8;
    }
    (
        f16::from_f32(d).to_f32(),
        f16::from_f32(d * sum as f32).to_f32(),
        sum,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_keeps_tails_short() {
        let nbp = |nb: usize| padded_blocks(nb * QK);
        assert_eq!(
            [1, 2, 7, 8, 11, 15, 18, 48].map(nbp),
            [2, 2, 8, 8, 12, 16, 18, 48]
        );
    }

    /// Every (block, value) has its own byte (codes) or nibble (Q4_1), inside the row.
    #[test]
    fn positions_are_a_bijection() {
        for nb in [1, 2, 6, 8, 9, 11, 18, 23] {
            let nbp = padded_blocks(nb * QK);
            let mut bytes = vec![0u8; nbp * QK];
            let mut nibbles = vec![0u8; nbp * QK / 2];
            for b in 0..nbp {
                for v in 0..QK {
                    bytes[byte_code_at(nbp, b, v)] += 1;
                    let (at, shift) = nibble_at(nbp, b, v);
                    nibbles[at] += 1 << shift;
                }
            }
            assert!(bytes.iter().all(|&c| c == 1), "{nb} blocks: bytes");
            assert!(nibbles.iter().all(|&c| c == 0x11), "{nb} blocks: nibbles");
        }
    }

    #[test]
    fn quantized_row_holds_codes_scales_and_sums() {
        let x: Vec<f32> = (0..3 * QK).map(|i| (i as f32 - 40.0) / 7.0).collect();
        let nbp = padded_blocks(x.len());
        let mut out = vec![0xffu8; nbp * Q8_BYTES];
        quantize_row_q8_1(&x, &mut out);
        for b in 0..nbp {
            let d = f32_at(&out, nbp * QK + 4 * b);
            let codes: Vec<i32> = (0..QK)
                .map(|v| out[byte_code_at(nbp, b, v)] as i8 as i32)
                .collect();
            if b >= 3 {
                assert!(d == 0.0 && codes.iter().all(|&c| c == 0));
                continue;
            }
            // Half a step, plus d's rounding to f16 (2^-11 relative) times |q| ≤ 127.
            for (v, &q) in codes.iter().enumerate() {
                assert!((q as f32 * d - x[b * QK + v]).abs() <= d * 0.57);
            }
            let sum: i32 = codes.iter().sum();
            assert_eq!(i32_at(&out, nbp * QK + 8 * nbp + 4 * b), 128 * sum);
        }
    }
}
