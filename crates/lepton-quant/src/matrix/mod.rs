//! Quantized weight matrices and their matmul, our CPU kernel for GGUF models.
//!
//! candle 0.11.1's CPU `QMatMul` has SIMD dot products for Q4_0 and Q8_0 but falls back to scalar code
//! for Q4_1 (the type of SmolLM2's weights), which makes decoding several times slower than llama.cpp.
//! This module holds a weight matrix `W` (`n` output rows × `k` inputs) and computes `Y = X Wᵀ` for
//! `m` activation rows `X` (`m × k`, f32):
//!
//! 1. each activation row is quantized once per call to the weight type's dot-product type, exactly as
//!    ggml does (Q4_1 → Q8_1, Q8_0 → Q8_0, see [`layout::quantize_row_q8_1`]);
//! 2. output columns are split over the decoder's team ([`crate::pool`]); each tile of
//!    weight rows is unpacked once per block and dotted against up to `kernels::MAX_ROWS`
//!    activation rows, so batched decoding reads each weight once per step.
//!
//! Weights and activations are laid out for the kernels at load time ([`layout`]): blocks are
//! interleaved in groups of eight so that one multiply-accumulate chain per (weight row, activation
//! row) pair leaves each block's exact integer dot product in its own lane (`kernels` gives the
//! order of operations).
//!
//! Every output element is computed by the same sequence of floating-point operations whatever `m` is
//! and whichever other rows share the call, so a sequence decoded in a batch gets bit-identical logits
//! to the same sequence decoded alone.
//!
//! Q5_0, Q5_1 and the K-quants (Q4_K, Q5_K, Q6_K) stay in GGML's own blocks ([`blocks`]): their
//! activations are quantized to blocks of 32 (Q8_0/Q8_1 codes) or to Q8_K, and each weight block
//! is unpacked once per group of up to four activation rows; with AVX512-VNNI, Q5_0/Q5_1 run in
//! tiles of up to four weight rows × four activation rows (each activation block loaded once per
//! tile, `kernels::dot_blocks_tile`). Other types (F16, BF16, ...) are
//! dequantized to f32 at load time, within a memory budget.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::pool::{split, Pool};
use crate::{blocks, kernels, layout};

mod q8;
pub use blocks::BlockType;
pub use layout::QK;
use layout::{f16_at, f32_at, nibble_at, padded_blocks, quantize_row_q8_1, Q8_BYTES};

/// Activation rows per dot-product group of the f32 path.
const F32_ROWS: usize = 4;

/// The storage type of a [`QMatrix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QType {
    /// Plain f32 (norms, and any GGML type we dequantize at load).
    F32,
    /// GGML Q4_1: per 32 values an f16 scale `d`, an f16 minimum `m` and 16 bytes of 4-bit codes.
    Q4_1,
    /// GGML Q8_0: per 32 values an f16 scale `d` and 32 signed bytes.
    Q8_0,
    /// GGML blocks kept as stored: Q5_0, Q5_1, Q4_K, Q5_K, Q6_K (see [`blocks`]).
    Blocks(BlockType),
}

impl QType {
    /// Bytes per block of [`QType::block_values`] values (4 per value for F32).
    pub fn block_bytes(self) -> usize {
        match self {
            QType::F32 => 4 * QK,
            QType::Q4_1 => 20,
            QType::Q8_0 => 34,
            QType::Blocks(t) => t.block_bytes(),
        }
    }

    /// Values per block: [`QK`], or 256 for the K-quants.
    pub fn block_values(self) -> usize {
        match self {
            QType::Blocks(t) => t.block_values(),
            _ => QK,
        }
    }

