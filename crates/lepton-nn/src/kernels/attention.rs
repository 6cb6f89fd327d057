//! Scaled dot-product attention as one custom op: `softmax(q·kᵀ·scale + mask)·v` for every
//! (batch, head) pair in parallel, each with its scores in a per-task buffer that stays in cache.
//! q, k and v are read in place through their strides (`[B, T, H, hd]` views straight out of a
//! fused QKV projection: no permute copies), the causal and key-padding masks are applied while
//! the softmax runs (masked scores are never exponentiated) and the output is written as
//! `[B, T, H, hd]`, i.e. already `[B, T, H·hd]` for the output projection.
//!
//! The backward pass is fused the same way: per (batch, head) task it recomputes the
//! probabilities `p` in its cache-resident buffer and computes `dv = pᵀ·dy`, `dp = dy·vᵀ`,
//! `ds = p ⊙ (dp − rowsum(dy ⊙ y))` (FlashAttention's `D = rowsum(dy ⊙ y)` from the output instead
//! of `rowsum(dp ⊙ p)`), `dq = ds·k·scale`, `dk = dsᵀ·q·scale`, writing each gradient straight
//! into `[B, T, H, hd]`. [`attention_backward_reference`] is the same by plain candle ops.
//! f32 only; other dtypes take [`attention_reference`].

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::blas::{matmul, Mat};
use super::math;

/// Which keys each query may attend to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttentionMask {
    /// Query `i` sees keys `j ≤ i + (T_k − T_q)` (with a KV cache, the queries are the last
    /// `T_q` positions).
    pub causal: bool,
    /// `[B][T_k]`: `false` marks a padding key nobody attends to.
    pub keys: Option<Vec<Vec<bool>>>,
}

struct Attention {
    scale: f32,
    mask: AttentionMask,
}

/// The shape `[B, T, H, hd]` and element strides of one input.
struct View<'a> {
    data: &'a [f32],
    dims: [usize; 4],
    stride: [usize; 3],
}

impl<'a> View<'a> {
    fn new(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<Self> {
        let CpuStorage::F32(v) = s else {
            candle_core::bail!("attention kernel: {what} must be f32");
        };
        let (&[b, t, h, d], &[s0, s1, s2, 1]) = (l.dims(), l.stride()) else {
            candle_core::bail!(
                "attention kernel: {what} must be [B, T, H, hd] with a contiguous last dimension, got {:?} strides {:?}",
                l.dims(),
                l.stride()
            );
        };
        Ok(View {
            data: &v[l.start_offset()..],
            dims: [b, t, h, d],
            stride: [s0, s1, s2],
        })
    }

    /// Rows `t` of head `h` in batch `b`, as a `[T, hd]` matrix (or its transpose).
    fn head(&self, b: usize, h: usize, transposed: bool) -> Mat<'_, f32> {
        let data = &self.data[b * self.stride[0] + h * self.stride[2]..];
        if transposed {
            Mat {
                data,
                rs: 1,
                cs: self.stride[1],
            }
        } else {
            Mat {
                data,
                rs: self.stride[1],
                cs: 1,
            }
        }
    }
}

/// A pointer that parallel tasks write through at disjoint offsets.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: each task writes only the rows of its own (batch, head) pair.
unsafe impl Send for Out {}
// SAFETY: as for `Send`: shared use only ever writes disjoint rows.
unsafe impl Sync for Out {}

impl Out {
    /// The element at `offset` (a method, so closures capture the whole `Send` wrapper).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

impl Attention {
    /// One softmax row in place: `row[j] = exp(row[j]·scale + bias[j] − max)/sum` for `j < lim`,
    /// 0 beyond; an all-masked row becomes all zeros.
    fn softmax_row(&self, row: &mut [f32], bias: Option<&[f32]>, lim: usize) {
        let (live, dead) = row.split_at_mut(lim);
        dead.fill(0.0);
        let scale = self.scale;
        match bias {
            Some(bias) => math::zip_map_inplace(live, &bias[..lim], move |s, m| s * scale + m),
            None => math::map_inplace(live, move |s| s * scale),
        }
        let max = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            live.fill(0.0);
            return;
        }
        math::map_inplace(live, move |s| math::exp(s - max));
        let inv = 1.0 / live.iter().sum::<f32>();
        math::map_inplace(live, move |p| p * inv);
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "lepton-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            View::new(qs, ql, "q")?,
            View::new(ks, kl, "k")?,
            View::new(vs, vl, "v")?,
        );
        self.forward_views(&q, &k, &v)
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dq, dk, dv) = self.backward(q, k, v, y, &dy.contiguous()?)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

