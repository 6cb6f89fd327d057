//! Masked next-token cross-entropy as one op over the logits.
//!
//! # Maths and shapes
//! `logits: [N, V]`, targets `t: [N]`, weights `w: [N]` (0 for a position without loss, `1/count`
//! otherwise): `loss = Σ_i w_i · (logsumexp(logits_i) − logits_i[t_i])`, and
//! `∂loss/∂logits_i = w_i · (softmax(logits_i) − onehot(t_i))`. One pass per row forward and one
//! backward (the softmax recomputed from the row), instead of candle's log-softmax composition
//! that keeps four `[N, V]` temporaries alive and walks them again in the backward.
//!
//! [`head_cross_entropy`] goes one step further for training: the LM head (`[V, D]`, SmolLM2's
//! 49,152 × 576) and the loss as one op on the hidden states `h: [N, D]`, which makes the logits
//! a few rows at a time and turns each chunk into its gradient and `∂loss/∂h` right away, so the
//! `[N, V]` logits, their gradient and the quantized copy of it never exist in full.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::weight::FrozenWeight;

struct MaskedCe {
    targets: Vec<u32>,
    weights: Vec<f32>,
}

fn rows<'a>(s: &'a CpuStorage, l: &Layout) -> Result<(&'a [f32], usize, usize)> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("masked cross-entropy: logits must be f32");
    };
    let (Some((a, b)), &[n, vocab]) = (l.contiguous_offsets(), l.dims()) else {
        candle_core::bail!("masked cross-entropy: logits must be a contiguous [N, V] matrix");
    };
    Ok((&v[a..b], n, vocab))
}

/// `log Σ_j e^{row_j}`: the maximum and the sum of `e^{row_j − max}` in eight lanes each (the
/// exponentials vectorised with lepton-nn's `math::exp`, ≤ 2 ulp; libm's scalar `expf` was
/// 2.6 % of a training step), then `max + ln(sum)`.
fn logsumexp(row: &[f32]) -> f32 {
    use lepton_nn::kernels::math::{exp, map_inplace};
    let max = lanes(f32::NEG_INFINITY, row, f32::max);
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        s.clear();
        s.extend_from_slice(row);
        map_inplace(&mut s, |v| exp(v - max));
        max + lanes(0.0, &s, |a, b| a + b).ln()
    })
}

/// `f` folded over `xs` in eight lanes (lane `j mod 8`), then the lanes folded in order: a
/// loop LLVM vectorises.
#[inline(always)]
fn lanes(init: f32, xs: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    const L: usize = 8;
    let mut acc = [init; L];
    let chunks = xs.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = f(*a, v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(rest) {
        *a = f(*a, v);
    }
    acc.into_iter().fold(init, f)
}

/// `dst[j] = w · e^{src_j − lse}` (the loss gradient before the target's `−w`), vectorised.
fn scaled_softmax(dst: &mut [f32], src: Option<&[f32]>, w: f32, lse: f32) {
    use lepton_nn::kernels::math::{exp, map_inplace};
    if let Some(src) = src {
        dst.copy_from_slice(src);
    }
    map_inplace(dst, |v| w * exp(v - lse));
}

thread_local! {
    /// One row of exponentials per thread (a vocabulary row is 192 KB: no allocation per row).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl CustomOp1 for MaskedCe {
    fn name(&self) -> &'static str {
        "lepton-masked-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, n, vocab) = rows(s, l)?;
        if n != self.targets.len() {
            candle_core::bail!(
                "masked cross-entropy: {n} rows for {} targets",
                self.targets.len()
            );
        }
        let out: Vec<f32> = x
            .par_chunks(vocab)
            .zip(self.targets.par_iter().zip(&self.weights))
            .map(|(row, (&t, &w))| {
                if w == 0.0 {
                    0.0
                } else {
                    w * (logsumexp(row) - row[t as usize])
                }
            })
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.to_vec1::<f32>()?;
        let x = x.contiguous()?;
        let (n, vocab) = x.dims2()?;
        let mut g = vec![0f32; n * vocab];
        {
            let (s, l) = x.storage_and_layout();
            let candle_core::Storage::Cpu(cpu) = &*s else {
                candle_core::bail!("masked cross-entropy: logits must be on the CPU");
            };
            let (x, _, _) = rows(cpu, l)?;
            g.par_chunks_mut(vocab)
                .zip(x.par_chunks(vocab))
                .enumerate()
                .for_each(|(i, (gr, row))| {
                    let w = self.weights[i] * dy[i];
                    if w == 0.0 {
                        return;
                    }
                    let lse = logsumexp(row);
                    scaled_softmax(gr, Some(row), w, lse);
                    gr[self.targets[i] as usize] -= w;
                });
        }
        Ok(Some(Tensor::from_vec(g, (n, vocab), x.device())?))
    }
}

