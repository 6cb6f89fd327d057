//! Quantized weight matrices and their matmul, our CPU kernel for GGUF models.
//!
//! candle 0.11.1's CPU `QMatMul` has SIMD dot products for Q4_0 and Q8_0 but falls back to scalar code
//! for Q4_1 (the type of SmolLM2's weights), which makes decoding several times slower than llama.cpp.
//! This module holds a weight matrix `W` (`n` output rows × `k` inputs, GGML block layout, row-major)
//! and computes `Y = X Wᵀ` for `m` activation rows `X` (`m × k`, f32):
//!
//! 1. each activation row is quantized once per call to the weight type's dot-product type, exactly as
//!    ggml does (Q4_1 → Q8_1, Q8_0 → Q8_0: per 32-value block `d = max|x| / 127`, `q = round(x · 127 /
//!    max|x|)` ties-to-even, `d` stored as f16, Q8_1 also keeps `s = d · Σq`);
//! 2. output columns are split in one contiguous range per thread of the decoder's team
//!    ([`crate::llama::pool`]); each weight row is unpacked once per block and dotted against up to
//!    [`ROW_GROUP`] activation rows, so batched decoding reads each weight once per group.
//!
//! Q4_1 weights are repacked at load for the SIMD kernel (see [`QMatrix::new`]): per row, the 4-bit
//! codes of blocks `2p` and `2p + 1` share 32 bytes (low and high nibble of byte `i` hold value `i`
//! of each), followed by the row's f16 scales and then its f16 minimums. A dot product keeps eight
//! f32 lanes for even blocks and eight for odd blocks (lane `l` sums the products of values
//! `4l..4l+4`, scaled by `d_w · d_x` of the block), and the minimum terms `m_w · s_x` in eight lanes
//! per group of eight blocks; [`kernels::scalar_q4_1`] spells out the order and the AVX2 and
//! AVX512-VNNI kernels follow it bit for bit.
//!
//! Every output element is computed by the same sequence of floating-point operations whatever `m` is
//! and whichever other rows share the call, so a sequence decoded in a batch gets bit-identical logits
//! to the same sequence decoded alone. Types without a kernel here (K-quants, F16, ...) are
//! dequantized to f32 at load time.

use std::sync::atomic::{AtomicUsize, Ordering};

use half::f16;

use crate::llama::pool::{split, Pool};

/// Values per quantization block (Q4_1, Q8_0, Q8_1).
pub const QK: usize = 32;
/// Activation rows dotted against one unpacked weight block.
pub const ROW_GROUP: usize = 4;

/// The storage type of a [`QMatrix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    /// Plain f32 (norms, and any GGML type we dequantize at load).
    F32,
    /// GGML Q4_1: per 32 values an f16 scale `d`, an f16 minimum `m` and 16 bytes of 4-bit codes.
    Q4_1,
    /// GGML Q8_0: per 32 values an f16 scale `d` and 32 signed bytes.
    Q8_0,
}

impl QType {
    /// Bytes per block of [`QK`] values (4 per value for F32).
    pub fn block_bytes(self) -> usize {
        match self {
            QType::F32 => 4 * QK,
            QType::Q4_1 => 20,
            QType::Q8_0 => 34,
        }
    }
}

/// A weight matrix of `rows` outputs × `cols` inputs in GGML layout (row-major, blocks along `cols`).
#[derive(Clone)]
pub struct QMatrix {
    qtype: QType,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QMatrix({:?}, {}x{})", self.qtype, self.rows, self.cols)
    }
}

impl QMatrix {
    /// Wrap raw GGML bytes. `cols` must be a multiple of 32 and `data` exactly `rows × cols` values.
    pub fn new(qtype: QType, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self, String> {
        if cols % QK != 0 {
            return Err(format!(
                "{cols} columns is not a multiple of the block size {QK}"
            ));
        }
        let want = rows * cols / QK * qtype.block_bytes();
        if data.len() != want {
            return Err(format!(
                "{:?} {rows}x{cols} needs {want} bytes, got {}",
                qtype,
                data.len()
            ));
        }
        let data = match qtype {
            QType::Q4_1 => repack_q4_1(rows, cols, &data),
            QType::Q8_0 => repack_q8_0(rows, cols, &data),
            QType::F32 => data,
        };
        Ok(Self {
            qtype,
            rows,
            cols,
            data,
        })
    }

    /// An f32 matrix from values in row-major order.
    pub fn from_f32(rows: usize, cols: usize, values: &[f32]) -> Result<Self, String> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(QType::F32, rows, cols, data)
    }

