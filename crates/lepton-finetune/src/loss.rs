//! Masked next-token cross-entropy as one op over the logits.
//!
//! # Maths and shapes
//! `logits: [N, V]`, targets `t: [N]`, weights `w: [N]` (0 for a position without loss, `1/count`
//! otherwise): `loss = Σ_i w_i · (logsumexp(logits_i) − logits_i[t_i])`, and
//! `∂loss/∂logits_i = w_i · (softmax(logits_i) − onehot(t_i))`. One pass per row forward and one
//! backward (the softmax recomputed from the row), instead of candle's log-softmax composition
//! that keeps four `[N, V]` temporaries alive and walks them again in the backward.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

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

fn logsumexp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln()
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
                    for (g, v) in gr.iter_mut().zip(row) {
                        *g = w * (v - lse).exp();
                    }
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
    let count = mask.iter().filter(|m| **m).count().max(1) as f32;
    let weights = mask
        .iter()
        .map(|&m| if m { 1.0 / count } else { 0.0 })
        .collect();
    logits
        .contiguous()?
        .apply_op1(MaskedCe {
            targets: targets.to_vec(),
            weights,
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
}
