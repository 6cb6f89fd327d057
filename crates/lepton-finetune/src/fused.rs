//! Fused element-wise parts of the decoder with their backward: RMSNorm, HF's rotate-half RoPE
//! and SwiGLU, each one pass over rows (multi-threaded) instead of candle compositions of 4-8
//! single-threaded ops whose intermediates the autograd graph keeps alive.
//!
//! # Maths (per row of `n` values)
//! ```text
//! RMSNorm  y = x·r·w,  r = 1/√(mean(x²) + ε)      dx = r·g − (r³/n)·(g·x)·x,  g = dy ⊙ w
//! RoPE     (y_i, y_{i+h}) = rotate (x_i, x_{i+h}) by θ_{t,i}   dx = rotate dy by −θ
//! SwiGLU   y = silu(a)·b                           da = dy·b·σ(a)(1 + a(1 − σ(a))), db = dy·silu(a)
//! ```
//! Norm weights and RoPE tables are constants (no gradient), as in the compositions they replace
//! (the plain candle compositions in this file's tests).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The contiguous f32 values of a CPU storage.
pub(crate) fn values<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{op}: the input must be f32");
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: the input must be contiguous");
    };
    Ok(&v[a..b])
}

/// `f` on the contiguous f32 values of `t`.
pub(crate) fn with_values<R>(
    t: &Tensor,
    op: &str,
    f: impl FnOnce(&[f32]) -> Result<R>,
) -> Result<R> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*s else {
        candle_core::bail!("{op}: the input must be on the CPU");
    };
    f(values(cpu, l, op)?)
}

/// Rows per parallel task: about 16k values.
fn rows_per_task(n: usize) -> usize {
    (16_384 / n.max(1)).max(1)
}

pub(crate) struct RmsNorm {
    pub w: Vec<f32>,
    pub eps: f32,
}

impl RmsNorm {
    fn inv(&self, x: &[f32]) -> f32 {
        let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        1.0 / (ms + self.eps).sqrt()
    }
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "lepton-rms-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = values(s, l, "rms norm")?;
        Ok((CpuStorage::F32(self.forward_rows(x)), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_values(x, "rms norm", |x| {
            with_values(dy, "rms norm", |dy| Ok(self.grad_rows(x, dy)))
        })?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

impl RmsNorm {
    /// The forward on rows of `w.len()` values.
    pub(crate) fn forward_rows(&self, x: &[f32]) -> Vec<f32> {
        let n = self.w.len();
        let mut y = vec![0f32; x.len()];
        let chunk = rows_per_task(n) * n;
        y.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(y, x)| {
                for (y, x) in y.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
                    let r = self.inv(x);
                    for ((y, x), w) in y.iter_mut().zip(x).zip(&self.w) {
                        *y = x * r * w;
                    }
                }
            });
        y
    }

    /// `dx` of [`RmsNorm::forward_rows`] for the output gradient `dy`.
    pub(crate) fn grad_rows(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let n = self.w.len();
        let mut dx = vec![0f32; x.len()];
        let chunk = rows_per_task(n) * n;
        dx.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk).zip(dy.par_chunks(chunk)))
            .for_each(|(dx, (x, dy))| {
                for ((dx, x), dy) in dx
                    .chunks_exact_mut(n)
                    .zip(x.chunks_exact(n))
                    .zip(dy.chunks_exact(n))
                {
                    let r = self.inv(x);
                    let gx: f32 = dy
                        .iter()
                        .zip(&self.w)
                        .zip(x)
                        .map(|((d, w), x)| d * w * x)
                        .sum();
                    let c = r * r * r * gx / n as f32;
                    for (((o, x), d), w) in dx.iter_mut().zip(x).zip(dy).zip(&self.w) {
                        *o = r * d * w - c * x;
                    }
                }
            });
        dx
    }
}

/// `x / √(mean(x²) + ε) · w` over the last dimension (`w` constant).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let w = w.to_vec1::<f32>()?;
    if x.dims().last() != Some(&w.len()) {
        candle_core::bail!("rms norm: x {:?} does not end in {}", x.dims(), w.len());
    }
    x.contiguous()?.apply_op1(RmsNorm { w, eps: eps as f32 })
}