    /// Stack matrices with the same type and column count on top of each other (fused projections).
    pub fn concat_rows(parts: &[QMatrix]) -> Option<QMatrix> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.qtype != first.qtype || p.cols != first.cols)
        {
            return None;
        }
        let data = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        Some(QMatrix {
            qtype: first.qtype,
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            data,
        })
    }

    pub fn qtype(&self) -> QType {
        self.qtype
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }

    fn row_bytes(&self) -> usize {
        match self.qtype {
            QType::Q4_1 => padded_blocks(self.cols) * 20,
            QType::Q8_0 => padded_blocks(self.cols) * 34,
            QType::F32 => self.cols * 4,
        }
    }

    /// Dequantize one row into `out` (`cols` values): an embedding lookup.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let bytes = &self.data[row * self.row_bytes()..(row + 1) * self.row_bytes()];
        if self.qtype == QType::Q4_1 {
            let nbp = padded_blocks(self.cols);
            for (b, o) in out[..self.cols].chunks_exact_mut(QK).enumerate() {
                let codes = &bytes[(b / 2) * 32..(b / 2) * 32 + 32];
                let d = f16_at(bytes, nbp * 16 + 2 * b);
                let m = f16_at(bytes, nbp * 18 + 2 * b);
                let shift = 4 * (b % 2);
                for (o, &c) in o.iter_mut().zip(codes) {
                    *o = ((c >> shift) & 0x0f) as f32 * d + m;
                }
            }
            return;
        }
        if self.qtype == QType::Q8_0 {
            let nbp = padded_blocks(self.cols);
            for (b, o) in out[..self.cols].chunks_exact_mut(QK).enumerate() {
                let d = f16_at(bytes, nbp * 32 + 2 * b);
                for (o, &c) in o.iter_mut().zip(&bytes[b * QK..(b + 1) * QK]) {
                    *o = (c ^ 0x80) as i8 as f32 * d;
                }
            }
            return;
        }
        let bb = self.qtype.block_bytes();
        for (b, blk) in bytes.chunks_exact(bb).enumerate() {
            let o = &mut out[b * QK..(b + 1) * QK];
            match self.qtype {
                QType::F32 => {
                    for (o, c) in o.iter_mut().zip(blk.chunks_exact(4)) {
                        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    }
                }
                QType::Q4_1 | QType::Q8_0 => unreachable!("handled above"),
            }
        }
    }

    /// `out[r][j] = Σ_i x[r][i] · W[j][i]` for `m = x.len() / cols` rows; `out` is `m × rows`.
    pub fn matmul(&self, x: &[f32], out: &mut [f32], scratch: &mut Vec<u8>) {
        self.matmul_strided(x, out, self.rows, 0, scratch)
    }

    /// As [`QMatrix::matmul`], writing row `r` of the result to `out[r · stride + offset ..][..rows]`
    /// (to fill column blocks of a wider output).
    pub fn matmul_strided(
        &self,
        x: &[f32],
        out: &mut [f32],
        stride: usize,
        offset: usize,
        scratch: &mut Vec<u8>,
    ) {
        let m = x.len() / self.cols;
        assert_eq!(x.len(), m * self.cols, "matmul input length");
        assert!(offset + self.rows <= stride, "matmul output columns");
        assert!(out.len() >= m * stride, "matmul output length");
        let act = match self.qtype {
            QType::F32 => Activations::F32(x),
            QType::Q4_1 | QType::Q8_0 => {
                let len = padded_blocks(self.cols) * Q8_BYTES;
                scratch.clear();
                scratch.resize(m * len, 0);
                if m >= 4 {
                    // Rows split over the team (each row's bytes depend on that row only).
                    let pool = Pool::global();
                    let parts = pool.threads();
                    let dst = SendPtr(scratch.as_mut_ptr() as *mut f32);
                    pool.run(&|part| {
                        let dst = &dst;
                        for r in split(m, parts, part, 1) {
                            // SAFETY: each part writes its own rows of `scratch`.
                            let sr = unsafe {
                                std::slice::from_raw_parts_mut((dst.0 as *mut u8).add(r * len), len)
                            };
                            quantize_row_q8_1_split(&x[r * self.cols..(r + 1) * self.cols], sr);
                        }
                    });
                } else {
                    for (xr, sr) in x.chunks_exact(self.cols).zip(scratch.chunks_exact_mut(len)) {
                        quantize_row_q8_1_split(xr, sr);
                    }
                }
                Activations::Q8(scratch)
            }
        };
        let level = kernels::Level::detect();
        let n = self.rows;
        let out_ptr = SendPtr(out.as_mut_ptr());
        let pool = Pool::global();
        let parts = pool.threads();
        // Several rows (batched decoding, prefill): chunks of columns taken from a shared counter,
        // so a thread that starts late or is preempted does less. One row: a fixed half each
        // (the counter's cache-line traffic costs more than it saves there).
        let chunk = if m >= 4 {
            (n / (parts * 8)).max(16).next_multiple_of(4)
        } else {
            n.div_ceil(parts).next_multiple_of(4)
        };
        let next = AtomicUsize::new(0);
        pool.run(&|part| {
            let out_ptr = &out_ptr;
            if let Activations::Q8(a) = &act {
                let mut c = if m >= 4 {
                    next.fetch_add(1, Ordering::Relaxed)
                } else {
                    part
                };
                while c * chunk < n {
                    let cols = c * chunk..((c + 1) * chunk).min(n);
                    // SAFETY: each chunk of columns is taken by one part only.
                    unsafe { self.tiled_cols(level, a, m, cols, out_ptr, stride, offset) };
                    if m < 4 {
                        return;
                    }
                    c = next.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            let cols = split(n, parts, part, 4);
            let mut res = [0f32; ROW_GROUP];
            for j in cols {
                let w = &self.data[j * self.row_bytes()..(j + 1) * self.row_bytes()];
                let mut r0 = 0;
                while r0 < m {
                    let g = (m - r0).min(ROW_GROUP);
                    self.dot_group(w, &act, r0, g, &mut res);
                    for (i, v) in res[..g].iter().enumerate() {
                        // SAFETY: each (row, column) element is written by exactly one part.
                        unsafe { *out_ptr.0.add((r0 + i) * stride + offset + j) = *v };
                    }
                    r0 += g;
                }
            }
        });
    }

    /// Columns `cols` of a quantized matmul, in tiles of weight rows × activation rows.
    ///
    /// # Safety
    /// `out` must be valid for the elements `(r, offset + j)`, `j` in `cols`, and no other thread
    /// may write them.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tiled_cols(
        &self,
        level: kernels::Level,
        a: &[u8],
        m: usize,
        cols: std::ops::Range<usize>,
        out: &SendPtr,
        stride: usize,
        offset: usize,
    ) {
        let len = padded_blocks(self.cols) * Q8_BYTES;
        let rb = self.row_bytes();
        // One activation row (decoding): four weight rows at a time; else 2 × 4.
        let (jt_max, g_max) = if m == 1 { (4, 1) } else { (2, ROW_GROUP) };
        let mut res = [0f32; 16];
        let mut j = cols.start;
        while j < cols.end {
            let jt = if cols.end - j >= jt_max { jt_max } else { 1 };
            let ws: [&[u8]; 4] = std::array::from_fn(|t| {
                let row = j + t.min(jt - 1);
                &self.data[row * rb..(row + 1) * rb]
            });
            let mut r0 = 0;
            while r0 < m {
                let g = (m - r0).min(g_max);
                let rows: [&[u8]; ROW_GROUP] = std::array::from_fn(|i| {
                    let r = r0 + i.min(g - 1);
                    &a[r * len..(r + 1) * len]
                });
                // The next tile's weights are prefetched once, by the first group of rows.
                let prefetch = r0 == 0;
                if self.qtype == QType::Q4_1 {
                    kernels::dot_q4_1(level, &ws[..jt], &rows[..g], &mut res, prefetch);
                } else {
                    kernels::dot_q8_0(level, &ws[..jt], &rows[..g], &mut res, prefetch);
                }
                for t in 0..jt {
                    for i in 0..g {
                        *out.0.add((r0 + i) * stride + offset + j + t) = res[t * g + i];
                    }
                }
                r0 += g;
            }
            j += jt;
        }
    }

    fn dot_group(&self, w: &[u8], act: &Activations<'_>, r0: usize, g: usize, res: &mut [f32]) {
        match (self.qtype, act) {
            (QType::F32, Activations::F32(x)) => {
                for (i, r) in res[..g].iter_mut().enumerate() {
                    let xr = &x[(r0 + i) * self.cols..(r0 + i + 1) * self.cols];
                    *r = dot_f32_bytes(w, xr);
                }
            }
            _ => unreachable!("activation type follows the weight type"),
        }
    }
}

