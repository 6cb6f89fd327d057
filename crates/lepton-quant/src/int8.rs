//! [`Int8Matrix`]: per-output-channel symmetric int8 weights, `W[j][i] ≈ s_j · q_ji` with
//! `q_ji ∈ [-127, 127]` and `s_j = max_i |W[j][i]| / 127`, the weights of compressed packages
//! (dynamic `linear-int8` layers; the static layers run on [`crate::PackedI8`]).
//!
//! The matmul runs on the Q8_0 kernels of [`crate::QMatrix`] (i8 × i8 products accumulated exactly
//! in i32 by `vpdpbusd` on AVX-512 VNNI, `vpmaddubsw`/`vpmaddwd` on AVX2, or the scalar definition):
//! every 32-block of row `j` gets the scale 1, so each block's exact integer dot product is scaled
//! only by its activation scale, and the channel scale `s_j` (kept in f32) is applied once per
//! output in [`Int8Matrix::matmul`]'s epilogue. Rows whose length is not a multiple of 32 are
//! padded with zero codes (weights and activations), which adds nothing to any sum.
//!
//! We reuse the Q8_0 layout instead of a second per-channel kernel: it is already tuned and
//! checked bit for bit against its scalar definition at every instruction level, and its 32-value
//! activation blocks make dynamic quantization finer than one scale per row.
//!
//! Activations ([`ActScale`]):
//! - `Dynamic`: each 32-block of each row gets `d = max|x| / 127` at run time (rounded through
//!   f16, as ggml's Q8_0);
//! - `Static(d)`: one scale calibrated beforehand for the layer's input, `q = clamp(round(x / d),
//!   -127, 127)`: no max pass at run time, and exact integer arithmetic when `d = 1`.
//!
//! # Shapes
//! `x: [m, cols]` (row-major f32) → `out: [m, rows]`.

use crate::error::{Error, Result};
use crate::layout::{byte_code_at, padded_blocks, quantize_block, Q8_BYTES, QK};
use crate::{QMatrix, QType};
use rayon::prelude::*;

/// How a layer's input is quantized to int8.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActScale {
    /// Per 32-value block, at run time.
    Dynamic,
    /// One scale for every value, from calibration (`max |x| / 127` over the calibration data).
    Static(f32),
}

/// Per-channel int8 weights `rows × cols` on the Q8_0 kernels (see the module docs).
#[derive(Clone)]
pub struct Int8Matrix {
    q: QMatrix,
    scales: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl std::fmt::Debug for Int8Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Int8Matrix({}x{})", self.rows, self.cols)
    }
}

/// Per-channel symmetric quantization of `w` (`rows × cols`, row-major): the codes (row-major)
/// and one scale per row. An all-zero row gets scale 0 and zero codes.
pub fn quantize_per_channel(rows: usize, cols: usize, w: &[f32]) -> (Vec<i8>, Vec<f32>) {
    assert_eq!(w.len(), rows * cols, "weight length");
    let mut codes = vec![0i8; rows * cols];
    let mut scales = vec![0f32; rows];
    for ((wr, cr), s) in w
        .chunks_exact(cols.max(1))
        .zip(codes.chunks_exact_mut(cols.max(1)))
        .zip(&mut scales)
    {
        let amax = wr.iter().fold(0f32, |a, v| a.max(v.abs()));
        if amax > 0.0 && amax.is_finite() {
            *s = amax / 127.0;
            for (c, v) in cr.iter_mut().zip(wr) {
                *c = (v / *s).round().clamp(-127.0, 127.0) as i8;
            }
        }
    }
    (codes, scales)
}