/// HF's RoPE on `x: [B, T, H, hd]` with per-position angles (`cos`, `sin`: `[T, hd/2]`).
pub(crate) struct Rope {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    pub t: usize,
    pub heads: usize,
    pub hd: usize,
}

impl Rope {
    /// Rotate each head of `x` by `sign`·θ into `y`.
    pub(crate) fn apply(&self, x: &[f32], sign: f32) -> Vec<f32> {
        let (h, hd, half) = (self.heads, self.hd, self.hd / 2);
        let mut y = vec![0f32; x.len()];
        // One task per position row (all heads of one token).
        y.par_chunks_mut(h * hd)
            .zip(x.par_chunks(h * hd))
            .enumerate()
            .for_each(|(row, (y, x))| {
                let p = row % self.t;
                let (c, s) = (
                    &self.cos[p * half..(p + 1) * half],
                    &self.sin[p * half..(p + 1) * half],
                );
                for (y, x) in y.chunks_exact_mut(hd).zip(x.chunks_exact(hd)) {
                    for i in 0..half {
                        let (a, b) = (x[i], x[i + half]);
                        let (c, s) = (c[i], sign * s[i]);
                        y[i] = a * c - b * s;
                        y[i + half] = b * c + a * s;
                    }
                }
            });
        y
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "lepton-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = values(s, l, "rope")?;
        Ok((CpuStorage::F32(self.apply(x, 1.0)), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_values(dy, "rope", |dy| Ok(self.apply(dy, -1.0)))?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// HF's rotate-half RoPE tables for positions `0..t`: `(cos, sin)`, each `[t, hd/2]` row-major.
pub fn rope_angles(t: usize, head_dim: usize, theta: f64) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let (mut cos, mut sin) = (Vec::with_capacity(t * half), Vec::with_capacity(t * half));
    for p in 0..t {
        for i in 0..half {
            let f = 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32);
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    (cos, sin)
}

/// `x·cos + rotate_half(x)·sin` for `x: [B, T, H, hd]`, angles from [`rope_angles`] for `T`.
pub fn rope(x: &Tensor, cos: &[f32], sin: &[f32]) -> Result<Tensor> {
    let (_, t, heads, hd) = x.dims4()?;
    if cos.len() != t * hd / 2 || sin.len() != cos.len() || hd % 2 != 0 {
        candle_core::bail!("rope: tables of {} for {t} positions of {hd}", cos.len());
    }
    x.contiguous()?.apply_op1(Rope {
        cos: cos.to_vec(),
        sin: sin.to_vec(),
        t,
        heads,
        hd,
    })
}

/// `1 / (1 + e^{−a})` on lepton-nn's branch-free `exp` (≤ 2 ulp), so that the loops below
/// vectorise: libm's scalar `expf` (SwiGLU's sigmoid, three times per MLP element and step) was
/// most of the step's 2.6 % in `expf`.
#[inline(always)]
fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + lepton_nn::kernels::math::exp(-a))
}

#[inline(always)]
fn swiglu_chunk(y: &mut [f32], a: &[f32], b: &[f32]) {
    for ((y, a), b) in y.iter_mut().zip(a).zip(b) {
        *y = a * sigmoid(*a) * b;
    }
}

#[inline(always)]
fn swiglu_grad_chunk(da: &mut [f32], db: &mut [f32], a: &[f32], b: &[f32], dy: &[f32]) {
    let n = a.len();
    let (da, db, b, dy) = (&mut da[..n], &mut db[..n], &b[..n], &dy[..n]);
    for i in 0..n {
        let s = sigmoid(a[i]);
        da[i] = dy[i] * b[i] * s * (1.0 + a[i] * (1.0 - s));
        db[i] = dy[i] * a[i] * s;
    }
}

/// [`swiglu_chunk`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA. The body is safe code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn swiglu_chunk_avx2(y: &mut [f32], a: &[f32], b: &[f32]) {
    swiglu_chunk(y, a, b)
}

/// [`swiglu_grad_chunk`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA. The body is safe code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn swiglu_grad_chunk_avx2(da: &mut [f32], db: &mut [f32], a: &[f32], b: &[f32], dy: &[f32]) {
    swiglu_grad_chunk(da, db, a, b, dy)
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

struct SwiGlu;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "lepton-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (values(s1, l1, "swiglu")?, values(s2, l2, "swiglu")?);
        if l1.shape() != l2.shape() {
            candle_core::bail!("swiglu: shapes {:?} and {:?}", l1.dims(), l2.dims());
        }
        let y = swiglu_rows(a, b);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (da, db) = with_values(a, "swiglu", |av| {
            with_values(b, "swiglu", |bv| {
                with_values(dy, "swiglu", |dy| Ok(swiglu_grad_rows(av, bv, dy)))
            })
        })?;
        Ok((
            Some(Tensor::from_vec(da, a.shape(), a.device())?),
            Some(Tensor::from_vec(db, b.shape(), b.device())?),
        ))
    }
}