impl Attention {
    /// The forward over `[B, T, H, hd]` views; returns `[B, T_q, H, hd]`.
    fn forward_views(&self, q: &View, k: &View, v: &View) -> Result<(CpuStorage, Shape)> {
        let [b, tq, h, d] = q.dims;
        let tk = k.dims[1];
        if k.dims != [b, tk, h, d] || v.dims != k.dims {
            candle_core::bail!(
                "attention kernel: q {:?}, k {:?}, v {:?} do not fit",
                q.dims,
                k.dims,
                v.dims
            );
        }
        if self.mask.causal && tk < tq {
            candle_core::bail!("attention kernel: causal attention needs T_k ≥ T_q");
        }
        let bias = self.key_bias(b, tk)?;
        let mut out = vec![0f32; b * tq * h * d];
        let dst = Out(out.as_mut_ptr());
        (0..b * h).into_par_iter().for_each_init(
            || (vec![0f32; tq * tk], vec![0f32; tq * d]),
            |(scores, o), task| {
                let (bi, hi) = (task / h, task % h);
                let none = ::gemm::Parallelism::None;
                let (qm, km) = (q.head(bi, hi, false), k.head(bi, hi, true));
                matmul(tq, tk, d, scores, qm, km, false, none);
                for (i, row) in scores.chunks_mut(tk).enumerate() {
                    let lim = if self.mask.causal {
                        i + 1 + tk - tq
                    } else {
                        tk
                    };
                    self.softmax_row(row, bias.as_ref().map(|b| b[bi].as_slice()), lim);
                }
                matmul(
                    tq,
                    d,
                    tk,
                    o,
                    Mat::rows(scores, tk),
                    v.head(bi, hi, false),
                    false,
                    none,
                );
                for (i, row) in o.chunks(d).enumerate() {
                    // SAFETY: row (bi, i, hi) of the [B, Tq, H, d] output belongs to this task
                    // alone, and lies inside `out` (b·tq·h·d elements).
                    unsafe {
                        let at = dst.at(((bi * tq + i) * h + hi) * d);
                        std::ptr::copy_nonoverlapping(row.as_ptr(), at, d);
                    }
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((b, tq, h, d))))
    }

    /// The fused backward (see the module docs): `(dq, dk, dv)`, each `[B, T, H, hd]`.
    fn backward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let guards = [q, k, v, y, dy].map(|t| t.storage_and_layout());
        let storage = |i: usize| -> Result<&CpuStorage> {
            match &*guards[i].0 {
                candle_core::Storage::Cpu(s) => Ok(s),
                _ => candle_core::bail!("attention kernel: the backward runs on the CPU only"),
            }
        };
        let view = |i: usize, what: &str| View::new(storage(i)?, guards[i].1, what);
        let (q, k, v, y, dy) = (
            view(0, "q")?,
            view(1, "k")?,
            view(2, "v")?,
            view(3, "y")?,
            view(4, "dy")?,
        );
        let [b, tq, h, d] = q.dims;
        let tk = k.dims[1];
        let mut dq = vec![0f32; b * tq * h * d];
        let mut dk = vec![0f32; b * tk * h * d];
        let mut dv = vec![0f32; b * tk * h * d];
        let (sq, sk) = ([tq * h * d, h * d, 0], [tk * h * d, h * d, 0]);
        self.backward_views(
            [&q, &k, &v, &y, &dy],
            [
                (Out(dq.as_mut_ptr()), sq),
                (Out(dk.as_mut_ptr()), sk),
                (Out(dv.as_mut_ptr()), sk),
            ],
        )?;
        drop(guards);
        let dev = candle_core::Device::Cpu;
        Ok((
            Tensor::from_vec(dq, (b, tq, h, d), &dev)?,
            Tensor::from_vec(dk, (b, tk, h, d), &dev)?,
            Tensor::from_vec(dv, (b, tk, h, d), &dev)?,
        ))
    }

