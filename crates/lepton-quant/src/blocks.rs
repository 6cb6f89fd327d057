//! GGML's 5-bit and K-quant blocks, kept in memory exactly as the file stores them (no repacking,
//! no f32 expansion: a matrix costs its file size), and the activation blocks their dot products
//! use.
//!
//! Weight blocks (little-endian, as ggml's `block_*` structs):
//! - Q5_0, 32 values, 22 bytes: f16 `d`, 4 bytes of high bits `qh`, 16 bytes of nibbles; value
//!   `v` is `(nibble v | bit v of qh << 4) − 16` times `d`, nibble `v < 16` the low half of byte
//!   `v`, nibble `v ≥ 16` the high half of byte `v − 16`.
//! - Q5_1, 32 values, 24 bytes: f16 `d`, f16 `m`, `qh`, nibbles; value `q · d + m`, `q` in 0..32.
//! - Q4_K, 256 values, 144 bytes: f16 `d`, f16 `dmin`, 12 bytes of eight 6-bit scales and eight
//!   6-bit mins, 128 bytes of nibbles; sub-block `s` (32 values) is `d·sc_s·q − dmin·m_s`;
//!   sub-blocks `2k` and `2k + 1` are the low and high nibbles of bytes `32k..32k + 32`.
//! - Q5_K, 256 values, 176 bytes: as Q4_K plus 32 bytes of fifth bits `qh` (bit `s` of byte `l`
//!   is value `l` of sub-block `s`), before the nibbles.
//! - Q6_K, 256 values, 210 bytes: 128 bytes of low nibbles `ql`, 64 bytes of high bit pairs `qh`,
//!   16 signed 8-bit scales (one per 16 values), f16 `d` last; value `d·sc·(q − 32)`.
//!
//! Activation blocks (our layout, quantized once per matmul row):
//! - [`Q8_32_BYTES`] per 32 values for Q5_0/Q5_1: 32 signed codes, f32 `d`, f32 `s = d·Σq`, with
//!   ggml's Q8_0/Q8_1 codes and `d`, `s` rounded through f16 as ggml stores them.
//! - [`Q8K_BYTES`] per 256 values for the K-quants (ggml's Q8_K): f32 `d`, 256 signed codes, and
//!   the sum of each 16 codes as i16.

use super::layout::{f16_at, quantize_block};

/// Values per K-quant super-block.
pub const QK_K: usize = 256;
/// Bytes per activation block of 32 values (Q5_0/Q5_1 dot products).
pub const Q8_32_BYTES: usize = 32 + 8;
/// Bytes per Q8_K activation block of 256 values.
pub const Q8K_BYTES: usize = 4 + QK_K + 2 * (QK_K / 16);

/// The block types stored as GGML blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockType {
    Q5_0,
    Q5_1,
    Q4K,
    Q5K,
    Q6K,
}

impl BlockType {
    /// Values per block.
    pub fn block_values(self) -> usize {
        match self {
            BlockType::Q5_0 | BlockType::Q5_1 => 32,
            _ => QK_K,
        }
    }
    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            BlockType::Q5_0 => 22,
            BlockType::Q5_1 => 24,
            BlockType::Q4K => 144,
            BlockType::Q5K => 176,
            BlockType::Q6K => 210,
        }
    }
    /// Bytes of one quantized activation row of `cols` values.
    pub fn act_row_bytes(self, cols: usize) -> usize {
        match self {
            BlockType::Q5_0 | BlockType::Q5_1 => cols / 32 * Q8_32_BYTES,
            _ => cols / QK_K * Q8K_BYTES,
        }
    }
    /// Quantize one activation row for this type's dot product.
    pub fn quantize_act(self, x: &[f32], out: &mut [u8]) {
        match self {
            BlockType::Q5_0 | BlockType::Q5_1 => quantize_row_q8_32(x, out),
            _ => quantize_row_q8_k(x, out),
        }
    }
}

/// Scale and min `j` (0..8) of a Q4_K/Q5_K block's 12 packed bytes (ggml's `get_scale_min_k4`).
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The 5-bit code `v` (0..32) of a Q5_0/Q5_1 block (`qh` at byte 0, nibbles at byte 4 of `b`).
#[inline(always)]
pub fn q5_code(b: &[u8], v: usize) -> u8 {
    let qh = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let nib = if v < 16 {
        b[4 + v] & 0x0f
    } else {
        b[4 + v - 16] >> 4
    };
    nib | (((qh >> v) & 1) as u8) << 4
}

/// The 6-bit code and the scale of value `t` (0..256) of a Q6_K block.
#[inline(always)]
pub fn q6k_code_scale(b: &[u8], t: usize) -> (u8, i8) {
    let (half, r) = (t / 128, t % 128);
    let (quarter, l) = (r / 32, r % 32);
    let ql = &b[64 * half..];
    let qh = b[128 + 32 * half + l];
    let lo = match quarter {
        0 => ql[l] & 0x0f,
        1 => ql[l + 32] & 0x0f,
        2 => ql[l] >> 4,
        _ => ql[l + 32] >> 4,
    };
    let code = lo | ((qh >> (2 * quarter)) & 3) << 4;
    let sc = b[192 + 8 * half + 2 * quarter + l / 16] as i8;
    (code, sc)
}