struct SendPtr(*mut f32);
// SAFETY: the pointer is only used for disjoint writes inside one `matmul` call.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

enum Activations<'a> {
    F32(&'a [f32]),
    Q8(&'a [u8]),
}

/// Bytes per quantized activation block: f32 `d`, f32 `s` (`d · Σq`, Q8_1 only), 32 × i8.
pub const Q8_BYTES: usize = 8 + QK;

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Quantize one activation row to blocks of [`Q8_BYTES`], as ggml's `quantize_row_q8_0/q8_1` (AVX2).
pub fn quantize_row_q8(x: &[f32], out: &mut [u8], with_sum: bool) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(Q8_BYTES)) {
        let (codes, rest) = ob.split_at_mut(8).1.split_at_mut(QK);
        debug_assert!(rest.is_empty());
        let (d16, s16) = quantize_block(xb, codes);
        let s16 = if with_sum { s16 } else { 0.0 };
        ob[0..4].copy_from_slice(&d16.to_le_bytes());
        ob[4..8].copy_from_slice(&s16.to_le_bytes());
    }
}

/// One block of [`QK`] values to codes; returns `d` and `s = d · Σq`, both rounded through f16.
#[inline(always)]
fn quantize_block(xb: &[f32], codes: &mut [u8]) -> (f32, f32) {
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
    )
}

/// Blocks per row rounded up to an even number (Q4_1 kernels work on pairs of blocks).
fn padded_blocks(cols: usize) -> usize {
    (cols / QK).div_ceil(2) * 2
}

/// GGML Q4_1 rows (20-byte blocks: f16 `d`, f16 `m`, 16 bytes of codes with values `i` and `i + 16`
/// in the low and high nibble of byte `i`) to the kernel layout described in the module docs; an
/// odd block count gets a zero block (`d = m = 0`), which adds exact zeros.
fn repack_q4_1(rows: usize, cols: usize, data: &[u8]) -> Vec<u8> {
    let nb = cols / QK;
    let nbp = padded_blocks(cols);
    let mut out = vec![0u8; rows * nbp * 20];
    for (src, dst) in data
        .chunks_exact(nb * 20)
        .zip(out.chunks_exact_mut(nbp * 20))
    {
        for (b, blk) in src.chunks_exact(20).enumerate() {
            let pair = &mut dst[(b / 2) * 32..(b / 2) * 32 + 32];
            let shift = 4 * (b % 2);
            for i in 0..QK / 2 {
                pair[i] |= (blk[4 + i] & 0x0f) << shift;
                pair[i + QK / 2] |= (blk[4 + i] >> 4) << shift;
            }
            dst[nbp * 16 + 2 * b..nbp * 16 + 2 * b + 2].copy_from_slice(&blk[0..2]);
            dst[nbp * 18 + 2 * b..nbp * 18 + 2 * b + 2].copy_from_slice(&blk[2..4]);
        }
    }
    out
}

/// GGML Q8_0 rows (34-byte blocks: f16 `d`, 32 signed codes) to the kernel layout: per row the
/// codes of every block offset by 128 (as unsigned bytes, for `vpdpbusd`), then the f16 scales;
/// an odd block count gets a zero block.
fn repack_q8_0(rows: usize, cols: usize, data: &[u8]) -> Vec<u8> {
    let nb = cols / QK;
    let nbp = padded_blocks(cols);
    let mut out = vec![0u8; rows * nbp * 34];
    for (src, dst) in data
        .chunks_exact(nb * 34)
        .zip(out.chunks_exact_mut(nbp * 34))
    {
        dst[..nbp * QK].fill(0x80);
        for (b, blk) in src.chunks_exact(34).enumerate() {
            for (d, &c) in dst[b * QK..(b + 1) * QK].iter_mut().zip(&blk[2..]) {
                *d = c ^ 0x80;
            }
            dst[nbp * 32 + 2 * b..nbp * 32 + 2 * b + 2].copy_from_slice(&blk[0..2]);
        }
    }
    out
}

