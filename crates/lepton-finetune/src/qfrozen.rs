//! `y = x·Wᵀ` for a frozen weight kept in its GGUF blocks (QLoRA-style): the forward runs on
//! lepton-quant's integer kernels ([`QMatrix::matmul`], activations quantized per block of 32
//! exactly as the inference path does), the input gradient `dx = dy·W` on a transposed copy
//! `Wᵀ` re-quantized to Q8_0 once at load, so its rows are again block dot products on the same
//! kernels. Both are multi-threaded over lepton-quant's team. As [`crate::frozen`], the backward
//! returns the input gradient only.
//!
//! # Shapes
//! `x: [.., in]`, `W: [out, in]` → `y: [.., out]`; `Wᵀ: [in, out]` (`out` a multiple of 32).
//!
//! # Row order
//! GGUF stores Wq and Wk with each head's rows interleaved for llama.cpp's RoPE. The blocks are
//! kept in the file's order and the op gathers the output columns into HF's order
//! (`y[.., j] = (x·W_ggufᵀ)[.., perm[j]]`, see `base::unpermute_rope_rows`); `Wᵀ` is
//! built in HF's order, so the backward needs no gather.
//!
//! # Error (per output element, against the dequantized f32 composition)
//! The weight is exact (the reference is the dequantized `W`); only the activation row is
//! rounded: per block of 32 values `d = max|x| / 127` (stored through f16), each code off by at
//! most `d/2`, so `|Δy_j| ≤ Σ_i |W_ji| · e_i` with `e_i ≈ 0.5 · d_block(i)`. The input
//! gradient adds the Q8_0 rounding of `Wᵀ` (again `≤ d/2` per value of each 32-block of a row).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use half::f16;
use lepton_quant::{QMatrix, QType, QK};

use crate::error::{Error, Result};

/// A frozen weight in its GGUF blocks plus the transposed Q8_0 copy for the backward.
pub struct QuantWeight {
    /// `W` as stored: `[out, in]`, rows in the file's order.
    w: QMatrix,
    /// `Wᵀ` in HF row order, Q8_0: `[in, out]`.
    wt: QMatrix,
    /// Output column `j` is row `perm[j]` of `w`; `None`: the identity.
    perm: Option<Vec<u32>>,
}

impl std::fmt::Debug for QuantWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QuantWeight({:?}, Wᵀ {:?})", self.w, self.wt)
    }
}