    /// The backward over `[q, k, v, y, dy]` views, writing `dq`, `dk`, `dv` through `outs`:
    /// element (b, t, h, x) of each at `b·s[0] + t·s[1] + s[2] + h·hd + x`. The caller makes
    /// the three regions disjoint and large enough.
    fn backward_views(&self, views: [&View; 5], outs: [(Out, [usize; 3]); 3]) -> Result<()> {
        let [q, k, v, y, dy] = views;
        let [b, tq, h, d] = q.dims;
        let tk = k.dims[1];
        let bias = self.key_bias(b, tk)?;
        let scale = self.scale;
        (0..b * h).into_par_iter().for_each_init(
            || {
                (
                    vec![0f32; tq * tk],
                    vec![0f32; tq * tk],
                    vec![0f32; tq.max(tk) * d],
                )
            },
            |(p, dp, g), task| {
                let (bi, hi) = (task / h, task % h);
                let none = ::gemm::Parallelism::None;
                let (qm, km) = (q.head(bi, hi, false), k.head(bi, hi, true));
                matmul(tq, tk, d, p, qm, km, false, none);
                for (i, row) in p.chunks_mut(tk).enumerate() {
                    let lim = if self.mask.causal {
                        i + 1 + tk - tq
                    } else {
                        tk
                    };
                    self.softmax_row(row, bias.as_ref().map(|b| b[bi].as_slice()), lim);
                }
                let dym = dy.head(bi, hi, false);
                // dp = dy·vᵀ, then ds = p ⊙ (dp − D)·scale in place, D_i = dy_i · y_i.
                matmul(tq, tk, d, dp, dym, v.head(bi, hi, true), false, none);
                for (i, (dp_row, p_row)) in dp.chunks_mut(tk).zip(p.chunks(tk)).enumerate() {
                    let at = bi * y.stride[0] + i * y.stride[1] + hi * y.stride[2];
                    let at_dy = bi * dy.stride[0] + i * dy.stride[1] + hi * dy.stride[2];
                    let dot: f32 = (0..d).map(|x| y.data[at + x] * dy.data[at_dy + x]).sum();
                    math::zip_map_inplace(dp_row, p_row, move |g, p| p * (g - dot) * scale);
                }
                let write = |(out, s): (Out, [usize; 3]), rows: usize, g: &[f32]| {
                    for (i, row) in g[..rows * d].chunks(d).enumerate() {
                        // SAFETY: row (bi, i, hi) of the gradient belongs to this task alone and
                        // lies inside its region (the caller's contract).
                        unsafe {
                            let at = out.at(bi * s[0] + i * s[1] + s[2] + hi * d);
                            std::ptr::copy_nonoverlapping(row.as_ptr(), at, d);
                        }
                    }
                };
                // dv = pᵀ·dy
                matmul(tk, d, tq, g, Mat::rows_t(p, tk), dym, false, none);
                write(outs[2], tk, g);
                // dq = ds·k
                matmul(
                    tq,
                    d,
                    tk,
                    g,
                    Mat::rows(dp, tk),
                    k.head(bi, hi, false),
                    false,
                    none,
                );
                write(outs[0], tq, g);
                // dk = dsᵀ·q
                matmul(tk, d, tq, g, Mat::rows_t(dp, tk), qm, false, none);
                write(outs[1], tk, g);
            },
        );
        Ok(())
    }

    /// The key-padding mask as an additive bias per batch (`0` or `−∞`), checked against `[b][tk]`.
    fn key_bias(&self, b: usize, tk: usize) -> Result<Option<Vec<Vec<f32>>>> {
        let Some(keys) = &self.mask.keys else {
            return Ok(None);
        };
        if keys.len() != b || keys.iter().any(|r| r.len() != tk) {
            candle_core::bail!("attention kernel: the key mask is not [{b}][{tk}]");
        }
        Ok(Some(
            keys.iter()
                .map(|r| {
                    r.iter()
                        .map(|&keep| if keep { 0.0 } else { f32::NEG_INFINITY })
                        .collect()
                })
                .collect(),
        ))
    }
}

