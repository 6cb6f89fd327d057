//! Causal grouped-query attention on plain rows, for the hand-written training step
//! ([`crate::step`]): the forward keeps the probabilities, the backward uses them (no
//! recomputation) and sums each KV head's gradient over the query heads that share it, so
//! `k` and `v` are never repeated to `H` heads (the candle path copied them to `[B, T, H, hd]`
//! and summed the copies' gradients back).
//!
//! # Maths (per batch row and query head `h`, KV head `g = h / (H / KV)`, as HF's `repeat_kv`)
//! ```text
//! P = softmax(q_h k_gᵀ · scale + causal)      o_h = P v_g
//! dv_g += Pᵀ do_h      dP = do_h v_gᵀ      dS = P ⊙ (dP − rowsum(do_h ⊙ o_h)) · scale
//! dq_h = dS k_g        dk_g += dSᵀ q_h
//! ```
//! # Shapes
//! `q, o: [B, T, H, hd]`, `k, v: [B, T, KV, hd]` row-major; `P: [B, H, T, T]`.

use gemm::Parallelism;
use lepton_nn::kernels::{math, matmul, Mat};
use rayon::prelude::*;

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub b: usize,
    pub t: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// The scores' factor, usually `1/√hd`.
    pub scale: f32,
}

impl Dims {
    fn rep(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Head `h` of batch row `bi` in a `[B, T, heads, hd]` buffer `x`, as a `[T, hd]` matrix
    /// (or its transpose).
    fn head<'a>(&self, x: &'a [f32], heads: usize, bi: usize, h: usize, t: bool) -> Mat<'a, f32> {
        let data = &x[(bi * self.t * heads + h) * self.head_dim..];
        let row = heads * self.head_dim;
        if t {
            Mat {
                data,
                rs: 1,
                cs: row,
            }
        } else {
            Mat {
                data,
                rs: row,
                cs: 1,
            }
        }
    }

    /// `[B, n, T, hd]` (one head's rows together) back to `[B, T, n, hd]`.
    fn interleave(&self, src: &[f32], n: usize) -> Vec<f32> {
        let (t, d) = (self.t, self.head_dim);
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(t * n * d)
            .zip(src.par_chunks(t * n * d))
            .for_each(|(o, s)| {
                for h in 0..n {
                    for i in 0..t {
                        o[(i * n + h) * d..(i * n + h + 1) * d]
                            .copy_from_slice(&s[(h * t + i) * d..(h * t + i + 1) * d]);
                    }
                }
            });
        out
    }
}

const NONE: Parallelism = Parallelism::None;

/// `(o, P)` of causal attention (see the module docs).
pub(crate) fn forward(q: &[f32], k: &[f32], v: &[f32], dims: Dims) -> (Vec<f32>, Vec<f32>) {
    let Dims {
        t,
        heads,
        kv_heads,
        head_dim: d,
        scale,
        ..
    } = dims;
    let mut p = vec![0f32; dims.b * heads * t * t];
    let mut o = vec![0f32; q.len()];
    p.par_chunks_mut(t * t)
        .zip(o.par_chunks_mut(t * d))
        .enumerate()
        .for_each(|(task, (p, o))| {
            let (bi, h) = (task / heads, task % heads);
            let g = h / dims.rep();
            let qm = dims.head(q, heads, bi, h, false);
            matmul(
                t,
                t,
                d,
                p,
                qm,
                dims.head(k, kv_heads, bi, g, true),
                false,
                NONE,
            );
            for (i, row) in p.chunks_mut(t).enumerate() {
                let (live, dead) = row.split_at_mut(i + 1);
                dead.fill(0.0);
                // As lepton-nn's attention kernel (the same exp, the same order).
                math::map_inplace(live, move |s| s * scale);
                let max = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                math::map_inplace(live, move |s| math::exp(s - max));
                let inv = 1.0 / live.iter().sum::<f32>();
                math::map_inplace(live, move |p| p * inv);
            }
            let vm = dims.head(v, kv_heads, bi, g, false);
            matmul(t, d, t, o, Mat::rows(p, t), vm, false, NONE);
        });
    (dims.interleave(&o, heads), p)
}