/// The checks every int8 weight matrix passes before it is packed: a non-empty `rows × cols`
/// shape, as many codes, one finite non-negative scale per row, and no code −128 (symmetric codes
/// are in `[-127, 127]`); errors name `what`.
pub(crate) fn check_weights(
    rows: usize,
    cols: usize,
    codes: &[i8],
    scales: &[f32],
    what: &str,
) -> Result<()> {
    let err = |message: String| Error::Int8 {
        what: what.to_string(),
        message,
    };
    if rows == 0 || cols == 0 {
        return Err(err(format!("empty shape {rows}x{cols}")));
    }
    if rows.checked_mul(cols) != Some(codes.len()) {
        return Err(err(format!(
            "{} codes for a {rows}x{cols} matrix",
            codes.len()
        )));
    }
    if scales.len() != rows {
        return Err(err(format!(
            "{} scales for {rows} output channels",
            scales.len()
        )));
    }
    if let Some(j) = scales.iter().position(|s| !s.is_finite() || *s < 0.0) {
        return Err(err(format!(
            "scale {j} is {} (must be finite and ≥ 0)",
            scales[j]
        )));
    }
    if codes.contains(&i8::MIN) {
        return Err(err(
            "a code is -128 (symmetric codes are in [-127, 127])".into()
        ));
    }
    Ok(())
}

impl Int8Matrix {
    /// Wrap codes (`rows × cols`, row-major, in `[-127, 127]`) and one f32 scale per row; `what`
    /// names the weight in errors.
    pub fn new(
        rows: usize,
        cols: usize,
        codes: &[i8],
        scales: Vec<f32>,
        what: &str,
    ) -> Result<Self> {
        check_weights(rows, cols, codes, &scales, what)?;
        // GGML Q8_0 blocks with scale 1 (f16 0x3c00), the row padded with zero codes.
        let kp = cols.next_multiple_of(QK);
        let nb = kp / QK;
        let one = 0x3c00u16.to_le_bytes();
        let mut data = vec![0u8; rows * nb * 34];
        for (cr, dst) in codes.chunks_exact(cols).zip(data.chunks_exact_mut(nb * 34)) {
            for (b, blk) in dst.chunks_exact_mut(34).enumerate() {
                blk[..2].copy_from_slice(&one);
                let src = &cr[(b * QK).min(cols)..((b + 1) * QK).min(cols)];
                for (o, &c) in blk[2..].iter_mut().zip(src) {
                    *o = c as u8;
                }
            }
        }
        let q = QMatrix::new(QType::Q8_0, rows, kp, data)?;
        Ok(Self {
            q,
            scales,
            rows,
            cols,
        })
    }