/// The gradients `(dq, dk, dv)` of [`attention_reference`] by plain candle ops on the
/// recomputed probabilities: the reference for the fused backward.
pub fn attention_backward_reference(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    dy: &Tensor,
    scale: f32,
    mask: &AttentionMask,
) -> Result<(Tensor, Tensor, Tensor)> {
    let heads = |t: &Tensor| t.transpose(1, 2)?.contiguous();
    let (qh, kh, vh, dyh) = (heads(q)?, heads(k)?, heads(v)?, heads(dy)?);
    let p = probabilities(&qh, &kh, scale, mask)?;
    let dv = p.t()?.matmul(&dyh)?;
    let dp = dyh.matmul(&vh.t()?)?;
    let ds = (&p * dp.broadcast_sub(&(&dp * &p)?.sum_keepdim(D::Minus1)?)?)?;
    let dq = (ds.matmul(&kh)? * scale as f64)?;
    let dk = (ds.t()?.matmul(&qh)? * scale as f64)?;
    let back = |t: Tensor| t.transpose(1, 2);
    Ok((back(dq)?, back(dk)?, back(dv)?))
}

/// `softmax(q·kᵀ·scale)` over the allowed keys, `[B, H, T_q, T_k]`, from `[B, H, T, hd]` inputs;
/// rows with no allowed key are zero.
fn probabilities(qh: &Tensor, kh: &Tensor, scale: f32, mask: &AttentionMask) -> Result<Tensor> {
    let (b, _, tq, _) = qh.dims4()?;
    let tk = kh.dim(2)?;
    let allowed = mask_tensor(b, tq, tk, mask, qh.device())?.to_dtype(qh.dtype())?;
    let s = (qh.matmul(&kh.t()?)? * scale as f64)?;
    // Masked scores pushed far below every allowed one, then zeroed after the exponential.
    let s = s.broadcast_add(&((&allowed - 1.0)? * 1e30)?)?;
    let e = s
        .broadcast_sub(&s.max_keepdim(D::Minus1)?)?
        .exp()?
        .broadcast_mul(&allowed)?;
    let sum = e.sum_keepdim(D::Minus1)?.clamp(1e-30, f64::INFINITY)?;
    e.broadcast_div(&sum)
}

/// `[B, 1, T_q, T_k]` with 1 where query i may see key j.
fn mask_tensor(
    b: usize,
    tq: usize,
    tk: usize,
    mask: &AttentionMask,
    dev: &candle_core::Device,
) -> Result<Tensor> {
    let mut m = vec![1f32; b * tq * tk];
    for (bi, plane) in m.chunks_mut(tq * tk).enumerate() {
        for (i, row) in plane.chunks_mut(tk).enumerate() {
            for (j, cell) in row.iter_mut().enumerate() {
                let causal_ok = !mask.causal || j <= i + tk - tq;
                let key_ok = mask.keys.as_ref().is_none_or(|k| k[bi][j]);
                *cell = if causal_ok && key_ok { 1.0 } else { 0.0 };
            }
        }
    }
    Tensor::from_vec(m, (b, 1, tq, tk), dev)
}

/// Attention over `q: [B, T_q, H, hd]`, `k, v: [B, T_k, H, hd]` (any strides with a contiguous
/// last dimension, e.g. views of one `[B, T, 3, H, hd]` QKV tensor). Returns `[B, T_q, H, hd]`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    mask: &AttentionMask,
) -> Result<Tensor> {
    if q.dtype() != DType::F32 || !q.device().is_cpu() {
        return attention_reference(q, k, v, scale, mask);
    }
    let last = |t: &Tensor| -> Result<Tensor> {
        if t.stride().last() == Some(&1) {
            Ok(t.clone())
        } else {
            t.contiguous()
        }
    };
    last(q)?.apply_op3(
        &last(k)?,
        &last(v)?,
        Attention {
            scale,
            mask: mask.clone(),
        },
    )
}