/// GGML Q8_0 blocks of a row-major matrix (`values.len()` a multiple of 32), as ggml's
/// `quantize_row_q8_0_ref`: per 32 values `d = max|x| / 127` (stored as f16), `q = round(x / d)`.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / QK * 34);
    for b in values.chunks_exact(QK) {
        let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend(b.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

/// GGML Q4_1 blocks of a row-major matrix, as ggml's `quantize_row_q4_1_ref`: per 32 values
/// `d = (max − min) / 15`, `m = min` (both f16), codes `min(15, ⌊(x − min)/d + ½⌋)`, value `j`
/// in the low nibble of byte `j` and value `j + 16` in its high nibble.
pub fn quantize_q4_1(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / QK * 20);
    for b in values.chunks_exact(QK) {
        let min = b.iter().copied().fold(f32::INFINITY, f32::min);
        let max = b.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 15.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
        let code = |v: f32| (((v - min) * id + 0.5) as u8).min(15);
        out.extend((0..QK / 2).map(|j| code(b[j]) | (code(b[j + QK / 2]) << 4)));
    }
    out
}

/// The row order that undoes GGUF's RoPE interleave for `heads` heads of `rows / heads` rows:
/// HF row `h·d + s·d/2 + j` is file row `h·d + 2j + s`.
pub fn rope_perm(rows: usize, heads: usize) -> Vec<u32> {
    let d = rows / heads;
    let mut perm = vec![0u32; rows];
    for h in 0..heads {
        for j in 0..d / 2 {
            for s in 0..2 {
                perm[h * d + s * (d / 2) + j] = (h * d + 2 * j + s) as u32;
            }
        }
    }
    perm
}

impl QuantWeight {
    /// Keep `w` (`[out, in]`, rows in the file's order) as it is and build `Wᵀ` in Q8_0. With
    /// `rope_heads`, `w`'s rows are in GGUF's RoPE order for that many heads (Wq, Wk).
    pub fn new(w: QMatrix, rope_heads: Option<usize>, what: &str) -> Result<Self> {
        let perm = rope_heads.map(|h| rope_perm(w.rows(), h));
        let wt = transposed_q8_0(&w, perm.as_deref(), what)?;
        Ok(Self { w, wt, perm })
    }

    /// The rows of `parts` stacked into one weight (`[Σ out, in]`, e.g. Wq, Wk, Wv: one matmul,
    /// one activation quantization). Each output column is the same block dot product as in its
    /// part; `Wᵀ`'s Q8_0 blocks are the parts' blocks side by side (every part's row count is
    /// a multiple of 32). `None` when the parts differ in type or inputs.
    pub fn concat(parts: &[&QuantWeight], what: &str) -> Result<Option<Self>> {
        let ws: Vec<QMatrix> = parts.iter().map(|p| p.w.clone()).collect();
        let Some(w) = QMatrix::concat_rows(&ws) else {
            return Ok(None);
        };
        let mut perm = Vec::with_capacity(w.rows());
        let mut offset = 0u32;
        for p in parts {
            match &p.perm {
                Some(pp) => perm.extend(pp.iter().map(|j| j + offset)),
                None => perm.extend((0..p.rows() as u32).map(|j| j + offset)),
            }
            offset += p.rows() as u32;
        }
        let identity = perm.iter().enumerate().all(|(j, &p)| p as usize == j);
        let perm = (!identity).then_some(perm);
        let wt = transposed_q8_0(&w, perm.as_deref(), what)?;
        Ok(Some(Self { w, wt, perm }))
    }

    /// Output features (`W`'s rows).
    pub fn rows(&self) -> usize {
        self.w.rows()
    }

    /// Input features (`W`'s columns).
    pub fn cols(&self) -> usize {
        self.w.cols()
    }

    /// The stored type of `W`.
    pub fn qtype(&self) -> QType {
        self.w.qtype()
    }

    /// Bytes held: `W`'s blocks plus `Wᵀ`'s.
    pub fn bytes(&self) -> usize {
        self.w.bytes() + self.wt.bytes()
    }

    /// Row `j` (HF order) of `W`, dequantized into `out` (`cols` values).
    pub fn dequantize_row(&self, j: usize, out: &mut [f32]) {
        let src = self.perm.as_ref().map_or(j, |p| p[j] as usize);
        self.w.dequantize_row(src, out);
    }

    /// `W` dequantized to an f32 tensor `[out, in]` in HF order (merging, tests).
    pub fn to_f32(&self) -> candle_core::Result<Tensor> {
        let (n, k) = (self.rows(), self.cols());
        let mut v = vec![0f32; n * k];
        for (j, out) in v.chunks_exact_mut(k).enumerate() {
            self.dequantize_row(j, out);
        }
        Tensor::from_vec(v, (n, k), &candle_core::Device::Cpu)
    }

    /// `y = x·Wᵀ` for `m` rows of `x` (`m × in`): `m × out`.
    pub(crate) fn forward_rows(&self, x: &[f32]) -> Vec<f32> {
        let (n, m) = (self.rows(), x.len() / self.cols());
        let mut y = vec![0f32; m * n];
        if m == 0 {
            return y;
        }
        scaled_matmul(&self.w, x, &mut y);
        if let Some(p) = &self.perm {
            let mut row = vec![0f32; n];
            for yr in y.chunks_exact_mut(n) {
                for (o, &src) in row.iter_mut().zip(p) {
                    *o = yr[src as usize];
                }
                yr.copy_from_slice(&row);
            }
        }
        y
    }

    /// `dx = dy·W` for `m` rows of `dy` (`m × out`): `m × in`.
    pub(crate) fn backward_rows(&self, dy: &[f32]) -> Vec<f32> {
        let (k, m) = (self.cols(), dy.len() / self.rows());
        let mut dx = vec![0f32; m * k];
        if m > 0 {
            scaled_matmul(&self.wt, dy, &mut dx);
        }
        dx
    }
}

/// `Wᵀ` in HF row order (output column `j` is row `perm[j]` of `w`), re-quantized to Q8_0.
fn transposed_q8_0(w: &QMatrix, perm: Option<&[u32]>, what: &str) -> Result<QMatrix> {
    let (n, k) = (w.rows(), w.cols());
    let quant_err = |source| Error::Quantize {
        what: format!("{what} (transposed to {k}x{n} Q8_0)"),
        source,
    };
    // Cheap check first: Wᵀ's rows are blocks of 32 along `out`.
    if n % QK != 0 {
        return Err(quant_err(lepton_quant::Error::Columns {
            qtype: "Q8_0",
            cols: n,
            block: QK,
        }));
    }
    // Dequantize row by row, scatter into the transposed layout.
    let mut t = vec![0f32; k * n];
    let mut row = vec![0f32; k];
    for j in 0..n {
        let src = perm.map_or(j, |p| p[j] as usize);
        w.dequantize_row(src, &mut row);
        for (i, v) in row.iter().enumerate() {
            t[i * n + j] = *v;
        }
    }
    QMatrix::new(QType::Q8_0, k, n, quantize_q8_0(&t)).map_err(quant_err)
}

/// `out = x·Wᵀ` with each row of `x` scaled by a power of two that brings its largest magnitude
/// to [1, 2) before the kernel quantizes it, and the result scaled back (both exact). The
/// kernel stores each block's scale `max|x|/127` as f16, which flushes to zero below ~6e-8:
/// gradients of ~1e-6 (a loss averaged over 512 positions, deep in the backward) would
/// otherwise lose their blocks.
fn scaled_matmul(w: &QMatrix, x: &[f32], out: &mut [f32]) {
    let (k, n) = (w.cols(), w.rows());
    let mut xs = x.to_vec();
    let mut scales = Vec::with_capacity(x.len() / k);
    for row in xs.chunks_exact_mut(k) {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let e = if amax > 0.0 && amax.is_finite() {
            -(amax.log2().floor() as i32)
        } else {
            0
        };
        let s = 2f32.powi(e);
        if e != 0 {
            row.iter_mut().for_each(|v| *v *= s);
        }
        scales.push(s);
    }
    w.matmul(&xs, out, &mut Vec::new());
    for (row, s) in out.chunks_exact_mut(n).zip(scales) {
        if s != 1.0 {
            let inv = 1.0 / s;
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// The candle op around a [`QuantWeight`].
struct QFrozen(Arc<QuantWeight>);

fn f32_rows<'a>(s: &'a CpuStorage, l: &Layout, width: usize) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("quantized frozen linear: the input must be f32");
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("quantized frozen linear: the input must be contiguous");
    };
    if l.dims().last() != Some(&width) {
        candle_core::bail!(
            "quantized frozen linear: input {:?} does not end in {width}",
            l.dims()
        );
    }
    Ok(&v[a..b])
}

impl CustomOp1 for QFrozen {
    fn name(&self) -> &'static str {
        "lepton-quantized-frozen-linear"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_rows(xs, xl, self.0.cols())?;
        let y = self.0.forward_rows(x);
        let mut out = xl.dims().to_vec();
        *out.last_mut().expect("x has a last dimension") = self.0.rows();
        Ok((CpuStorage::F32(y), Shape::from(out)))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let dx = {
            let (s, l) = dy.storage_and_layout();
            let candle_core::Storage::Cpu(cpu) = &*s else {
                candle_core::bail!("quantized frozen linear: the gradient must be on the CPU");
            };
            self.0.backward_rows(f32_rows(cpu, l, self.0.rows())?)
        };
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// `x·Wᵀ` through the integer kernels, with a gradient for `x` only (see the module docs).
pub fn quantized_linear(x: &Tensor, w: &Arc<QuantWeight>) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(QFrozen(w.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};

    fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-scale..scale)).collect()
    }

    /// Per-element bound of `|a·bᵀ − â·b̂ᵀ|` where each 32-block of a row of `a` is rounded to
    /// `d/2` with `d = max|block| / 127` (plus 7 % for the f16 scale), `b` exact.
    fn act_bound(a: &[f32], b: &[f32], k: usize) -> Vec<f32> {
        let (m, n) = (a.len() / k, b.len() / k);
        let mut e = vec![0f32; a.len()];
        for (blk, eb) in a.chunks_exact(QK).zip(e.chunks_exact_mut(QK)) {
            let amax = blk.iter().fold(0f32, |x, v| x.max(v.abs()));
            eb.fill(0.5 * 1.07 * amax / 127.0);
        }
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            for j in 0..n {
                let s: f32 = (0..k).map(|i| e[r * k + i] * b[j * k + i].abs()).sum();
                out[r * n + j] = s + 1e-5;
            }
        }
        out
    }

    #[test]
    fn q8_0_and_q4_1_quantizers_round_trip_within_half_a_step() -> anyhow::Result<()> {
        let v = random(64 * 4, 1, 1.0);
        for (qt, bytes, step) in [
            (QType::Q8_0, quantize_q8_0(&v), 2.0 / 127.0),
            (QType::Q4_1, quantize_q4_1(&v), 2.0 / 15.0),
        ] {
            let q = QMatrix::new(qt, 4, 64, bytes)?;
            let mut row = vec![0f32; 64];
            for r in 0..4 {
                q.dequantize_row(r, &mut row);
                for (a, b) in row.iter().zip(&v[r * 64..]) {
                    assert!((a - b).abs() <= 0.5 * step * 1.01, "{qt:?}: {a} vs {b}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn forward_and_input_gradient_match_the_dequantized_composition() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        // Wq-like: 2 heads of 32 rows in GGUF's RoPE order, Q4_1 as SmolLM2 stores it.
        let (m, n, k, heads) = (5, 64, 96, 2);
        let w_hf = random(n * k, 2, 0.1);
        // The file order: HF row j is file row perm[j].
        let mut w_gguf = vec![0f32; n * k];
        for (j, &src) in rope_perm(n, heads).iter().enumerate() {
            let src = src as usize;
            w_gguf[src * k..(src + 1) * k].copy_from_slice(&w_hf[j * k..(j + 1) * k]);
        }
        assert_eq!(
            lepton_llm::llama::weights::permute_rope_rows(&w_hf, heads, k),
            w_gguf
        );
        let q = QMatrix::new(QType::Q4_1, n, k, quantize_q4_1(&w_gguf))?;
        let qw = Arc::new(QuantWeight::new(q, Some(heads), "test")?);
        let w = qw.to_f32()?; // the dequantized reference, HF order
        let wv = w.flatten_all()?.to_vec1::<f32>()?;
        for (a, b) in wv.iter().zip(&w_hf) {
            assert!((a - b).abs() < 0.2 / 15.0 * 0.51 + 1e-3, "{a} vs {b}");
        }
        let xv = random(m * k, 3, 1.0);
        let x = Var::from_vec(xv.clone(), (m, k), &dev)?;
        let y = quantized_linear(x.as_tensor(), &qw)?;
        let want = x.as_tensor().matmul(&w.t()?)?;
        let bound = act_bound(&xv, &wv, k);
        let (yv, wantv) = (
            y.flatten_all()?.to_vec1::<f32>()?,
            want.flatten_all()?.to_vec1::<f32>()?,
        );
        let mut worst = 0f32;
        for ((a, b), e) in yv.iter().zip(&wantv).zip(&bound) {
            assert!((a - b).abs() <= *e, "forward {a} vs {b} (bound {e})");
            worst = worst.max((a - b).abs() / e);
        }
        // Not vacuous: the activation rounding shows, and within the bound.
        assert!(
            worst > 0.01,
            "forward error {worst} of the bound: not quantized?"
        );
        // d(sum(y ⊙ c))/dx = c·W.
        let cv = random(m * n, 4, 1.0);
        let c = Tensor::from_vec(cv.clone(), (m, n), &dev)?;
        let grads = (y * &c)?.sum_all()?.backward()?;
        let dx = grads.get(x.as_tensor()).expect("x has a gradient");
        let want = c.matmul(&w)?;
        // Bound: c's rounding against W, plus Wᵀ's Q8_0 rounding against c (and their product).
        let wt: Vec<f32> = (0..k * n).map(|t| wv[(t % n) * k + t / n]).collect();
        let b1 = act_bound(&cv, &wt, n);
        let b2 = act_bound(&wt, &cv, n); // [k, m]: Wᵀ's blocks along `out`
        let (dxv, wantv) = (
            dx.flatten_all()?.to_vec1::<f32>()?,
            want.flatten_all()?.to_vec1::<f32>()?,
        );
        for r in 0..m {
            for i in 0..k {
                let e = 1.1 * (b1[r * k + i] + b2[i * m + r]);
                let (a, b) = (dxv[r * k + i], wantv[r * k + i]);
                assert!((a - b).abs() <= e, "dx[{r}][{i}] {a} vs {b} (bound {e})");
            }
        }
        assert!(grads.get(&w).is_none());
        Ok(())
    }

    #[test]
    fn stacked_weights_give_each_parts_columns_and_the_summed_input_gradient() -> anyhow::Result<()>
    {
        // Wq-like (RoPE order, 2 heads) over Wv-like (identity): one matmul, the same columns.
        let (m, k) = (5, 64);
        let q = QMatrix::new(QType::Q4_1, 64, k, quantize_q4_1(&random(64 * k, 11, 0.2)))?;
        let v = QMatrix::new(QType::Q4_1, 32, k, quantize_q4_1(&random(32 * k, 12, 0.2)))?;
        let (q, v) = (
            QuantWeight::new(q, Some(2), "q")?,
            QuantWeight::new(v, None, "v")?,
        );
        let qv = QuantWeight::concat(&[&q, &v], "q/v")?.expect("same type and inputs");
        let x = random(m * k, 13, 1.0);
        let (yq, yv, y) = (q.forward_rows(&x), v.forward_rows(&x), qv.forward_rows(&x));
        for r in 0..m {
            assert_eq!(
                &y[r * 96..r * 96 + 64],
                &yq[r * 64..(r + 1) * 64],
                "row {r} of q"
            );
            assert_eq!(
                &y[r * 96 + 64..(r + 1) * 96],
                &yv[r * 32..(r + 1) * 32],
                "row {r} of v"
            );
        }
        let (dq, dv) = (random(m * 64, 14, 1.0), random(m * 32, 15, 1.0));
        let dy: Vec<f32> = (0..m)
            .flat_map(|r| {
                dq[r * 64..(r + 1) * 64]
                    .iter()
                    .chain(&dv[r * 32..(r + 1) * 32])
            })
            .copied()
            .collect();
        let dx = qv.backward_rows(&dy);
        let want: Vec<f32> = q
            .backward_rows(&dq)
            .iter()
            .zip(v.backward_rows(&dv))
            .map(|(a, b)| a + b)
            .collect();
        for (a, b) in dx.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // Different inputs do not stack.
        let w = QMatrix::new(
            QType::Q4_1,
            32,
            32,
            quantize_q4_1(&random(32 * 32, 16, 0.2)),
        )?;
        assert!(QuantWeight::concat(&[&q, &QuantWeight::new(w, None, "w")?], "x")?.is_none());
        Ok(())
    }

    #[test]
    fn tiny_gradients_keep_their_precision() -> anyhow::Result<()> {
        // Regression: the kernel's f16 block scale flushed gradients of ~1e-9 to zero (SmolLM2's
        // loss rose instead of falling with the quantized base).
        let dev = Device::Cpu;
        let (m, n, k) = (4, 64, 32);
        let q = QMatrix::new(QType::Q8_0, n, k, quantize_q8_0(&random(n * k, 8, 0.2)))?;
        let qw = Arc::new(QuantWeight::new(q, None, "test")?);
        let w = qw.to_f32()?;
        for scale in [1.0f32, 1e-9, 3e9] {
            let dy = Tensor::from_vec(random(m * n, 9, scale), (m, n), &dev)?;
            let dx = Tensor::from_vec(
                qw.backward_rows(&dy.flatten_all()?.to_vec1::<f32>()?),
                (m, k),
                &dev,
            )?;
            let want = dy.matmul(&w)?;
            let rel = ((dx - &want)?.abs()?.max_all()?.to_scalar::<f32>()?)
                / want.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(rel < 0.02, "dy scale {scale}: relative error {rel}");
        }
        Ok(())
    }

    #[test]
    fn input_gradient_matches_finite_differences_of_the_quantized_forward() -> anyhow::Result<()> {
        // The forward is piecewise constant in x at the scale of one code; a step of many codes
        // averages over the rounding, and a linear map has no curvature to spoil the difference.
        let dev = Device::Cpu;
        let (m, n, k) = (3, 32, 64);
        let q = QMatrix::new(QType::Q8_0, n, k, quantize_q8_0(&random(n * k, 5, 0.2)))?;
        let qw = Arc::new(QuantWeight::new(q, None, "test")?);
        let xv = random(m * k, 6, 1.0);
        let cv = random(m * n, 7, 1.0);
        let c = Tensor::from_vec(cv, (m, n), &dev)?;
        let f = |xv: &[f32]| -> anyhow::Result<f64> {
            let x = Tensor::from_vec(xv.to_vec(), (m, k), &dev)?;
            Ok((quantized_linear(&x, &qw)? * &c)?
                .sum_all()?
                .to_scalar::<f32>()? as f64)
        };
        let x = Var::from_vec(xv.clone(), (m, k), &dev)?;
        let g = (quantized_linear(x.as_tensor(), &qw)? * &c)?
            .sum_all()?
            .backward()?;
        let g = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()?
            .to_vec1::<f32>()?;
        for idx in [0, 17, 70, m * k - 1] {
            let eps = 0.25f32;
            let (mut p, mut mn) = (xv.clone(), xv.clone());
            p[idx] += eps;
            mn[idx] -= eps;
            let numeric = (f(&p)? - f(&mn)?) / (2.0 * eps as f64);
            let analytic = g[idx] as f64;
            assert!(
                (numeric - analytic).abs() < 0.05 + 0.05 * analytic.abs(),
                "element {idx}: numeric {numeric} analytic {analytic}"
            );
        }
        Ok(())
    }
}