    /// Quantize f32 weights per channel ([`quantize_per_channel`]).
    pub fn quantize(rows: usize, cols: usize, w: &[f32], what: &str) -> Result<Self> {
        if rows.checked_mul(cols) != Some(w.len()) {
            return Err(Error::Int8 {
                what: what.to_string(),
                message: format!("{} values for a {rows}x{cols} matrix", w.len()),
            });
        }
        let (codes, scales) = quantize_per_channel(rows, cols, w);
        Self::new(rows, cols, &codes, scales, what)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The per-channel scales.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// Bytes of one quantized activation row.
    fn act_len(&self) -> usize {
        padded_blocks(self.cols.next_multiple_of(QK)) * Q8_BYTES
    }

    /// `out[r][j] = s_j · Σ_i q_ji · x̂_ri` for the `m = x.len() / cols` rows of `x`, `x̂` the
    /// activations quantized as `act` says; `out` is `m × rows`. `scratch` holds the quantized
    /// activations of a call that runs on one thread (at most `ROWS_PER_TASK` rows); larger
    /// calls split their rows over rayon's threads, each block quantized and multiplied by one
    /// thread (a descheduled thread's blocks are stolen, so a busy machine does not stall a call).
    pub fn matmul(&self, x: &[f32], act: ActScale, out: &mut [f32], scratch: &mut Vec<u8>) {
        let m = x.len() / self.cols;
        assert_eq!(x.len(), m * self.cols, "matmul input length");
        assert!(out.len() >= m * self.rows, "matmul output length");
        if m <= ROWS_PER_TASK {
            return self.matmul_serial(x, act, &mut out[..m * self.rows], scratch);
        }
        x.par_chunks(ROWS_PER_TASK * self.cols)
            .zip(out[..m * self.rows].par_chunks_mut(ROWS_PER_TASK * self.rows))
            .for_each_init(Vec::new, |scratch, (x, out)| {
                self.matmul_serial(x, act, out, scratch)
            });
    }

    /// [`Int8Matrix::matmul`] on the calling thread, whatever the number of rows (callers that
    /// split the work themselves, e.g. one image per task).
    pub fn matmul_serial(&self, x: &[f32], act: ActScale, out: &mut [f32], scratch: &mut Vec<u8>) {
        let m = x.len() / self.cols;
        if m == 0 {
            return;
        }
        let len = self.act_len();
        scratch.clear();
        scratch.resize(m * len, 0);
        for (xr, row) in x.chunks_exact(self.cols).zip(scratch.chunks_exact_mut(len)) {
            quantize_act_row(xr, act, row);
        }
        // SAFETY: `out` holds `m` rows of `self.rows`; this thread owns it for the call.
        unsafe {
            self.q
                .matmul_q8_serial(scratch, m, out.as_mut_ptr(), self.rows, 0)
        };
        for row in out.chunks_exact_mut(self.rows) {
            for (o, s) in row.iter_mut().zip(&self.scales) {
                *o *= s;
            }
        }
    }
}

/// Activation rows per task of a parallel [`Int8Matrix::matmul`].
pub const ROWS_PER_TASK: usize = 64;

/// Quantize one activation row (`x.len()` values, any length) to the kernel layout `out`
/// (`padded_blocks(⌈len/32⌉·32) · Q8_BYTES` bytes): codes, then per block the f32 scale `d`, the
/// f32 `d · Σq` and the i32 `128 · Σq`; missing values of the last block are zeros.
pub fn quantize_act_row(x: &[f32], act: ActScale, out: &mut [u8]) {
    let nbp = out.len() / Q8_BYTES;
    let (codes, scales) = out.split_at_mut(nbp * QK);
    codes.fill(0);
    scales.fill(0);
    let mut block = [0u8; QK];
    let mut padded;
    let inv = match act {
        ActScale::Static(d) if d > 0.0 => 1.0 / d,
        _ => 0.0,
    };
    for (b, xb) in x.chunks(QK).enumerate() {
        let xb = if xb.len() == QK {
            xb
        } else {
            padded = [0f32; QK];
            padded[..xb.len()].copy_from_slice(xb);
            &padded
        };
        let (d, s, sum) = match act {
            ActScale::Dynamic => quantize_block(xb, &mut block),
            ActScale::Static(d) => {
                // Round half to even without a libm call (|v · inv| ≤ 127 ≪ 2^22 after the
                // clamp), as `layout::quantize_block`; separate loops so each vectorises.
                let mut q = [0i32; QK];
                for (q, v) in q.iter_mut().zip(xb) {
                    let c = (v * inv).clamp(-127.0, 127.0);
                    *q = ((c + 12_582_912.0) - 12_582_912.0) as i32;
                }
                let sum: i32 = q.iter().sum();
                for (o, q) in block.iter_mut().zip(&q) {
                    *o = *q as i8 as u8;
                }
                (d, d * sum as f32, sum)
            }
        };
        for (k, quad) in block.chunks_exact(4).enumerate() {
            let at = byte_code_at(nbp, b, 4 * k);
            codes[at..at + 4].copy_from_slice(quad);
        }
        scales[4 * b..4 * b + 4].copy_from_slice(&d.to_le_bytes());
        scales[nbp * 4 + 4 * b..nbp * 4 + 4 * b + 4].copy_from_slice(&s.to_le_bytes());
        scales[nbp * 8 + 4 * b..nbp * 8 + 4 * b + 4].copy_from_slice(&(128 * sum).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no test dependency).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn int(&mut self, lo: i32, hi: i32) -> i32 {
            lo + (self.next() % (hi - lo + 1) as u64) as i32
        }
        fn unit(&mut self) -> f32 {
            (self.next() as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        }
    }

    /// Shapes around the vector widths: 1, 31, 32, 33 columns, odd block counts, partial groups
    /// of eight blocks, a single row, rows not a multiple of the tile, and more rows than one
    /// task takes (the parallel split, with a partial last block of rows).
    const SHAPES: [(usize, usize, usize); 10] = [
        (150, 7, 45),
        (1, 1, 1),
        (3, 5, 31),
        (7, 4, 32),
        (9, 13, 33),
        (4, 17, 64 * 3 + 7),
        (16, 64, 288),
        (11, 10, 9),
        (2, 3, 256 + 31),
        (33, 6, 300),
    ];

    /// Integer codes and integer inputs with scale 1: the kernel's result must be the exact
    /// integer product `Σ q_ji x_ri` (every partial sum is below 2^24, so f32 holds it exactly).
    #[test]
    fn int8_matmul_equals_the_exact_integer_reference_on_random_shapes() {
        let mut g = Lcg(7);
        for (m, n, k) in SHAPES {
            let codes: Vec<i8> = (0..n * k).map(|_| g.int(-127, 127) as i8).collect();
            let x: Vec<i32> = (0..m * k).map(|_| g.int(-127, 127)).collect();
            let w = Int8Matrix::new(n, k, &codes, vec![1.0; n], "w").unwrap();
            let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let mut out = vec![f32::NAN; m * n];
            w.matmul(&xf, ActScale::Static(1.0), &mut out, &mut Vec::new());
            for r in 0..m {
                for j in 0..n {
                    let want: i64 = (0..k)
                        .map(|i| codes[j * k + i] as i64 * x[r * k + i] as i64)
                        .sum();
                    assert_eq!(out[r * n + j], want as f32, "{m}x{n}x{k} at ({r}, {j})");
                }
            }
        }
    }

    /// Random f32 weights and inputs: the int8 result is within the quantization error of the f32
    /// product, bounded by the rounding of each factor (half a step of each scale).
    #[test]
    fn int8_matmul_is_within_quantization_error_of_f32() {
        let mut g = Lcg(11);
        for (m, n, k) in SHAPES {
            let wf: Vec<f32> = (0..n * k).map(|_| g.unit()).collect();
            let x: Vec<f32> = (0..m * k).map(|_| g.unit()).collect();
            let w = Int8Matrix::quantize(n, k, &wf, "w").unwrap();
            for act in [ActScale::Dynamic, ActScale::Static(1.0 / 127.0)] {
                let mut out = vec![f32::NAN; m * n];
                w.matmul(&x, act, &mut out, &mut Vec::new());
                for r in 0..m {
                    for j in 0..n {
                        let (wr, xr) = (&wf[j * k..(j + 1) * k], &x[r * k..(r + 1) * k]);
                        let exact: f32 = wr.iter().zip(xr).map(|(a, b)| a * b).sum();
                        let sw = w.scales()[j];
                        // |Δ(w x)| ≤ |x| sw/2 + |w| sx/2 (+ the product of both half steps);
                        // sx ≤ max|x| / 127 ≤ 1/127 for both modes (f16 rounding adds < 0.1 %).
                        let sx = 1.0 / 127.0 * 1.001;
                        let bound: f32 = wr
                            .iter()
                            .zip(xr)
                            .map(|(a, b)| b.abs() * sw / 2.0 + a.abs() * sx / 2.0 + sw * sx / 4.0)
                            .sum::<f32>()
                            + 1e-5;
                        let got = out[r * n + j];
                        assert!(
                            (got - exact).abs() <= bound,
                            "{act:?} {m}x{n}x{k} ({r}, {j}): {got} vs {exact}, bound {bound}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn static_activations_clamp_to_the_code_range() {
        let w = Int8Matrix::new(1, 2, &[1, 1], vec![1.0], "w").unwrap();
        let mut out = [0f32];
        w.matmul(
            &[1000.0, -3.0],
            ActScale::Static(1.0),
            &mut out,
            &mut Vec::new(),
        );
        assert_eq!(out[0], 127.0 - 3.0);
    }

    #[test]
    fn bad_parts_are_errors_naming_the_weight() {
        let e = Int8Matrix::new(2, 3, &[0; 5], vec![1.0; 2], "layers.0.weight").unwrap_err();
        assert!(e.to_string().contains("layers.0.weight") && e.to_string().contains("5 codes"));
        let e = Int8Matrix::new(2, 2, &[0; 4], vec![1.0], "w").unwrap_err();
        assert!(e.to_string().contains("1 scales for 2"), "{e}");
        let e = Int8Matrix::new(1, 2, &[0; 2], vec![f32::NAN], "w").unwrap_err();
        assert!(e.to_string().contains("finite"), "{e}");
        let e = Int8Matrix::new(1, 2, &[-128, 0], vec![1.0], "w").unwrap_err();
        assert!(e.to_string().contains("-128"), "{e}");
    }
}