/// [`attention`] on one fused projection `qkv: [B, T, 3, H, hd]` (q, k, v at index 0, 1, 2 of
/// the third dimension, nanoGPT's `c_attn` split): one op whose backward writes `dq`, `dk`, `dv`
/// straight into one `[B, T, 3, H, hd]` gradient, where three views of `qkv` would each pad
/// their gradient with zeros to the full size and sum them (two copies and two adds of the
/// whole tensor per layer). Returns `[B, T, H, hd]`.
pub fn attention_qkv(qkv: &Tensor, scale: f32, mask: &AttentionMask) -> Result<Tensor> {
    if qkv.dtype() != DType::F32 || !qkv.device().is_cpu() {
        let part = |i: usize| qkv.narrow(2, i, 1)?.squeeze(2);
        return attention_reference(&part(0)?, &part(1)?, &part(2)?, scale, mask);
    }
    qkv.contiguous()?.apply_op1(QkvAttention(Attention {
        scale,
        mask: mask.clone(),
    }))
}

/// [`Attention`] over one contiguous `[B, T, 3, H, hd]` input.
struct QkvAttention(Attention);

impl QkvAttention {
    /// The q, k, v views of a contiguous `[B, T, 3, H, hd]` slice.
    fn views<'a>(data: &'a [f32], dims: &[usize]) -> Result<[View<'a>; 3]> {
        let &[b, t, 3, h, d] = dims else {
            candle_core::bail!("attention kernel: qkv must be [B, T, 3, H, hd], got {dims:?}");
        };
        Ok([0, 1, 2].map(|i| View {
            data: &data[i * h * d..],
            dims: [b, t, h, d],
            stride: [t * 3 * h * d, 3 * h * d, d],
        }))
    }
}

impl candle_core::CustomOp1 for QkvAttention {
    fn name(&self) -> &'static str {
        "lepton-attention-qkv"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(v), Some((a, e))) = (s, l.contiguous_offsets()) else {
            candle_core::bail!("attention kernel: qkv must be contiguous f32");
        };
        let [q, k, v] = Self::views(&v[a..e], l.dims())?;
        self.0.forward_views(&q, &k, &v)
    }

    fn bwd(&self, qkv: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let (b, t, _, h, d) = qkv.dims5()?;
        let mut g = vec![0f32; qkv.elem_count()];
        {
            let guards = [qkv, y, &dy].map(|t| t.storage_and_layout());
            let data = |i: usize| -> Result<&[f32]> {
                match (&*guards[i].0, guards[i].1.contiguous_offsets()) {
                    (candle_core::Storage::Cpu(CpuStorage::F32(v)), Some((a, e))) => Ok(&v[a..e]),
                    _ => candle_core::bail!("attention kernel: the backward needs contiguous f32"),
                }
            };
            let [q, k, v] = Self::views(data(0)?, qkv.dims())?;
            let one = |x| View {
                data: x,
                dims: [b, t, h, d],
                stride: [t * h * d, h * d, d],
            };
            let (yv, dyv) = (one(data(1)?), one(data(2)?));
            let out = Out(g.as_mut_ptr());
            let s = |i: usize| (out, [t * 3 * h * d, 3 * h * d, i * h * d]);
            self.0
                .backward_views([&q, &k, &v, &yv, &dyv], [s(0), s(1), s(2)])?;
        }
        Ok(Some(Tensor::from_vec(g, qkv.shape(), qkv.device())?))
    }
}