/// The 4- or 5-bit code of value `t` of a Q4_K (`high = false`) or Q5_K block, and its sub-block.
#[inline(always)]
pub fn qk_code(b: &[u8], t: usize, five: bool) -> u8 {
    let qs = if five { &b[48..] } else { &b[16..] };
    let (k, r) = (t / 64, t % 64);
    let byte = qs[32 * k + r % 32];
    let nib = if r < 32 { byte & 0x0f } else { byte >> 4 };
    if five {
        let sub = t / 32;
        nib | ((b[16 + t % 32] >> sub) & 1) << 4
    } else {
        nib
    }
}

/// Dequantize a row of `out.len()` values from its GGML blocks (ggml's `dequantize_row_*`
/// formulas, so the results equal candle's and ggml's).
pub fn dequantize_row(t: BlockType, bytes: &[u8], out: &mut [f32]) {
    let bb = t.block_bytes();
    for (b, o) in bytes
        .chunks_exact(bb)
        .zip(out.chunks_exact_mut(t.block_values()))
    {
        match t {
            BlockType::Q5_0 => {
                let d = f16_at(b, 0);
                for (v, o) in o.iter_mut().enumerate() {
                    *o = (q5_code(&b[2..], v) as i32 - 16) as f32 * d;
                }
            }
            BlockType::Q5_1 => {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                for (v, o) in o.iter_mut().enumerate() {
                    *o = q5_code(&b[4..], v) as f32 * d + m;
                }
            }
            BlockType::Q4K | BlockType::Q5K => {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                for (v, o) in o.iter_mut().enumerate() {
                    let (sc, m) = scale_min_k4(v / 32, &b[4..16]);
                    let q = qk_code(b, v, t == BlockType::Q5K);
                    *o = d * sc as f32 * q as f32 - dmin * m as f32;
                }
            }
            BlockType::Q6K => {
                let d = f16_at(b, 208);
                for (v, o) in o.iter_mut().enumerate() {
                    let (q, sc) = q6k_code_scale(b, v);
                    *o = d * sc as f32 * (q as i32 - 32) as f32;
                }
            }
        }
    }
}

/// One activation row to blocks of 32 (see the module docs): ggml's Q8_0/Q8_1 codes and scale.
pub fn quantize_row_q8_32(x: &[f32], out: &mut [u8]) {
    let mut codes = [0u8; 32];
    for (xb, ob) in x.chunks_exact(32).zip(out.chunks_exact_mut(Q8_32_BYTES)) {
        let (d, s, _) = quantize_block(xb, &mut codes);
        ob[..32].copy_from_slice(&codes);
        ob[32..36].copy_from_slice(&d.to_le_bytes());
        ob[36..40].copy_from_slice(&s.to_le_bytes());
    }
}

/// One activation row to Q8_K blocks, as ggml's `quantize_row_q8_K_ref`: the value of largest
/// magnitude `max` maps to −127 (`iscale = −127 / max`), codes `min(127, round(iscale · x))`
/// (ties to even), `d = 1 / iscale`, and the sums of each 16 codes.
pub fn quantize_row_q8_k(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q8K_BYTES)) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            ob.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (o, &v) in ob[4..4 + QK_K].iter_mut().zip(xb) {
            let q = ((iscale * v + 12_582_912.0) - 12_582_912.0) as i32;
            *o = q.min(127) as i8 as u8;
        }
        for g in 0..QK_K / 16 {
            let s: i16 = ob[4 + 16 * g..4 + 16 * g + 16]
                .iter()
                .map(|&c| c as i8 as i16)
                .sum();
            ob[4 + QK_K + 2 * g..4 + QK_K + 2 * g + 2].copy_from_slice(&s.to_le_bytes());
        }
        ob[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

/// The sum of the 16 activation codes of group `g` of a Q8_K block.
#[inline(always)]
pub(crate) fn bsum(ab: &[u8], g: usize) -> i32 {
    let at = 4 + QK_K + 2 * g;
    i16::from_le_bytes([ab[at], ab[at + 1]]) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::f32_at;

    #[test]
    fn q8_k_codes_scale_and_sums() {
        let x: Vec<f32> = (0..2 * QK_K)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 9.0)
            .collect();
        let mut out = vec![0xffu8; 2 * Q8K_BYTES];
        quantize_row_q8_k(&x, &mut out);
        for (xb, ob) in x.chunks_exact(QK_K).zip(out.chunks_exact(Q8K_BYTES)) {
            let d = f32_at(ob, 0);
            for (v, &c) in xb.iter().zip(&ob[4..4 + QK_K]) {
                assert!((c as i8 as f32 * d - v).abs() <= d.abs() * 0.5001);
            }
            for g in 0..16 {
                let s: i32 = ob[4 + 16 * g..20 + 16 * g]
                    .iter()
                    .map(|&c| c as i8 as i32)
                    .sum();
                let at = 4 + QK_K + 2 * g;
                assert_eq!(i16::from_le_bytes([ob[at], ob[at + 1]]) as i32, s);
            }
        }
        // An all-zero block is all zeros, scale included.
        let mut z = vec![0xffu8; Q8K_BYTES];
        quantize_row_q8_k(&[0.0; QK_K], &mut z);
        assert!(z.iter().all(|&b| b == 0));
    }
}