/// The mean next-token loss over the positions where `mask` is true (a scalar), with its
/// backward. `targets` must be `< V`; with no position in the mask the loss is 0.
pub fn masked_cross_entropy(logits: &Tensor, targets: &[u32], mask: &[bool]) -> Result<Tensor> {
    let vocab = logits.dim(1)?;
    if let Some(t) = targets.iter().find(|&&t| t as usize >= vocab) {
        candle_core::bail!("masked cross-entropy: target {t} is outside the vocabulary of {vocab}");
    }
    let weights = loss_weights(mask);
    logits
        .contiguous()?
        .apply_op1(MaskedCe {
            targets: targets.to_vec(),
            weights,
        })?
        .sum_all()
}

/// Each position's weight in the mean: `1/count` where `mask` is true, 0 elsewhere.
fn loss_weights(mask: &[bool]) -> Vec<f32> {
    let count = mask.iter().filter(|m| **m).count().max(1) as f32;
    mask.iter()
        .map(|&m| if m { 1.0 / count } else { 0.0 })
        .collect()
}

/// Rows of logits [`head_cross_entropy`] holds at a time (64 × 49,152 f32 = 12.6 MB for
/// SmolLM2's vocabulary, instead of the whole `[N, V]` matrix and its gradient): 64 positions
/// with loss, gathered.
const HEAD_ROWS: usize = 64;

/// The LM head and the masked cross-entropy as one op over the final hidden states.
struct HeadCe {
    head: FrozenWeight,
    targets: Vec<u32>,
    weights: Vec<f32>,
    grad: bool,
    /// `∂loss_i/∂h_i` for `dy_i = 1`, `[N, D]`, filled by the forward when `grad`.
    dh: Mutex<Vec<f32>>,
}