/// [`attention`] by plain candle ops: the reference for the kernel.
pub fn attention_reference(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    mask: &AttentionMask,
) -> Result<Tensor> {
    let heads = |t: &Tensor| t.transpose(1, 2)?.contiguous();
    let p = probabilities(&heads(q)?, &heads(k)?, scale, mask)?;
    p.matmul(&heads(v)?)?.transpose(1, 2)?.contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{max_diff, weighted_grads};
    use candle_core::{Device, Var};

    /// Plain softmax attention with an additive −∞ mask, per (batch, head), on host vectors: an
    /// implementation independent of both the kernel and `probabilities`.
    fn naive(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32, mask: &AttentionMask) -> Vec<f32> {
        let (b, tq, h, d) = q.dims4().unwrap();
        let tk = k.dim(1).unwrap();
        let get = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (q, k, v) = (get(q), get(k), get(v));
        let mut out = vec![0f32; b * tq * h * d];
        for bi in 0..b {
            for hi in 0..h {
                for i in 0..tq {
                    let at = |t: usize, j: usize, n: usize| ((bi * n + t) * h + hi) * d + j;
                    let allowed = |j: usize| {
                        (!mask.causal || j <= i + tk - tq)
                            && mask.keys.as_ref().is_none_or(|m| m[bi][j])
                    };
                    let s: Vec<f32> = (0..tk)
                        .map(|j| {
                            (0..d)
                                .map(|x| q[at(i, x, tq)] * k[at(j, x, tk)])
                                .sum::<f32>()
                        })
                        .collect();
                    let max = (0..tk)
                        .filter(|&j| allowed(j))
                        .map(|j| s[j] * scale)
                        .fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f32> = (0..tk)
                        .map(|j| {
                            if allowed(j) {
                                (s[j] * scale - max).exp()
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    let sum: f32 = e.iter().sum();
                    for x in 0..d {
                        let o: f32 = (0..tk).map(|j| e[j] * v[at(j, x, tk)]).sum();
                        out[at(i, x, tq)] = if sum > 0.0 { o / sum } else { 0.0 };
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_naive_and_candle_on_strided_views() {
        let dev = Device::Cpu;
        for (b, tq, tk, h, d, causal, pad) in [
            (2, 5, 5, 3, 4, false, true),
            (1, 7, 7, 2, 8, true, false),
            (3, 3, 9, 2, 5, true, true),
            (2, 1, 6, 4, 3, true, false),
            (1, 33, 33, 1, 16, false, false),
        ] {
            let keys = pad.then(|| {
                (0..b)
                    .map(|bi| (0..tk).map(|j| j < tk - bi || bi == 0).collect())
                    .collect()
            });
            let mask = AttentionMask { causal, keys };
            // q from one fused [B, Tq, 3, H, d] projection, so its strides are not contiguous.
            let qkv = Var::randn(0f32, 1.0, (b, tq, 3, h, d), &dev).unwrap();
            let q = qkv.narrow(2, 0, 1).unwrap().squeeze(2).unwrap();
            let kv = Var::randn(0f32, 1.0, (b, tk, 2, h, d), &dev).unwrap();
            let k = kv.narrow(2, 0, 1).unwrap().squeeze(2).unwrap();
            let v = kv.narrow(2, 1, 1).unwrap().squeeze(2).unwrap();
            let scale = 1.0 / (d as f32).sqrt();
            let ours = attention(&q, &k, &v, scale, &mask).unwrap();
            let reference = attention_reference(&q, &k, &v, scale, &mask).unwrap();
            let want = naive(&q, &k, &v, scale, &mask);
            let got = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "kernel {g} vs naive {w}");
            }
            assert!(max_diff(&reference, &ours) < 1e-5, "reference vs kernel");
            let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
            let go = weighted_grads(&ours, &r);
            let heads = |t: &Tensor| t.transpose(1, 2).unwrap().contiguous().unwrap();
            let (qh, kh, vh) = (heads(&q), heads(&k), heads(&v));
            // Autograd through candle's own softmax with an additive mask, as the reference.
            // The fused backward against the same maths by plain candle ops.
            let (dq, dk, dv) = attention_backward_reference(&q, &k, &v, &r, scale, &mask).unwrap();
            let g = go.get(&qkv).unwrap();
            let part = |t: &Tensor, i: usize| t.narrow(2, i, 1).unwrap().squeeze(2).unwrap();
            assert!(max_diff(&part(g, 0), &dq) < 1e-5, "dq");
            let g = go.get(&kv).unwrap();
            assert!(max_diff(&part(g, 0), &dk) < 1e-5, "dk");
            assert!(max_diff(&part(g, 1), &dv) < 1e-5, "dv");
            let allowed = mask_tensor(b, tq, tk, &mask, &dev).unwrap();
            let s = (qh.matmul(&kh.t().unwrap()).unwrap() * scale as f64)
                .unwrap()
                .broadcast_add(&((&allowed - 1.0).unwrap() * 1e9).unwrap())
                .unwrap();
            let p = candle_nn::ops::softmax(&s, D::Minus1).unwrap();
            let plain = p.matmul(&vh).unwrap().transpose(1, 2).unwrap();
            let gt = weighted_grads(&plain, &r);
            for var in [&qkv, &kv] {
                let a = go.get(var).expect("kernel gradient");
                let b = gt.get(var).expect("reference gradient");
                assert!(
                    max_diff(a, b) < 1e-4,
                    "gradient differs by {}",
                    max_diff(a, b)
                );
            }
        }
    }

    /// The kernel's own backward (f32) against central differences of the kernel's forward,
    /// with causal and key-padding masks (f64 inputs take the reference path instead, so the
    /// f64 gradient checks in `tests/it` do not reach this backward).
    #[test]
    fn kernel_gradients_match_finite_differences_with_causal_and_padding_masks() {
        let dev = Device::Cpu;
        let (b, t, h, d) = (2, 5, 2, 3);
        for (causal, pad) in [(true, false), (false, true), (true, true)] {
            let keys = pad.then(|| vec![vec![true; t], vec![true, true, false, true, false]]);
            let mask = AttentionMask { causal, keys };
            let vars: Vec<Var> = (0..3)
                .map(|_| Var::randn(0f32, 1.0, (b, t, h, d), &dev).unwrap())
                .collect();
            let r = Tensor::randn(0f32, 1.0, (b, t, h, d), &dev).unwrap();
            let f = |q: &Tensor, k: &Tensor, v: &Tensor| -> f64 {
                let y = attention(q, k, v, 0.6, &mask).unwrap();
                (y * &r)
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let y = attention(&vars[0], &vars[1], &vars[2], 0.6, &mask).unwrap();
            let grads = weighted_grads(&y, &r);
            for (which, var) in vars.iter().enumerate() {
                let analytic = grads
                    .get(var)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let base = var.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for i in 0..base.len() {
                    let at = |eps: f32| {
                        let mut x = base.clone();
                        x[i] += eps;
                        let x = Tensor::from_vec(x, (b, t, h, d), &dev).unwrap();
                        let mut qkv: Vec<Tensor> =
                            vars.iter().map(|v| v.as_tensor().clone()).collect();
                        qkv[which] = x;
                        f(&qkv[0], &qkv[1], &qkv[2])
                    };
                    let numeric = (at(1e-2) - at(-1e-2)) / 2e-2;
                    let a = analytic[i] as f64;
                    assert!(
                        (numeric - a).abs() < 1e-3 * a.abs().max(1.0),
                        "causal {causal} pad {pad}: input {which}[{i}]: kernel {a} vs finite differences {numeric}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_qkv_op_equals_attention_on_views_forward_and_backward() {
        let dev = Device::Cpu;
        for (b, t, h, d, causal) in [(2, 5, 3, 4, true), (1, 9, 2, 8, false), (3, 1, 1, 2, true)] {
            let mask = AttentionMask { causal, keys: None };
            let qkv = Var::randn(0f32, 1.0, (b, t, 3, h, d), &dev).unwrap();
            let part = |i: usize| qkv.narrow(2, i, 1).unwrap().squeeze(2).unwrap();
            let fused = attention_qkv(&qkv, 0.4, &mask).unwrap();
            let views = attention(&part(0), &part(1), &part(2), 0.4, &mask).unwrap();
            assert_eq!(max_diff(&fused, &views), 0.0);
            let r = Tensor::randn(0f32, 1.0, fused.dims(), &dev).unwrap();
            let (gf, gv) = (weighted_grads(&fused, &r), weighted_grads(&views, &r));
            assert!(max_diff(gf.get(&qkv).unwrap(), gv.get(&qkv).unwrap()) < 1e-6);
            // f64 takes the reference path.
            let q64 = qkv.to_dtype(DType::F64).unwrap();
            let y64 = attention_qkv(&q64, 0.4, &mask).unwrap();
            assert!(max_diff(&y64.to_dtype(DType::F32).unwrap(), &fused) < 1e-5);
        }
    }

    #[test]
    fn a_fully_masked_row_is_zero() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 2, 1, 4), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 3, 1, 4), &dev).unwrap();
        let mask = AttentionMask {
            causal: false,
            keys: Some(vec![vec![false; 3]]),
        };
        let y = attention(&q, &k, &k, 0.5, &mask).unwrap();
        assert!(y
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .all(|&v| v == 0.0));
        assert!(attention(
            &q,
            &k,
            &k,
            0.5,
            &AttentionMask {
                keys: Some(vec![vec![true; 2]]),
                ..Default::default()
            }
        )
        .is_err());
    }
}