/// `(dq, dk, dv)` of [`forward`] for the output gradient `dout` (see the module docs).
pub(crate) fn backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &[f32],
    o: &[f32],
    dout: &[f32],
    dims: Dims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Dims {
        t,
        heads,
        kv_heads,
        head_dim: d,
        scale,
        ..
    } = dims;
    let rep = dims.rep();
    let mut dq = vec![0f32; q.len()];
    let mut dk = vec![0f32; k.len()];
    let mut dv = vec![0f32; v.len()];
    // Task (bi, g) owns query heads g·rep.. of batch row bi (contiguous in [B, H, T, hd]) and KV
    // head g (in [B, KV, T, hd]).
    dq.par_chunks_mut(rep * t * d)
        .zip(dk.par_chunks_mut(t * d).zip(dv.par_chunks_mut(t * d)))
        .enumerate()
        .for_each_init(
            || vec![0f32; t * t],
            |ds, (task, (dq, (dk, dv)))| {
                let (bi, g) = (task / kv_heads, task % kv_heads);
                let (km, vt) = (
                    dims.head(k, kv_heads, bi, g, false),
                    dims.head(v, kv_heads, bi, g, true),
                );
                for j in 0..rep {
                    let h = g * rep + j;
                    let pm = &p[(bi * heads + h) * t * t..][..t * t];
                    let dom = dims.head(dout, heads, bi, h, false);
                    let qm = dims.head(q, heads, bi, h, false);
                    // dv_g += Pᵀ·do_h
                    matmul(t, d, t, dv, Mat::rows_t(pm, t), dom, j > 0, NONE);
                    // dS = P ⊙ (do_h·v_gᵀ − D)·scale
                    matmul(t, t, d, ds, dom, vt, false, NONE);
                    for (i, (dsr, pr)) in ds.chunks_mut(t).zip(pm.chunks(t)).enumerate() {
                        let at = ((bi * t + i) * heads + h) * d;
                        let dot: f32 = (0..d).map(|x| o[at + x] * dout[at + x]).sum();
                        for (s, p) in dsr.iter_mut().zip(pr) {
                            *s = p * (*s - dot) * scale;
                        }
                    }
                    // dq_h = dS·k_g, dk_g += dSᵀ·q_h
                    let dqh = &mut dq[j * t * d..(j + 1) * t * d];
                    matmul(t, d, t, dqh, Mat::rows(ds, t), km, false, NONE);
                    matmul(t, d, t, dk, Mat::rows_t(ds, t), qm, j > 0, NONE);
                }
            },
        );
    (
        dims.interleave(&dq, heads),
        dims.interleave(&dk, kv_heads),
        dims.interleave(&dv, kv_heads),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, Var};
    use lepton_nn::kernels::{attention, AttentionMask};

    /// Against lepton-nn's attention (on KV heads repeated as the candle path did), forward and
    /// backward, with 2 query heads per KV head.
    #[test]
    fn grouped_attention_equals_repeated_kv_attention_forward_and_backward() -> anyhow::Result<()> {
        let dims = Dims {
            b: 2,
            t: 7,
            heads: 4,
            kv_heads: 2,
            head_dim: 8,
            scale: 1.0 / 8f32.sqrt(),
        };
        let (b, t, h, kv, d) = (2, 7, 4, 2, 8);
        let val =
            |n: usize, f: f32| -> Vec<f32> { (0..n).map(|i| ((i as f32) * f).sin()).collect() };
        let (qv, kv_, vv, cv) = (
            val(b * t * h * d, 0.37),
            val(b * t * kv * d, 0.53),
            val(b * t * kv * d, 0.71),
            val(b * t * h * d, 0.29),
        );
        let scale = 1.0 / (d as f32).sqrt();
        let (o, p) = forward(&qv, &kv_, &vv, dims);
        let (dq, dk, dv) = backward(&qv, &kv_, &vv, &p, &o, &cv, dims);

        let dev = Device::Cpu;
        let q = Var::from_vec(qv, (b, t, h, d), &dev)?;
        let k = Var::from_vec(kv_, (b, t, kv, d), &dev)?;
        let v = Var::from_vec(vv, (b, t, kv, d), &dev)?;
        let repeat = |z: &Tensor| -> candle_core::Result<Tensor> {
            z.unsqueeze(3)?
                .broadcast_as((b, t, kv, h / kv, d))?
                .contiguous()?
                .reshape((b, t, h, d))
        };
        let mask = AttentionMask {
            causal: true,
            keys: None,
        };
        let y = attention(
            q.as_tensor(),
            &repeat(k.as_tensor())?,
            &repeat(v.as_tensor())?,
            scale,
            &mask,
        )?;
        let c = Tensor::from_vec(cv, (b, t, h, d), &dev)?;
        let g = (&y * &c)?.sum_all()?.backward()?;
        let close = |got: &[f32], want: &Tensor, what: &str| -> anyhow::Result<()> {
            let want = want.flatten_all()?.to_vec1::<f32>()?;
            assert_eq!(got.len(), want.len(), "{what}");
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{what} differs by {worst}");
            assert!(want.iter().any(|v| v.abs() > 1e-3), "{what}: all zero");
            Ok(())
        };
        close(&o, &y, "o")?;
        // The forward is the kernel's, operation for operation: bit-identical.
        assert_eq!(
            o,
            y.flatten_all()?.to_vec1::<f32>()?,
            "o is not bit-identical"
        );
        close(&dq, g.get(q.as_tensor()).unwrap(), "dq")?;
        close(&dk, g.get(k.as_tensor()).unwrap(), "dk")?;
        close(&dv, g.get(v.as_tensor()).unwrap(), "dv")?;
        Ok(())
    }
}