impl CustomOp1 for HeadCe {
    fn name(&self) -> &'static str {
        "lepton-head-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, n, d) = rows(s, l)?;
        let (vocab, inputs) = self.head.dims();
        if n != self.targets.len() || d != inputs {
            candle_core::bail!(
                "head cross-entropy: hidden states [{n}, {d}] for {} targets and a head of \
                 {inputs} inputs",
                self.targets.len()
            );
        }
        let mut losses = vec![0f32; n];
        let mut dh = if self.grad {
            vec![0f32; n * d]
        } else {
            Vec::new()
        };
        // Only the positions whose target counts get logits (chat prompts, padding: none),
        // `HEAD_ROWS` of them at a time, gathered; each row's numbers do not depend on which
        // rows share its chunk (the head's matmuls are row-independent).
        let counted: Vec<usize> = (0..n).filter(|&i| self.weights[i] != 0.0).collect();
        let mut xs = Vec::with_capacity(HEAD_ROWS.min(counted.len()) * d);
        for ids in counted.chunks(HEAD_ROWS) {
            xs.clear();
            for &i in ids {
                xs.extend_from_slice(&x[i * d..(i + 1) * d]);
            }
            let mut logits = self.head.forward_rows(&xs)?;
            let mut chunk_losses = vec![0f32; ids.len()];
            logits
                .par_chunks_mut(vocab)
                .zip(chunk_losses.par_iter_mut())
                .zip(ids.par_iter())
                .for_each(|((row, loss), &i)| {
                    let (w, t) = (self.weights[i], self.targets[i] as usize);
                    let lse = logsumexp(row);
                    *loss = w * (lse - row[t]);
                    if self.grad {
                        // The row becomes its gradient w·(softmax − onehot), as MaskedCe's.
                        scaled_softmax(row, None, w, lse);
                        row[t] -= w;
                    }
                });
            for (&i, l) in ids.iter().zip(chunk_losses) {
                losses[i] = l;
            }
            if self.grad {
                let g = self.head.input_grad_rows(&logits)?;
                for (&i, gr) in ids.iter().zip(g.chunks_exact(d)) {
                    dh[i * d..(i + 1) * d].copy_from_slice(gr);
                }
            }
        }
        *self.dh.lock().unwrap_or_else(|e| e.into_inner()) = dh;
        Ok((CpuStorage::F32(losses), Shape::from(n)))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        if !self.grad {
            candle_core::bail!("head cross-entropy: built without its gradient (grad = false)");
        }
        let dy = dy.to_vec1::<f32>()?;
        let d = x.dim(1)?;
        let dh = self.dh.lock().unwrap_or_else(|e| e.into_inner());
        let mut dx = dh.clone();
        dx.par_chunks_mut(d).zip(&dy).for_each(|(r, &s)| {
            if s != 1.0 {
                r.iter_mut().for_each(|v| *v *= s);
            }
        });
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// `masked_cross_entropy(hidden·headᵀ, targets, mask)` without the `[N, V]` logits: the head's
/// logits are made `HEAD_ROWS` rows at a time and, with `grad`, turned into their gradient and
/// projected back to `∂loss/∂hidden` at once (the backward only scales those rows by the
/// incoming gradient). Same numbers as the composition: each row goes through the same head
/// matmul and the same loss/gradient formulas. `hidden: [N, D]`, `head: [V, D]`.
pub fn head_cross_entropy(
    hidden: &Tensor,
    head: &FrozenWeight,
    targets: &[u32],
    mask: &[bool],
    grad: bool,
) -> Result<Tensor> {
    let vocab = head.dims().0;
    if let Some(t) = targets.iter().find(|&&t| t as usize >= vocab) {
        candle_core::bail!("head cross-entropy: target {t} is outside the vocabulary of {vocab}");
    }
    if mask.len() != targets.len() {
        candle_core::bail!(
            "head cross-entropy: {} mask values for {} targets",
            mask.len(),
            targets.len()
        );
    }
    hidden
        .contiguous()?
        .apply_op1(HeadCe {
            head: head.clone(),
            targets: targets.to_vec(),
            weights: loss_weights(mask),
            grad,
            dh: Mutex::new(Vec::new()),
        })?
        .sum_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    #[test]
    fn equals_log_softmax_composition_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (5, 11), &dev)?))?;
        let targets = [3u32, 0, 10, 7, 7];
        let mask = [true, false, true, true, false];
        let loss = masked_cross_entropy(x.as_tensor(), &targets, &mask)?;
        let g = loss.backward()?;
        let got = g.get(x.as_tensor()).expect("gradient").clone();

        let x2 = Var::from_tensor(x.as_tensor())?;
        let ls = candle_nn::ops::log_softmax(x2.as_tensor(), D::Minus1)?;
        let idx = Tensor::new(&targets, &dev)?.unsqueeze(1)?;
        let picked = ls.gather(&idx, 1)?.squeeze(1)?;
        let m = Tensor::new(&[1f32, 0., 1., 1., 0.], &dev)?;
        let want = (picked * m)?.sum_all()?.neg()?.affine(1.0 / 3.0, 0.0)?;
        let wg = want.backward()?;
        let wgrad = wg.get(x2.as_tensor()).expect("gradient");
        let dl = (loss.to_scalar::<f32>()? - want.to_scalar::<f32>()?).abs();
        assert!(dl < 1e-5, "loss differs by {dl}");
        let dg = (got - wgrad)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(dg < 1e-6, "gradient differs by {dg}");
        Ok(())
    }

    /// The fused head + loss against `masked_cross_entropy(frozen head(h))`, loss and `∂/∂h`,
    /// over more rows than one chunk (a chunk without loss positions included), for an f32
    /// and a quantized head; the quantized one runs the same row kernels, so it must match
    /// bit for bit.
    #[test]
    fn head_cross_entropy_equals_the_head_then_the_loss() -> anyhow::Result<()> {
        use crate::qfrozen::{quantize_q8_0, QuantWeight};
        use std::sync::Arc;
        let dev = Device::Cpu;
        let (n, d, vocab) = (HEAD_ROWS * 2 + 5, 64, 96);
        let w = Tensor::randn(0f32, 0.3, (vocab, d), &dev)?;
        let wv = w.flatten_all()?.to_vec1::<f32>()?;
        let q =
            lepton_quant::QMatrix::new(lepton_quant::QType::Q8_0, vocab, d, quantize_q8_0(&wv))?;
        let heads = [
            FrozenWeight::F32(w),
            FrozenWeight::Quantized(Arc::new(QuantWeight::new(q, None, "test")?)),
        ];
        let targets: Vec<u32> = (0..n).map(|i| (i * 7 % vocab) as u32).collect();
        // The second chunk has no loss position; the last rows some.
        let mask: Vec<bool> = (0..n)
            .map(|i| !(HEAD_ROWS..2 * HEAD_ROWS).contains(&i) && i % 5 != 3)
            .collect();
        for (which, head) in heads.iter().enumerate() {
            let h = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, d), &dev)?)?;
            let fused = head_cross_entropy(h.as_tensor(), head, &targets, &mask, true)?;
            let g = fused.backward()?;
            let got = g.get(h.as_tensor()).expect("gradient").clone();
            let h2 = Var::from_tensor(h.as_tensor())?;
            let want = masked_cross_entropy(&head.linear(h2.as_tensor())?, &targets, &mask)?;
            let wg = want.backward()?;
            let wgrad = wg.get(h2.as_tensor()).expect("gradient");
            let (lf, lw) = (fused.to_scalar::<f32>()?, want.to_scalar::<f32>()?);
            let dg = (&got - wgrad)?.abs()?.max_all()?.to_scalar::<f32>()?;
            let scale = wgrad.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(
                scale > 1e-4,
                "head {which}: a vanishing gradient proves nothing"
            );
            if which == 1 {
                assert_eq!(lf, lw, "quantized head: loss");
                assert_eq!(dg, 0.0, "quantized head: gradient");
            } else {
                assert!((lf - lw).abs() < 1e-5, "f32 head: loss {lf} vs {lw}");
                assert!(dg < 1e-5 * scale, "f32 head: gradient differs by {dg}");
            }
            // The rows without loss get no gradient.
            let rows = got.narrow(0, HEAD_ROWS, HEAD_ROWS)?.abs()?.max_all()?;
            assert_eq!(rows.to_scalar::<f32>()?, 0.0);
            // Without `grad` the loss is the same and there is no backward.
            let eval = head_cross_entropy(h.as_tensor(), head, &targets, &mask, false)?;
            assert_eq!(eval.to_scalar::<f32>()?, lf);
        }
        Ok(())
    }

    /// The vectorised `logsumexp` and softmax gradient against f64 on a vocabulary-sized row
    /// (not a multiple of the eight lanes), shifted far from 0 both ways.
    #[test]
    fn logsumexp_and_softmax_match_f64() {
        for shift in [0f32, 60.0, -60.0] {
            let row: Vec<f32> = (0..49_157)
                .map(|i| ((i as f32) * 0.013).sin() * 9.0 + shift)
                .collect();
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let want = max
                + row
                    .iter()
                    .map(|&v| (v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            let lse = logsumexp(&row);
            assert!(
                (lse as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "shift {shift}: {lse} vs {want}"
            );
            let mut g = vec![0f32; row.len()];
            scaled_softmax(&mut g, Some(&row), 0.5, lse);
            let sum: f64 = g.iter().map(|&v| v as f64).sum();
            assert!(
                (sum - 0.5).abs() < 1e-5,
                "shift {shift}: softmax sums to {sum}"
            );
            for i in [0, 7, 100, 49_156] {
                // The exponential against f64 at our `lse` (checked above): ≤ 2 ulp of exp plus
                // the f32 rounding of `row_i − lse`.
                let z = row[i] as f64 - lse as f64;
                let w = 0.5 * z.exp();
                assert!(
                    (g[i] as f64 - w).abs() <= 1e-6 * w * (1.0 + z.abs()) + 1e-12,
                    "{i}: {} vs {w}",
                    g[i]
                );
            }
        }
    }

    /// Finite differences of the fused op's loss (f32 head) in a few hidden values.
    #[test]
    fn head_cross_entropy_gradient_matches_finite_differences() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let (n, d, vocab) = (6, 8, 11);
        let w = FrozenWeight::F32(
            Tensor::randn(0f64, 0.5, (vocab, d), &dev)?.to_dtype(candle_core::DType::F32)?,
        );
        let targets = [1u32, 4, 10, 0, 3, 3];
        let mask = [true, true, false, true, true, true];
        let hv: Vec<f32> = (0..n * d).map(|i| ((i as f32) * 0.61).sin()).collect();
        let f = |hv: &[f32]| -> anyhow::Result<f64> {
            let h = Tensor::from_vec(hv.to_vec(), (n, d), &dev)?;
            Ok(head_cross_entropy(&h, &w, &targets, &mask, false)?.to_scalar::<f32>()? as f64)
        };
        let h = Var::from_vec(hv.clone(), (n, d), &dev)?;
        let g = head_cross_entropy(h.as_tensor(), &w, &targets, &mask, true)?.backward()?;
        let g = g
            .get(h.as_tensor())
            .expect("gradient")
            .flatten_all()?
            .to_vec1::<f32>()?;
        for idx in [0, 9, 17, 2 * d + 3, n * d - 1] {
            let eps = 1e-2f32;
            let (mut p, mut m) = (hv.clone(), hv.clone());
            p[idx] += eps;
            m[idx] -= eps;
            let numeric = (f(&p)? - f(&m)?) / (2.0 * eps as f64);
            let analytic = g[idx] as f64;
            assert!(
                (numeric - analytic).abs() < 2e-3 + 1e-2 * analytic.abs(),
                "element {idx}: numeric {numeric} analytic {analytic}"
            );
        }
        // Row 2 has no loss: its gradient is exactly zero.
        assert!(g[2 * d..3 * d].iter().all(|&v| v == 0.0));
        Ok(())
    }
}