/// `silu(a) ⊙ b` on plain values.
pub(crate) fn swiglu_rows(a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut y = vec![0f32; a.len()];
    y.par_chunks_mut(16_384)
        .zip(a.par_chunks(16_384).zip(b.par_chunks(16_384)))
        .for_each(|(y, (a, b))| {
            #[cfg(target_arch = "x86_64")]
            if avx2() {
                // SAFETY: the CPU has AVX2 and FMA (checked).
                return unsafe { swiglu_chunk_avx2(y, a, b) };
            }
            swiglu_chunk(y, a, b)
        });
    y
}

/// `(da, db)` of [`swiglu_rows`] for the output gradient `dy`.
pub(crate) fn swiglu_grad_rows(av: &[f32], bv: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut da, mut db) = (vec![0f32; av.len()], vec![0f32; av.len()]);
    da.par_chunks_mut(16_384)
        .zip(db.par_chunks_mut(16_384))
        .zip(av.par_chunks(16_384).zip(bv.par_chunks(16_384)))
        .zip(dy.par_chunks(16_384))
        .for_each(|(((da, db), (a, b)), dy)| {
            #[cfg(target_arch = "x86_64")]
            if avx2() {
                // SAFETY: the CPU has AVX2 and FMA (checked).
                return unsafe { swiglu_grad_chunk_avx2(da, db, a, b, dy) };
            }
            swiglu_grad_chunk(da, db, a, b, dy)
        });
    (da, db)
}

/// `silu(a) ⊙ b` (same shapes).
pub fn swiglu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, SwiGlu)
}

#[cfg(test)]
mod tests {
    /// The plain candle compositions the fused ops are tested against (HF's formulas).
    mod composition {
        use candle_core::{Device, Tensor, D};

        /// `x / √(mean(x²) + ε) · w` over the last dimension.
        pub(super) fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
            let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
            let inv = (ms + eps)?.sqrt()?.recip()?;
            x.broadcast_mul(&inv)?.broadcast_mul(w)
        }

        /// HF's RoPE tables for positions `0..t`: `cos, sin` of shape `[1, T, 1, hd]` (each frequency
        /// twice, first half then second half, as `torch.cat((freqs, freqs), -1)`).
        pub(super) fn rope_tables(
            t: usize,
            head_dim: usize,
            theta: f64,
        ) -> candle_core::Result<(Tensor, Tensor)> {
            let half = head_dim / 2;
            let inv: Vec<f32> = (0..half)
                .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
                .collect();
            let (mut cos, mut sin) = (
                Vec::with_capacity(t * head_dim),
                Vec::with_capacity(t * head_dim),
            );
            for p in 0..t {
                for _ in 0..2 {
                    for f in &inv {
                        let a = p as f32 * f;
                        cos.push(a.cos());
                        sin.push(a.sin());
                    }
                }
            }
            let dev = Device::Cpu;
            Ok((
                Tensor::from_vec(cos, (1, t, 1, head_dim), &dev)?,
                Tensor::from_vec(sin, (1, t, 1, head_dim), &dev)?,
            ))
        }