    /// GGML's name of the type (`Q4_K`, ...), as error messages and `lepton inspect` show it.
    pub fn name(self) -> &'static str {
        match self {
            QType::F32 => "F32",
            QType::Q4_1 => "Q4_1",
            QType::Q8_0 => "Q8_0",
            QType::Blocks(BlockType::Q5_0) => "Q5_0",
            QType::Blocks(BlockType::Q5_1) => "Q5_1",
            QType::Blocks(BlockType::Q4K) => "Q4_K",
            QType::Blocks(BlockType::Q5K) => "Q5_K",
            QType::Blocks(BlockType::Q6K) => "Q6_K",
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
    /// Wrap raw GGML bytes. `cols` must be a multiple of the block size (32, or 256 for the
    /// K-quants) and `data` exactly `rows × cols` values.
    pub fn new(qtype: QType, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self> {
        let bv = qtype.block_values();
        if cols % bv != 0 {
            return Err(Error::Columns {
                qtype: qtype.name(),
                cols,
                block: bv,
            });
        }
        let want = (rows * cols / bv).checked_mul(qtype.block_bytes());
        if want != Some(data.len()) {
            return Err(Error::Bytes {
                qtype: qtype.name(),
                rows,
                cols,
                want: want.unwrap_or(usize::MAX),
                got: data.len(),
            });
        }
        let data = match qtype {
            QType::Q4_1 => layout::repack_q4_1(rows, cols, &data),
            QType::Q8_0 => layout::repack_q8_0(rows, cols, &data),
            QType::F32 | QType::Blocks(_) => data,
        };
        Ok(Self {
            qtype,
            rows,
            cols,
            data,
        })
    }

    /// An f32 matrix from values in row-major order.
    pub fn from_f32(rows: usize, cols: usize, values: &[f32]) -> Result<Self> {
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
            QType::Blocks(t) => self.cols / t.block_values() * t.block_bytes(),
        }
    }

    /// Bytes the matrix holds in memory.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The stored bytes (the kernel layout for Q4_1/Q8_0, GGML blocks for the others).
    #[cfg(test)]
    pub(crate) fn raw_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Dequantize one row into `out` (`cols` values): an embedding lookup.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let bytes = &self.data[row * self.row_bytes()..(row + 1) * self.row_bytes()];
        if let QType::Blocks(t) = self.qtype {
            return blocks::dequantize_row(t, bytes, &mut out[..self.cols]);
        }
        let nbp = padded_blocks(self.cols);
        if self.qtype == QType::Q4_1 {
            for (b, o) in out[..self.cols].chunks_exact_mut(QK).enumerate() {
                let d = f16_at(bytes, nbp * 16 + 2 * b);
                let m = f16_at(bytes, nbp * 18 + 2 * b);
                for (v, o) in o.iter_mut().enumerate() {
                    let (at, shift) = nibble_at(nbp, b, v);
                    *o = ((bytes[at] >> shift) & 0x0f) as f32 * d + m;
                }
            }
            return;
        }
        if self.qtype == QType::Q8_0 {
            for (b, o) in out[..self.cols].chunks_exact_mut(QK).enumerate() {
                let d = f16_at(bytes, nbp * 32 + 2 * b);
                for (v, o) in o.iter_mut().enumerate() {
                    *o = (bytes[layout::byte_code_at(nbp, b, v)] ^ 0x80) as i8 as f32 * d;
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
                QType::Q4_1 | QType::Q8_0 | QType::Blocks(_) => unreachable!("handled above"),
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
        self.matmul_path(x, out, stride, offset, scratch, true)
    }

    /// [`QMatrix::matmul`] on the row-group tiles at every row count (no training-shape GEMM):
    /// the same bits, the old speed; for benchmarks and tests of the GEMM.
    #[doc(hidden)]
    pub fn matmul_tiles(&self, x: &[f32], out: &mut [f32], scratch: &mut Vec<u8>) {
        self.matmul_path(x, out, self.rows, 0, scratch, false)
    }

    fn matmul_path(
        &self,
        x: &[f32],
        out: &mut [f32],
        stride: usize,
        offset: usize,
        scratch: &mut Vec<u8>,
        gemm: bool,
    ) {
        let m = x.len() / self.cols;
        assert_eq!(x.len(), m * self.cols, "matmul input length");
        assert!(offset + self.rows <= stride, "matmul output columns");
        assert!(out.len() >= m * stride, "matmul output length");
        if let QType::Blocks(t) = self.qtype {
            return self.matmul_blocks(t, x, m, out, stride, offset, scratch);
        }
        let act = match self.qtype {
            QType::F32 => Activations::F32(x),
            QType::Blocks(_) => unreachable!("handled above"),
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
                            quantize_row_q8_1(&x[r * self.cols..(r + 1) * self.cols], sr);
                        }
                    });
                } else {
                    for (xr, sr) in x.chunks_exact(self.cols).zip(scratch.chunks_exact_mut(len)) {
                        quantize_row_q8_1(xr, sr);
                    }
                }
                Activations::Q8(scratch)
            }
        };
        if let Activations::Q8(a) = act {
            // SAFETY: `out` holds `m` rows of `stride` with `offset + rows ≤ stride` (asserted).
            return unsafe { self.matmul_q8_path(a, m, out.as_mut_ptr(), stride, offset, gemm) };
        }
        let n = self.rows;
        let out_ptr = SendPtr(out.as_mut_ptr());
        let pool = Pool::global();
        let parts = pool.threads();
        pool.run(&|part| {
            let out_ptr = &out_ptr;
            let cols = split(n, parts, part, 4);
            let mut res = [0f32; F32_ROWS];
            for j in cols {
                let w = &self.data[j * self.row_bytes()..(j + 1) * self.row_bytes()];
                let mut r0 = 0;
                while r0 < m {
                    let g = (m - r0).min(F32_ROWS);
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

    /// [`QMatrix::matmul_strided`] for GGML-block weights: activation rows quantized to the type's
    /// activation blocks (split over the team when there are several), then columns in chunks.
    #[allow(clippy::too_many_arguments)]
    fn matmul_blocks(
        &self,
        t: BlockType,
        x: &[f32],
        m: usize,
        out: &mut [f32],
        stride: usize,
        offset: usize,
        scratch: &mut Vec<u8>,
    ) {
        let len = t.act_row_bytes(self.cols);
        scratch.clear();
        scratch.resize(m * len, 0);
        let pool = Pool::global();
        let parts = pool.threads();
        if m >= 4 {
            let dst = SendPtr(scratch.as_mut_ptr() as *mut f32);
            pool.run(&|part| {
                let dst = &dst;
                for r in split(m, parts, part, 1) {
                    // SAFETY: each part writes its own rows of `scratch`.
                    let sr = unsafe {
                        std::slice::from_raw_parts_mut((dst.0 as *mut u8).add(r * len), len)
                    };
                    t.quantize_act(&x[r * self.cols..(r + 1) * self.cols], sr);
                }
            });
        } else {
            for (xr, sr) in x.chunks_exact(self.cols).zip(scratch.chunks_exact_mut(len)) {
                t.quantize_act(xr, sr);
            }
        }
        let a: &[u8] = scratch;
        let level = kernels::Level::detect();
        let n = self.rows;
        let rb = self.row_bytes();
        let chunk = if m >= 4 {
            (n / (parts * 8)).max(16)
        } else {
            n.div_ceil(parts)
        }
        .next_multiple_of(kernels::TILE_W);
        let next = AtomicUsize::new(0);
        let out_ptr = SendPtr(out.as_mut_ptr());
        pool.run(&|_| {
            let out_ptr = &out_ptr;
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c * chunk >= n {
                    return;
                }
                let end = ((c + 1) * chunk).min(n);
                // Tiles of up to `TILE_W` weight rows × `BLOCK_ROWS` activation rows.
                let mut j = c * chunk;
                while j < end {
                    let tw = (end - j).min(kernels::TILE_W);
                    let w = &self.data[j * rb..(j + tw) * rb];
                    let mut r0 = 0;
                    while r0 < m {
                        let g = (m - r0).min(kernels::BLOCK_ROWS);
                        let rows: [&[u8]; kernels::BLOCK_ROWS] = std::array::from_fn(|i| {
                            let r = r0 + i.min(g - 1);
                            &a[r * len..(r + 1) * len]
                        });
                        // SAFETY: each (row, column) element is written by exactly one part;
                        // `out` holds `m` rows of `stride ≥ offset + n`.
                        unsafe {
                            kernels::dot_blocks_tile(
                                t,
                                level,
                                w,
                                rb,
                                &rows[..g],
                                out_ptr.0.add(r0 * stride + offset + j),
                                stride,
                            )
                        };
                        r0 += g;
                    }
                    j += tw;
                }
            }
        });
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

fn dot_f32_bytes(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (wc, xc) in w.chunks_exact(32).zip(x.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += f32_at(wc, 4 * l) * xc[l];
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernels::{Kind, MAX_ROWS};

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
                    quantize_row_q8_1(xr, &mut a);
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

    /// Rows of every padding case (odd block counts, partial groups, a group completed by a zero
    /// block): `dequantize_row` against candle, and every tile shape of the AVX2 and VNNI kernels
    /// against the scalar definition.
    #[test]
    fn every_layout_tile_and_kernel_level() {
        use candle_core::quantized::GgmlDType;
        for blocks in [1, 2, 7, 8, 11, 16, 18, 23] {
            every_tile_and_kernel_level_for(GgmlDType::Q4_1, blocks);
            every_tile_and_kernel_level_for(GgmlDType::Q8_0, blocks);
        }
    }

    fn every_tile_and_kernel_level_for(dtype: candle_core::quantized::GgmlDType, blocks: usize) {
        let (n, k) = (6, 32 * blocks);
        let w = lcg(n * k, 4 + blocks as u64);
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
        assert_eq!(row, deq[3 * k..4 * k], "{dtype:?}, {blocks} blocks");
        let len = padded_blocks(k) * Q8_BYTES;
        let acts: Vec<Vec<u8>> = (0..MAX_ROWS as u64)
            .map(|r| {
                let mut a = vec![0u8; len];
                quantize_row_q8_1(&lcg(k, 10 + r), &mut a);
                a
            })
            .collect();
        let rows: Vec<&[u8]> = acts.iter().map(Vec::as_slice).collect();
        let rb = ours.row_bytes();
        type Scalar = fn(&[u8], &[u8]) -> f32;
        let (kind, scalar): (Kind, Scalar) = match ours.qtype {
            QType::Q4_1 => (Kind::Q4_1, kernels::scalar_q4_1),
            _ => (Kind::Q8_0, kernels::scalar_q8_0),
        };
        let mut levels = vec![kernels::Level::Scalar];
        if kernels::Level::detect() != kernels::Level::Scalar {
            levels.push(kernels::Level::Avx2);
        }
        if kernels::Level::detect() == kernels::Level::Vnni {
            levels.push(kernels::Level::Vnni);
        }
        for level in levels {
            // Weight rows 1..6 (a tile of four and a single row) against 1 to 8 activation rows.
            for g in 1..=MAX_ROWS {
                let mut out = vec![f32::NAN; g * 7];
                // SAFETY: `out` has g rows of stride 7 ≥ 5 weight rows.
                unsafe {
                    kernels::dot(
                        kind,
                        level,
                        &ours.data[rb..6 * rb],
                        rb,
                        &rows[..g],
                        out.as_mut_ptr(),
                        7,
                    )
                };
                for r in 0..g {
                    for j in 0..5 {
                        let want = scalar(&ours.data[(j + 1) * rb..(j + 2) * rb], rows[r]);
                        assert_eq!(
                            out[r * 7 + j].to_bits(),
                            want.to_bits(),
                            "{dtype:?} {level:?}, {blocks} blocks, {g} rows: ({r}, {j})"
                        );
                    }
                    assert!(out[r * 7 + 5].is_nan(), "wrote past the tile");
                }
            }
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