/// Quantize one activation row to Q8_1 (as [`quantize_row_q8`]) in the Q4_1 kernel's layout:
/// `nbp` blocks of 32 codes, then `nbp` f32 scales `d`, then `nbp` f32 sums `s` (padding blocks 0).
pub fn quantize_row_q8_1_split(x: &[f32], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU feature was just checked.
        return unsafe { quantize_row_q8_1_split_avx2(x, out) };
    }
    quantize_row_q8_1_split_generic(x, out)
}

/// The same code compiled for AVX2 (the block loops vectorise).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_row_q8_1_split_avx2(x: &[f32], out: &mut [u8]) {
    quantize_row_q8_1_split_generic(x, out)
}

#[inline(always)]
fn quantize_row_q8_1_split_generic(x: &[f32], out: &mut [u8]) {
    let nbp = out.len() / Q8_BYTES;
    let (codes, scales) = out.split_at_mut(nbp * QK);
    for (b, xb) in x.chunks_exact(QK).enumerate() {
        let (d, s) = quantize_block(xb, &mut codes[b * QK..(b + 1) * QK]);
        scales[4 * b..4 * b + 4].copy_from_slice(&d.to_le_bytes());
        scales[nbp * 4 + 4 * b..nbp * 4 + 4 * b + 4].copy_from_slice(&s.to_le_bytes());
    }
}

fn dot_f32_bytes(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (wc, xc) in w.chunks_exact(32).zip(x.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += f32_at(wc, 4 * l) * xc[l];
        }
    }
    acc.iter().sum()
}

mod kernels {
    //! Dot products of one weight row with a group of quantized activation rows.
    use super::{f16_at, f32_at, QK};