        /// `x·cos + rotate_half(x)·sin` for `x: [B, T, H, hd]`.
        pub(super) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
            let hd = x.dim(3)?;
            let (x1, x2) = (x.narrow(3, 0, hd / 2)?, x.narrow(3, hd / 2, hd / 2)?);
            let rot = Tensor::cat(&[&x2.neg()?, &x1], 3)?;
            x.broadcast_mul(cos)? + rot.broadcast_mul(sin)?
        }
    }

    use super::*;
    use candle_core::{Device, Var};

    fn grads_match(
        fused: impl Fn(&Tensor) -> Result<Tensor>,
        reference: impl Fn(&Tensor) -> Result<Tensor>,
        shape: &[usize],
    ) -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let n: usize = shape.iter().product();
        let xv: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.731).sin() * 1.5).collect();
        let cv: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.377).cos()).collect();
        let c = Tensor::from_vec(cv, shape, &dev)?;
        let x = Var::from_vec(xv, shape, &dev)?;
        let (yf, yr) = (fused(x.as_tensor())?, reference(x.as_tensor())?);
        let d = (&yf - &yr)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-5, "forward differs by {d}");
        let gf = (yf * &c)?.sum_all()?.backward()?;
        let gr = (yr * &c)?.sum_all()?.backward()?;
        let (gf, gr) = (
            gf.get(x.as_tensor()).unwrap(),
            gr.get(x.as_tensor()).unwrap(),
        );
        let d = (gf - gr)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-4, "gradient differs by {d}");
        Ok(())
    }

    #[test]
    fn rms_norm_matches_the_composition_forward_and_backward() -> anyhow::Result<()> {
        let w = Tensor::from_vec(
            (0..24).map(|i| 0.5 + i as f32 / 24.0).collect::<Vec<f32>>(),
            24,
            &Device::Cpu,
        )?;
        grads_match(
            |x| rms_norm(x, &w, 1e-5),
            |x| composition::rms_norm(x, &w, 1e-5),
            &[3, 5, 24],
        )
    }

    #[test]
    fn rope_matches_the_composition_forward_and_backward() -> anyhow::Result<()> {
        let (t, hd) = (7, 8);
        let (cos, sin) = rope_angles(t, hd, 10_000.0);
        let (ct, st) = composition::rope_tables(t, hd, 10_000.0)?;
        grads_match(
            |x| rope(x, &cos, &sin),
            |x| composition::rope(x, &ct, &st),
            &[2, t, 3, hd],
        )
    }

    /// The vectorised SwiGLU and its gradient against f64 on more values than one parallel
    /// chunk (16,384), with a remainder, large magnitudes (where `e^{−a}` saturates) included.
    #[test]
    fn swiglu_rows_match_f64_over_chunks_and_extremes() {
        let n = 16_384 + 1_003;
        let a: Vec<f32> = (0..n)
            .map(|i| match i % 97 {
                0 => 100.0,
                1 => -100.0,
                _ => ((i as f32) * 0.37).sin() * 12.0,
            })
            .collect();
        let b: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.11).cos()).collect();
        let dy: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.23).sin()).collect();
        let y = super::swiglu_rows(&a, &b);
        let (da, db) = super::swiglu_grad_rows(&a, &b, &dy);
        for i in 0..n {
            let (a, b, dy) = (a[i] as f64, b[i] as f64, dy[i] as f64);
            let s = 1.0 / (1.0 + (-a).exp());
            let want = [a * s * b, dy * b * s * (1.0 + a * (1.0 - s)), dy * a * s];
            for (got, want) in [y[i], da[i], db[i]].into_iter().zip(want) {
                assert!(
                    (got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "element {i} (a = {a}): {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn swiglu_matches_the_composition_forward_and_backward() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let b = Var::from_vec(
            (0..40).map(|i| (i as f32 * 0.3).cos()).collect(),
            (5, 8),
            &dev,
        )?;
        grads_match(
            |a| swiglu(a, b.as_tensor()),
            |a| a.silu()? * b.as_tensor(),
            &[5, 8],
        )?;
        // The second input's gradient: silu(a) ⊙ c.
        let a = Tensor::from_vec(
            (0..40)
                .map(|i| (i as f32 * 0.7).sin() * 2.0)
                .collect::<Vec<f32>>(),
            (5, 8),
            &dev,
        )?;
        let g = swiglu(&a, b.as_tensor())?.sum_all()?.backward()?;
        let d = (g.get(b.as_tensor()).unwrap() - a.silu()?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(d < 1e-6, "{d}");
        Ok(())
    }
}