    /// The instruction set the kernels use, detected once per matmul.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Level {
        Scalar,
        Avx2,
        Vnni,
    }

    impl Level {
        pub fn detect() -> Level {
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c")
            {
                if std::is_x86_feature_detected!("avx512vnni")
                    && std::is_x86_feature_detected!("avx512vl")
                {
                    return Level::Vnni;
                }
                return Level::Avx2;
            }
            Level::Scalar
        }
    }

    /// Q4_1 weight rows (repacked, `ws.len()` of 1, 2 or 4) · Q8_1 activation rows (split layout,
    /// `rows.len()` ≤ 4): `res[j · rows.len() + r]`.
    pub fn dot_q4_1(level: Level, ws: &[&[u8]], rows: &[&[u8]], res: &mut [f32], prefetch: bool) {
        #[cfg(target_arch = "x86_64")]
        if level != Level::Scalar {
            macro_rules! go {
                ($($jt:literal, $g:literal);*) => {
                    match (ws.len(), rows.len(), level == Level::Vnni) {
                        $(
                            ($jt, $g, false) => avx2::q4_1::<$jt, $g>(ws, rows, res, prefetch),
                            ($jt, $g, true) => avx2::q4_1_vnni::<$jt, $g>(ws, rows, res, prefetch),
                        )*
                        _ => unreachable!("weight tile {} x {} rows", ws.len(), rows.len()),
                    }
                };
            }
            // SAFETY: `Level::detect` checked the CPU features.
            unsafe { go!(1, 1; 1, 2; 1, 3; 1, 4; 2, 1; 2, 2; 2, 3; 2, 4; 4, 1; 4, 2; 4, 3; 4, 4) };
            return;
        }
        for (j, w) in ws.iter().enumerate() {
            for (r, a) in rows.iter().enumerate() {
                res[j * rows.len() + r] = scalar_q4_1(w, a);
            }
        }
    }

    /// ggml's `hsum_float_8` order of additions.
    fn hsum8(v: [f32; 8]) -> f32 {
        let q = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
        let h = [q[0] + q[2], q[1] + q[3]];
        h[0] + h[1]
    }

    /// The Q4_1 dot product in plain Rust, in the order of operations of ggml's AVX2
    /// `vec_dot_q4_1_q8_1`, which the SIMD kernels reproduce bit for bit: per block, eight lanes
    /// (lane `l`: values `4l..4l+4`) accumulate `d_w · d_x · Σ q_w q_x` by fused multiply-add, and
    /// a scalar accumulates the `m_w · s_x` products in block order.
    pub fn scalar_q4_1(w: &[u8], a: &[u8]) -> f32 {
        let nbp = w.len() / 20;
        let mut acc = [0f32; 8];
        let mut summs = [0f32; 8];
        for b in 0..nbp {
            let dd = f16_at(w, nbp * 16 + 2 * b) * f32_at(a, nbp * 32 + 4 * b);
            let ms = f16_at(w, nbp * 18 + 2 * b) * f32_at(a, nbp * 36 + 4 * b);
            summs[b % 8] += ms;
            let (parity, pair) = (b % 2, b / 2);
            for (lane, acc) in acc.iter_mut().enumerate() {
                let mut dp = 0i32;
                for t in 4 * lane..4 * lane + 4 {
                    let q = (w[pair * 32 + t] >> (4 * parity)) & 0x0f;
                    dp += q as i32 * a[b * QK + t] as i8 as i32;
                }
                *acc = dd.mul_add(dp as f32, *acc);
            }
        }
        hsum8(acc) + hsum8(summs)
    }

    /// Q8_0 weight rows (repacked) · Q8_0 activation rows (split layout), as [`dot_q4_1`].
    pub fn dot_q8_0(level: Level, ws: &[&[u8]], rows: &[&[u8]], res: &mut [f32], prefetch: bool) {
        #[cfg(target_arch = "x86_64")]
        if level != Level::Scalar {
            macro_rules! go {
                ($($jt:literal, $g:literal);*) => {
                    match (ws.len(), rows.len(), level == Level::Vnni) {
                        $(
                            ($jt, $g, false) => avx2::q8_0::<$jt, $g>(ws, rows, res, prefetch),
                            ($jt, $g, true) => avx2::q8_0_vnni::<$jt, $g>(ws, rows, res, prefetch),
                        )*
                        _ => unreachable!("weight tile {} x {} rows", ws.len(), rows.len()),
                    }
                };
            }
            // SAFETY: `Level::detect` checked the CPU features.
            unsafe { go!(1, 1; 1, 2; 1, 3; 1, 4; 2, 1; 2, 2; 2, 3; 2, 4; 4, 1; 4, 2; 4, 3; 4, 4) };
            return;
        }
        for (j, w) in ws.iter().enumerate() {
            for (r, a) in rows.iter().enumerate() {
                res[j * rows.len() + r] = scalar_q8_0(w, a);
            }
        }
    }

    /// The Q8_0 dot product in plain Rust, in the order of ggml's AVX2 `vec_dot_q8_0_q8_0`: per
    /// block, eight lanes (values `4l..4l+4`) accumulate `d_w · d_x · Σ q_w q_x` by fused
    /// multiply-add.
    pub fn scalar_q8_0(w: &[u8], a: &[u8]) -> f32 {
        let nbp = w.len() / 34;
        let mut acc = [0f32; 8];
        for b in 0..nbp {
            let dd = f16_at(w, nbp * 32 + 2 * b) * f32_at(a, nbp * 32 + 4 * b);
            for (lane, acc) in acc.iter_mut().enumerate() {
                let mut dp = 0i32;
                for t in b * QK + 4 * lane..b * QK + 4 * lane + 4 {
                    dp += (w[t] ^ 0x80) as i8 as i32 * a[t] as i8 as i32;
                }
                *acc = dd.mul_add(dp as f32, *acc);
            }
        }
        hsum8(acc)
    }

    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use std::arch::x86_64::*;

        /// ggml's `hsum_float_8`, same order of additions.
        #[inline(always)]
        unsafe fn hsum(x: __m256) -> f32 {
            let mut res = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
            res = _mm_add_ps(res, _mm_movehl_ps(res, res));
            res = _mm_add_ss(res, _mm_movehdup_ps(res));
            _mm_cvtss_f32(res)
        }

        /// [`hsum`] of eight vectors at once, each with `hsum`'s additions in `hsum`'s order:
        /// lanes `[h0, h2, h4, h6 | h1, h3, h5, h7]`.
        #[inline(always)]
        unsafe fn hsum8x8(v: [__m256; 8]) -> __m256 {
            // r_k = v_k + v_{k+4}, two vectors per register.
            let p: [__m256; 4] = std::array::from_fn(|i| {
                let (a, b) = (v[2 * i], v[2 * i + 1]);
                _mm256_add_ps(
                    _mm256_permute2f128_ps::<0x20>(a, b),
                    _mm256_permute2f128_ps::<0x31>(a, b),
                )
            });
            // u_0 = r_0 + r_2, u_1 = r_1 + r_3.
            let u = |a: __m256, b: __m256| {
                _mm256_add_ps(
                    _mm256_shuffle_ps::<0x44>(a, b),
                    _mm256_shuffle_ps::<0xee>(a, b),
                )
            };
            let (q01, q23) = (u(p[0], p[1]), u(p[2], p[3]));
            // u_0 + u_1.
            _mm256_add_ps(
                _mm256_shuffle_ps::<0x88>(q01, q23),
                _mm256_shuffle_ps::<0xdd>(q01, q23),
            )
        }

        /// `res[i] = hsum(a[i]) + hsum(s[i])` (or `hsum(a[i])` without `s`) for eight outputs,
        /// bit-identical to one `hsum` per output (a 2 × 4 tile's results in one go).
        #[inline(always)]
        unsafe fn finish8(a: [__m256; 8], s: Option<[__m256; 8]>, res: &mut [f32]) {
            let mut h = hsum8x8(a);
            if let Some(s) = s {
                h = _mm256_add_ps(h, hsum8x8(s));
            }
            let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            _mm256_storeu_ps(res[..8].as_mut_ptr(), _mm256_permutevar8x32_ps(h, order));
        }

        /// Σ of 4 u8 · i8 products per i32 lane: `vpdpbusd` (AVX512-VNNI, 256-bit), or
        /// `maddubs` + `madd` (AVX2), the same integers for Q4 codes (a pair of products,
        /// ≤ 2 · 15 · 128, never saturates `maddubs`'s i16).
        #[inline(always)]
        unsafe fn dot4<const VNNI: bool>(ax: __m256i, sy: __m256i) -> __m256i {
            if VNNI {
                dpbusd(ax, sy)
            } else {
                _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
            }
        }

        /// `acc + vpdpbusd(ax, sy)`.
        #[inline]
        #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
        unsafe fn dpbusd_acc(acc: __m256i, ax: __m256i, sy: __m256i) -> __m256i {
            let mut acc = acc;
            std::arch::asm!(
                "vpdpbusd {acc}, {a}, {b}",
                acc = inout(ymm_reg) acc,
                a = in(ymm_reg) ax,
                b = in(ymm_reg) sy,
                options(pure, nomem, nostack)
            );
            acc
        }

        /// `vpdpbusd` from zero. `_mm256_dpbusd_epi32` needs Rust 1.89 (the workspace supports
        /// 1.85): the same instruction through `asm!`.
        #[inline]
        #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
        unsafe fn dpbusd(ax: __m256i, sy: __m256i) -> __m256i {
            let mut acc = _mm256_setzero_si256();
            std::arch::asm!(
                "vpdpbusd {acc}, {a}, {b}",
                acc = inout(ymm_reg) acc,
                a = in(ymm_reg) ax,
                b = in(ymm_reg) sy,
                options(pure, nomem, nostack)
            );
            acc
        }

        /// Prefetch the weight rows of the next tile (rows are contiguous, so they follow the
        /// current `JT` rows); the hardware prefetcher alone left the kernel waiting on loads.
        #[inline(always)]
        unsafe fn prefetch_next<const JT: usize>(w: &[*const u8; JT], row_len: usize) {
            for p in w {
                let next = p.wrapping_add(JT * row_len);
                for off in (0..row_len).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(off) as *const i8);
                }
            }
        }

        /// Eight f16 at `p` (`n` ≤ 8 of them, `n` even, the rest 0) as f32.
        #[inline(always)]
        unsafe fn load_f16x8(p: *const u8, n: usize) -> __m256 {
            if n == 8 {
                _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
            } else {
                let mask =
                    _mm_cmpgt_epi32(_mm_set1_epi32(n as i32 / 2), _mm_setr_epi32(0, 1, 2, 3));
                _mm256_cvtph_ps(_mm_maskload_epi32(p as *const i32, mask))
            }
        }

        /// Eight f32 at `p` (`n` ≤ 8 of them, the rest 0).
        #[inline(always)]
        unsafe fn load_f32x8(p: *const u8, n: usize) -> __m256 {
            if n == 8 {
                _mm256_loadu_ps(p as *const f32)
            } else {
                let mask = _mm256_cmpgt_epi32(
                    _mm256_set1_epi32(n as i32),
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                );
                _mm256_maskload_ps(p as *const f32, mask)
            }
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn q4_1<const JT: usize, const G: usize>(
            ws: &[&[u8]],
            rows: &[&[u8]],
            res: &mut [f32],
            prefetch: bool,
        ) {
            q4_1_impl::<JT, G, false>(ws, rows, res, prefetch)
        }

        #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
        pub unsafe fn q4_1_vnni<const JT: usize, const G: usize>(
            ws: &[&[u8]],
            rows: &[&[u8]],
            res: &mut [f32],
            prefetch: bool,
        ) {
            q4_1_impl::<JT, G, true>(ws, rows, res, prefetch)
        }

        /// [`super::scalar_q4_1`] for `JT` weight rows × `G` activation rows at once: each weight
        /// pair is unpacked once per tile, each activation block loaded once per weight row, and
        /// the `JT · G` accumulation chains are independent (instruction-level parallelism).
        #[inline(always)]
        unsafe fn q4_1_impl<const JT: usize, const G: usize, const VNNI: bool>(
            ws: &[&[u8]],
            rows: &[&[u8]],
            res: &mut [f32],
            prefetch: bool,
        ) {
            let nbp = ws[0].len() / 20;
            let w: [*const u8; JT] = std::array::from_fn(|j| ws[j].as_ptr());
            if prefetch {
                prefetch_next(&w, ws[0].len());
            }
            let a: [*const u8; G] = std::array::from_fn(|r| rows[r].as_ptr());
            let mut acc = [[_mm256_setzero_ps(); G]; JT];
            let mut summs = [[_mm256_setzero_ps(); G]; JT];
            // d_w · d_x of the current eight blocks, per (weight row, activation row).
            let mut dd = [[[0f32; 8]; G]; JT];
            let low = _mm256_set1_epi8(0x0f);
            let mut b0 = 0;
            while b0 < nbp {
                let gb = (nbp - b0).min(8);
                for j in 0..JT {
                    let d0 = load_f16x8(w[j].add(nbp * 16 + 2 * b0), gb);
                    let m0 = load_f16x8(w[j].add(nbp * 18 + 2 * b0), gb);
                    for r in 0..G {
                        let d1 = load_f32x8(a[r].add(nbp * 32 + 4 * b0), gb);
                        let s1 = load_f32x8(a[r].add(nbp * 36 + 4 * b0), gb);
                        _mm256_storeu_ps(dd[j][r].as_mut_ptr(), _mm256_mul_ps(d0, d1));
                        summs[j][r] = _mm256_add_ps(summs[j][r], _mm256_mul_ps(m0, s1));
                    }
                }
                for p in 0..gb / 2 {
                    let b = b0 + 2 * p;
                    let y: [[__m256i; 2]; G] = std::array::from_fn(|r| {
                        [
                            _mm256_loadu_si256(a[r].add(b * 32) as *const __m256i),
                            _mm256_loadu_si256(a[r].add(b * 32 + 32) as *const __m256i),
                        ]
                    });
                    for j in 0..JT {
                        let packed = _mm256_loadu_si256(w[j].add(b * 16) as *const __m256i);
                        let q0 = _mm256_and_si256(packed, low);
                        let q1 = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
                        for r in 0..G {
                            let [y0, y1] = y[r];
                            let x0 = _mm256_cvtepi32_ps(dot4::<VNNI>(q0, y0));
                            let s0 = _mm256_broadcast_ss(&dd[j][r][2 * p]);
                            acc[j][r] = _mm256_fmadd_ps(s0, x0, acc[j][r]);
                            let x1 = _mm256_cvtepi32_ps(dot4::<VNNI>(q1, y1));
                            let s1 = _mm256_broadcast_ss(&dd[j][r][2 * p + 1]);
                            acc[j][r] = _mm256_fmadd_ps(s1, x1, acc[j][r]);
                        }
                    }
                }
                b0 += gb;
            }
            if JT * G == 8 {
                let a: [__m256; 8] = std::array::from_fn(|i| acc[i / G][i % G]);
                let sm: [__m256; 8] = std::array::from_fn(|i| summs[i / G][i % G]);
                finish8(a, Some(sm), res);
            } else {
                for j in 0..JT {
                    for r in 0..G {
                        res[j * G + r] = hsum(acc[j][r]) + hsum(summs[j][r]);
                    }
                }
            }
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn q8_0<const JT: usize, const G: usize>(
            ws: &[&[u8]],
            rows: &[&[u8]],
            res: &mut [f32],
            prefetch: bool,
        ) {
            q8_0_impl::<JT, G, false>(ws, rows, res, prefetch)
        }

        #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
        pub unsafe fn q8_0_vnni<const JT: usize, const G: usize>(
            ws: &[&[u8]],
            rows: &[&[u8]],
            res: &mut [f32],
            prefetch: bool,
        ) {
            q8_0_impl::<JT, G, true>(ws, rows, res, prefetch)
        }

        /// [`super::scalar_q8_0`] for `JT` weight rows × `G` activation rows. With VNNI the
        /// unsigned codes `q + 128` go straight into `vpdpbusd`, which starts from
        /// `-128 · Σ q_x` (computed once per activation block); without, ggml's sign trick.
        /// Both give the exact integer `Σ q_w q_x`.
        #[inline(always)]
        unsafe fn q8_0_impl<const JT: usize, const G: usize, const VNNI: bool>(
            ws: &[&[u8]],
            rows: &[&[u8]],
            res: &mut [f32],
            prefetch: bool,
        ) {
            let nbp = ws[0].len() / 34;
            let w: [*const u8; JT] = std::array::from_fn(|j| ws[j].as_ptr());
            if prefetch {
                prefetch_next(&w, ws[0].len());
            }
            let a: [*const u8; G] = std::array::from_fn(|r| rows[r].as_ptr());
            let mut acc = [[_mm256_setzero_ps(); G]; JT];
            let mut dd = [[[0f32; 8]; G]; JT];
            let flip = _mm256_set1_epi8(-128);
            let mut b0 = 0;
            while b0 < nbp {
                let gb = (nbp - b0).min(8);
                for j in 0..JT {
                    let d0 = load_f16x8(w[j].add(nbp * 32 + 2 * b0), gb);
                    for r in 0..G {
                        let d1 = load_f32x8(a[r].add(nbp * 32 + 4 * b0), gb);
                        _mm256_storeu_ps(dd[j][r].as_mut_ptr(), _mm256_mul_ps(d0, d1));
                    }
                }
                #[allow(clippy::needless_range_loop)]
                for l in 0..gb {
                    let b = b0 + l;
                    let y: [__m256i; G] = std::array::from_fn(|r| {
                        _mm256_loadu_si256(a[r].add(b * 32) as *const __m256i)
                    });
                    // -128 · Σ q_x per lane (VNNI only).
                    let neg: [__m256i; G] = std::array::from_fn(|r| {
                        if VNNI {
                            _mm256_sub_epi32(_mm256_setzero_si256(), dpbusd(flip, y[r]))
                        } else {
                            _mm256_setzero_si256()
                        }
                    });
                    for j in 0..JT {
                        let xu = _mm256_loadu_si256(w[j].add(b * 32) as *const __m256i);
                        for r in 0..G {
                            let dp = if VNNI {
                                dpbusd_acc(neg[r], xu, y[r])
                            } else {
                                let x = _mm256_xor_si256(xu, flip);
                                let ax = _mm256_sign_epi8(x, x);
                                let sy = _mm256_sign_epi8(y[r], x);
                                _mm256_madd_epi16(
                                    _mm256_maddubs_epi16(ax, sy),
                                    _mm256_set1_epi16(1),
                                )
                            };
                            let s = _mm256_broadcast_ss(&dd[j][r][l]);
                            acc[j][r] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(dp), acc[j][r]);
                        }
                    }
                }
                b0 += gb;
            }
            if JT * G == 8 {
                let a: [__m256; 8] = std::array::from_fn(|i| acc[i / G][i % G]);
                finish8(a, None, res);
            } else {
                for j in 0..JT {
                    for r in 0..G {
                        res[j * G + r] = hsum(acc[j][r]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn quantize_with_candle(
        dtype: candle_core::quantized::GgmlDType,
        rows: usize,
        cols: usize,
        w: &[f32],
    ) -> (QMatrix, candle_core::quantized::QTensor) {
        let dev = candle_core::Device::Cpu;
        let t = candle_core::Tensor::from_slice(w, (rows, cols), &dev).unwrap();
        let q = candle_core::quantized::QTensor::quantize(&t, dtype).unwrap();
        let qtype = match dtype {
            candle_core::quantized::GgmlDType::Q4_1 => QType::Q4_1,
            candle_core::quantized::GgmlDType::Q8_0 => QType::Q8_0,
            _ => unreachable!(),
        };
        (
            QMatrix::new(qtype, rows, cols, q.data().unwrap().into_owned()).unwrap(),
            q,
        )
    }

    /// Our kernels against candle's own quantized matmul (which also quantizes the activations to
    /// Q8_1/Q8_0), and the row-group results against single rows (batch invariance).
    #[test]
    fn matmul_matches_candle_qmatmul_and_is_batch_invariant() {
        use candle_core::quantized::{GgmlDType, QMatMul};
        use candle_core::Module;
        let (n, k, m) = (72, 256, 7);
        let w = lcg(n * k, 1);
        let x = lcg(m * k, 2);
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (ours, q) = quantize_with_candle(dtype, n, k, &w);
            let mut out = vec![0f32; m * n];
            let mut scratch = Vec::new();
            ours.matmul(&x, &mut out, &mut scratch);
            let xt =
                candle_core::Tensor::from_slice(&x, (m, k), &candle_core::Device::Cpu).unwrap();
            let reference = QMatMul::from_qtensor(q).unwrap().forward(&xt).unwrap();
            let reference: Vec<f32> = reference.flatten_all().unwrap().to_vec1().unwrap();
            // candle rounds the Q8_1 block sum `s` through f16 arithmetic, hence a bound relative to
            // the magnitude of the terms, Σ|w||x|, rather than to the (cancelling) result.
            for (i, (a, b)) in out.iter().zip(&reference).enumerate() {
                let (r, j) = (i / n, i % n);
                let scale: f32 = (0..k).map(|t| (w[j * k + t] * x[r * k + t]).abs()).sum();
                assert!(
                    (a - b).abs() <= 2e-4 * scale,
                    "{dtype:?}: {a} vs {b} (terms {scale})"
                );
            }
            // The SIMD kernels against their plain-Rust definition, bit for bit.
            for r in 0..m {
                let xr = &x[r * k..(r + 1) * k];
                for j in 0..n {
                    let got = out[r * n + j];
                    let mut a = vec![0u8; padded_blocks(k) * Q8_BYTES];
                    quantize_row_q8_1_split(xr, &mut a);
                    let wr = &ours.data[j * ours.row_bytes()..(j + 1) * ours.row_bytes()];
                    let want = match dtype {
                        GgmlDType::Q4_1 => kernels::scalar_q4_1(wr, &a),
                        _ => kernels::scalar_q8_0(wr, &a),
                    };
                    assert_eq!(got.to_bits(), want.to_bits(), "{dtype:?}: {got} vs {want}");
                }
            }
            for r in 0..m {
                let mut single = vec![0f32; n];
                ours.matmul(&x[r * k..(r + 1) * k], &mut single, &mut scratch);
                assert_eq!(single, out[r * n..(r + 1) * n], "{dtype:?} row {r}");
            }
        }
    }

    /// An odd number of blocks (a zero block pads the last pair), every tile size, and the AVX2
    /// and VNNI kernels against the scalar definition.
    #[test]
    fn odd_blocks_and_every_kernel_level() {
        use candle_core::quantized::GgmlDType;
        odd_blocks_and_every_kernel_level_for(GgmlDType::Q4_1);
        odd_blocks_and_every_kernel_level_for(GgmlDType::Q8_0);
    }

    fn odd_blocks_and_every_kernel_level_for(dtype: candle_core::quantized::GgmlDType) {
        let (n, k) = (5, 32 * 11);
        let w = lcg(n * k, 4);
        let (ours, q) = quantize_with_candle(dtype, n, k, &w);
        let deq: Vec<f32> = q
            .dequantize(&candle_core::Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut row = vec![0f32; k];
        ours.dequantize_row(3, &mut row);
        assert_eq!(row, deq[3 * k..4 * k]);
        let len = padded_blocks(k) * Q8_BYTES;
        let acts: Vec<Vec<u8>> = (0..4)
            .map(|r| {
                let mut a = vec![0u8; len];
                quantize_row_q8_1_split(&lcg(k, 10 + r), &mut a);
                a
            })
            .collect();
        let rows: Vec<&[u8]> = acts.iter().map(Vec::as_slice).collect();
        let wr = &ours.data[2 * ours.row_bytes()..3 * ours.row_bytes()];
        let wr2 = &ours.data[4 * ours.row_bytes()..5 * ours.row_bytes()];
        let mut want = vec![];
        type Simd = fn(kernels::Level, &[&[u8]], &[&[u8]], &mut [f32], bool);
        type Scalar = fn(&[u8], &[u8]) -> f32;
        let (scalar, simd): (Scalar, Simd) = match ours.qtype {
            QType::Q4_1 => (kernels::scalar_q4_1, kernels::dot_q4_1),
            _ => (kernels::scalar_q8_0, kernels::dot_q8_0),
        };
        for w in [wr, wr2, wr, wr2] {
            want.extend(rows.iter().map(|a| scalar(w, a)));
        }
        let mut levels = vec![kernels::Level::Scalar];
        if kernels::Level::detect() != kernels::Level::Scalar {
            levels.push(kernels::Level::Avx2);
        }
        if kernels::Level::detect() == kernels::Level::Vnni {
            levels.push(kernels::Level::Vnni);
        }
        for level in levels {
            for jt in [1, 2, 4] {
                for g in 1..=4 {
                    let mut res = [0f32; 16];
                    simd(
                        level,
                        &[wr, wr2, wr, wr2][..jt],
                        &rows[..g],
                        &mut res,
                        g % 2 == 0,
                    );
                    for t in 0..jt {
                        assert_eq!(res[t * g..(t + 1) * g], want[t * 4..t * 4 + g], "{jt}x{g}");
                    }
                }
            }
        }
    }

    #[test]
    fn dequantize_row_matches_candle() {
        let (n, k) = (4, 64);
        let w = lcg(n * k, 3);
        for dtype in [
            candle_core::quantized::GgmlDType::Q4_1,
            candle_core::quantized::GgmlDType::Q8_0,
        ] {
            let (ours, q) = quantize_with_candle(dtype, n, k, &w);
            let deq: Vec<f32> = q
                .dequantize(&candle_core::Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let mut row = vec![0f32; k];
            ours.dequantize_row(2, &mut row);
            assert_eq!(row, deq[2 * k..3 * k]);
        }
    }

    #[test]
    fn f32_matmul_is_exact_on_small_integers() {
        let w =
            QMatrix::from_f32(2, 32, &(0..64).map(|i| (i % 5) as f32).collect::<Vec<_>>()).unwrap();
        let x: Vec<f32> = (0..32).map(|i| (i % 3) as f32).collect();
        let mut out = vec![0f32; 2];
        w.matmul(&x, &mut out, &mut Vec::new());
        let expect: Vec<f32> = (0..2)
            .map(|r| {
                (0..32)
                    .map(|i| ((r * 32 + i) % 5) as f32 * (i % 3) as f32)
                    .sum()
            })
            .collect();
        assert_eq!(out, expect);
    }

    #[test]
    fn rejects_wrong_sizes() {
        assert!(QMatrix::new(QType::Q4_1, 2, 33, vec![]).is_err());
        assert!(QMatrix::new(QType::Q4_1, 2, 32, vec![0; 39]).is_err());
    }
}
