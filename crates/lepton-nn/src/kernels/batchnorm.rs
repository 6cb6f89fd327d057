//! Batch normalisation over `[N, C, *]` as fused custom ops (candle's composition of means,
//! broadcasts and their backward passes costs ~20 full passes over the activation).
//!
//! - [`channel_stats`]: per-channel mean and biased variance, one pass, parallel over channels;
//! - [`batch_norm`]: `y = (x - μ)·γ/√(σ²+ε) + β` with μ, σ² given (batch statistics in training,
//!   running statistics in evaluation). The backward pass differentiates through μ and σ² when they
//!   are the batch's own statistics (`batch_stats`), and treats them as constants otherwise.
//!
//! Every reduction runs per channel in a fixed order, so results do not depend on thread scheduling.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::buffer::par_chunks;
use super::maxpool::{pool_plane, unpool, Geometry as PoolGeom};
use std::sync::{Arc, Mutex};

/// Planes per rayon task (one plane is only ~100-700 elements).
const PLANES_PER_TASK: usize = 32;

use super::blas::Elem;

#[derive(Debug, Clone, Copy)]
struct Dims {
    n: usize,
    c: usize,
    s: usize,
}

impl Dims {
    fn of(dims: &[usize]) -> Result<Dims> {
        if dims.len() < 2 {
            candle_core::bail!("batch norm expects [N, C, ...], got {dims:?}");
        }
        Ok(Dims {
            n: dims[0],
            c: dims[1],
            s: dims[2..].iter().product(),
        })
    }

    fn count(&self) -> f64 {
        (self.n * self.s) as f64
    }
}

fn contiguous<'a, T>(data: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("batch-norm kernel needs contiguous inputs"),
    }
}

/// `(Σ a, Σ a·b)` over a segment, eight lanes in `T`, returned in f64.
fn dot_sums<T: Elem>(a: &[T], b: Option<&[T]>) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU feature was just checked.
        return unsafe { dot_sums_avx2(a, b) };
    }
    dot_sums_generic(a, b)
}

/// The same code compiled for AVX2: the eight lanes become one register instead of shuffled
/// SSE halves (same operations in the same order, so the same bits).
///
/// # Safety
/// The CPU must support AVX2 (`is_x86_feature_detected!("avx2")`): running this function on a
/// CPU without it is undefined behaviour. The body itself is safe code (no unsafe operation).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_sums_avx2<T: Elem>(a: &[T], b: Option<&[T]>) -> (f64, f64) {
    dot_sums_generic(a, b)
}

#[inline(always)]
fn dot_sums_generic<T: Elem>(a: &[T], b: Option<&[T]>) -> (f64, f64) {
    let mut s1 = [T::ZERO; 8];
    let mut s2 = [T::ZERO; 8];
    let (ac, ar) = (a.chunks_exact(8), a.chunks_exact(8).remainder());
    match b {
        Some(b) => {
            for (x, y) in ac.zip(b.chunks_exact(8)) {
                for j in 0..8 {
                    s1[j] += x[j];
                    s2[j] += x[j] * y[j];
                }
            }
            let br = b.chunks_exact(8).remainder();
            for (x, y) in ar.iter().zip(br) {
                s1[0] += *x;
                s2[0] += *x * *y;
            }
        }
        None => {
            for x in ac {
                for j in 0..8 {
                    s1[j] += x[j];
                    s2[j] += x[j] * x[j];
                }
            }
            for x in ar {
                s1[0] += *x;
                s2[0] += *x * *x;
            }
        }
    }
    let sum = |v: [T; 8]| v.iter().fold(0.0, |acc, x| acc + x.to_f64());
    (sum(s1), sum(s2))
}

/// Per channel: `(Σ_seg f(seg))` over the N segments of that channel, in order.
fn per_channel<T: Elem>(
    d: Dims,
    a: &[T],
    b: Option<&[T]>,
    f: impl Fn(f64, f64, usize) -> (f64, f64) + Sync,
) -> Vec<(f64, f64)> {
    (0..d.c)
        .into_par_iter()
        .map(|ch| {
            let (mut t1, mut t2) = (0.0, 0.0);
            for i in 0..d.n {
                let r = (i * d.c + ch) * d.s..(i * d.c + ch + 1) * d.s;
                let (s1, s2) = dot_sums(&a[r.clone()], b.map(|b| &b[r]));
                t1 += s1;
                t2 += s2;
            }
            f(t1, t2, ch)
        })
        .collect()
}

struct Stats(Dims);

impl CustomOp1 for Stats {
    fn name(&self) -> &'static str {
        "lepton-batch-norm-stats"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = self.0;
        let m = d.count();
        let f = |s1: f64, s2: f64, _| {
            let mean = s1 / m;
            (mean, (s2 / m - mean * mean).max(0.0))
        };
        let r = match s {
            CpuStorage::F32(x) => per_channel(d, contiguous(x, l)?, None, f),
            CpuStorage::F64(x) => per_channel(d, contiguous(x, l)?, None, f),
            _ => candle_core::bail!("batch norm: only f32 and f64 are supported"),
        };
        let mut out: Vec<f64> = r.iter().map(|p| p.0).collect();
        out.extend(r.iter().map(|p| p.1));
        Ok((CpuStorage::F64(out), Shape::from((2, d.c))))
    }
}

/// Per-channel mean and biased variance of `x: [N, C, ...]`, computed in f64.
pub fn channel_stats(x: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    let d = Dims::of(x.dims())?;
    let v = x
        .contiguous()?
        .apply_op1_no_bwd(&Stats(d))?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let (mean, var) = v.split_at(d.c);
    Ok((mean.to_vec(), var.to_vec()))
}

/// `1/√(var + eps)`, as the kernel computes it.
fn inverse_std(var: f64, eps: f64) -> f64 {
    1.0 / (var + eps).sqrt()
}

/// The per-channel `(a, b)` of `y = x·a + b` from `γ`, `β`, the mean and `1/√(σ² + ε)`, in f64
/// (the kernel rounds both to the element type before use).
fn scale_shift(gamma: f64, beta: f64, mean: f64, invstd: f64) -> (f64, f64) {
    let a = gamma * invstd;
    (a, beta - mean * a)
}

/// Eval-mode batch norm as one per-channel affine map `y = x·scale + shift`: the values the
/// kernel ([`batch_norm`] with running statistics) computes with, to the last bit once rounded
/// to the element type, so that a caller applying `x·scale + shift` in that type (the
/// piecewise net) rounds every value exactly as the model's own forward does.
pub fn eval_affine(
    gamma: &[f64],
    beta: &[f64],
    mean: &[f64],
    var: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>) {
    gamma
        .iter()
        .zip(beta)
        .zip(mean.iter().zip(var))
        .map(|((&g, &b), (&m, &v))| scale_shift(g, b, m, inverse_std(v, eps)))
        .unzip()
}

/// The normalisation with fixed per-channel statistics.
#[derive(Clone)]
struct Norm {
    d: Dims,
    mean: Vec<f64>,
    invstd: Vec<f64>,
    batch_stats: bool,
    /// A ReLU fused after the normalisation.
    relu: bool,
    /// A max-pool fused after it (and after the ReLU): only the pooled planes are written, and
    /// the argmax indices are kept here for the backward pass.
    pool: Option<PoolGeom>,
    argmax: Arc<Mutex<Option<Arc<Vec<u32>>>>>,
}

impl Norm {
    /// `y = x·a + b` per channel, into one plane.
    fn plane<T: Elem>(&self, i: usize, xs: &[T], g: &[T], beta: &[T], ys: &mut [T]) {
        let ch = i % self.d.c;
        let (a, b) = scale_shift(
            g[ch].to_f64(),
            beta[ch].to_f64(),
            self.mean[ch],
            self.invstd[ch],
        );
        let (a, b) = (T::from_f64(a), T::from_f64(b));
        for (y, &x) in ys.iter_mut().zip(xs) {
            *y = x * a + b;
        }
        if self.relu {
            for y in ys.iter_mut() {
                *y = if *y > T::ZERO { *y } else { T::ZERO };
            }
        }
    }

    fn fwd<T: Elem>(&self, x: &[T], g: &[T], beta: &[T]) -> Vec<T> {
        let d = self.d;
        let Some(pg) = self.pool else {
            return par_chunks(x.len(), d.s, PLANES_PER_TASK, |i, ys| {
                self.plane(i, &x[i * d.s..(i + 1) * d.s], g, beta, ys)
            });
        };
        // Each plane is normalised into a per-task buffer and pooled from there.
        let per = pg.oh * pg.ow;
        let mut out = vec![T::ZERO; d.n * d.c * per];
        let mut at = vec![0u32; out.len()];
        out.par_chunks_mut(per)
            .zip(at.par_chunks_mut(per))
            .enumerate()
            .with_min_len(PLANES_PER_TASK)
            .for_each_init(
                || vec![T::ZERO; d.s],
                |buf, (i, (o, a))| {
                    self.plane(i, &x[i * d.s..(i + 1) * d.s], g, beta, buf);
                    pool_plane(&pg, buf, o, Some(a));
                },
            );
        *self.argmax.lock().expect("batch-norm argmax lock") = Some(Arc::new(at));
        out
    }
}

impl CustomOp3 for Norm {
    fn name(&self) -> &'static str {
        "lepton-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(g), CpuStorage::F32(b)) => CpuStorage::F32(
                self.fwd(contiguous(x, l1)?, contiguous(g, l2)?, contiguous(b, l3)?),
            ),
            (CpuStorage::F64(x), CpuStorage::F64(g), CpuStorage::F64(b)) => CpuStorage::F64(
                self.fwd(contiguous(x, l1)?, contiguous(g, l2)?, contiguous(b, l3)?),
            ),
            _ => candle_core::bail!("batch norm: input, weight and bias must all be f32 or f64"),
        };
        let shape = match self.pool {
            Some(pg) => Shape::from((pg.n, pg.c, pg.oh, pg.ow)),
            None => l1.shape().clone(),
        };
        Ok((out, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        g: &Tensor,
        b: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // With a fused pool, `res` and `dy` are pooled: the ReLU's mask is `res > 0` at each
        // window's argmax (the only position that gets a gradient), then the pool is undone.
        let dy = if self.relu {
            super::activation::relu_backward(res, dy)?
        } else {
            dy.contiguous()?
        };
        let dy = match self.pool {
            Some(pg) => {
                let Some(argmax) = self.argmax.lock().expect("batch-norm argmax lock").clone()
                else {
                    candle_core::bail!("batch norm backward: the forward pass kept no argmax")
                };
                unpool(&dy, pg, argmax)?
            }
            None => dy,
        };
        // [2, C]: Σ dy and Σ dy·x̂ per channel.
        let sums = x.apply_op2_no_bwd(&dy, &GradSums(self.clone()))?;
        // The affine parameters' gradients only when they need one (frozen for explanations).
        let dbeta = if b.track_op() {
            Some(sums.get(0)?.to_dtype(g.dtype())?)
        } else {
            None
        };
        let dgamma = if g.track_op() {
            Some(sums.get(1)?.to_dtype(g.dtype())?)
        } else {
            None
        };
        let dx = if x.track_op() {
            let host = sums.flatten_all()?.to_vec1::<f64>()?;
            let gamma = g.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
            Some(x.apply_op2_no_bwd(
                &dy,
                &InputGrad {
                    norm: self.clone(),
                    gamma,
                    sum_dy: host[..self.d.c].to_vec(),
                    sum_dy_xhat: host[self.d.c..].to_vec(),
                },
            )?)
        } else {
            None
        };
        Ok((dx, dgamma, dbeta))
    }
}

struct GradSums(Norm);

impl CustomOp2 for GradSums {
    fn name(&self) -> &'static str {
        "lepton-batch-norm-grad-sums"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let nm = &self.0;
        // Σ dy·x̂ = invstd·(Σ dy·x − μ·Σ dy).
        let f = |sdy: f64, sdyx: f64, ch: usize| (sdy, nm.invstd[ch] * (sdyx - nm.mean[ch] * sdy));
        let r = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(dy)) => {
                per_channel(nm.d, contiguous(dy, l2)?, Some(contiguous(x, l1)?), f)
            }
            (CpuStorage::F64(x), CpuStorage::F64(dy)) => {
                per_channel(nm.d, contiguous(dy, l2)?, Some(contiguous(x, l1)?), f)
            }
            _ => candle_core::bail!("batch norm backward: mismatched dtypes"),
        };
        let mut out: Vec<f64> = r.iter().map(|p| p.0).collect();
        out.extend(r.iter().map(|p| p.1));
        Ok((CpuStorage::F64(out), Shape::from((2, nm.d.c))))
    }
}

struct InputGrad {
    norm: Norm,
    gamma: Vec<f64>,
    sum_dy: Vec<f64>,
    sum_dy_xhat: Vec<f64>,
}

impl InputGrad {
    /// `dx = k1·dy − k2·x + k0` per channel (with batch statistics), or `k1·dy` (fixed ones).
    fn run<T: Elem>(&self, x: &[T], dy: &[T]) -> Vec<T> {
        let nm = &self.norm;
        let d = nm.d;
        let m = d.count();
        par_chunks(x.len(), d.s, PLANES_PER_TASK, |i, dxs| {
            let (xs, dys) = (&x[i * d.s..(i + 1) * d.s], &dy[i * d.s..(i + 1) * d.s]);
            let ch = i % d.c;
            let inv = nm.invstd[ch];
            let k1 = self.gamma[ch] * inv;
            if nm.batch_stats {
                let k2 = k1 * inv * self.sum_dy_xhat[ch] / m;
                let k0 = -k1 * self.sum_dy[ch] / m + k2 * nm.mean[ch];
                let (k0, k1, k2) = (T::from_f64(k0), T::from_f64(k1), T::from_f64(k2));
                for ((o, &x), &g) in dxs.iter_mut().zip(xs).zip(dys) {
                    *o = k1 * g - k2 * x + k0;
                }
            } else {
                let k1 = T::from_f64(k1);
                for (o, &g) in dxs.iter_mut().zip(dys) {
                    *o = k1 * g;
                }
            }
        })
    }
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "lepton-batch-norm-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(dy)) => {
                CpuStorage::F32(self.run(contiguous(x, l1)?, contiguous(dy, l2)?))
            }
            (CpuStorage::F64(x), CpuStorage::F64(dy)) => {
                CpuStorage::F64(self.run(contiguous(x, l1)?, contiguous(dy, l2)?))
            }
            _ => candle_core::bail!("batch norm backward: mismatched dtypes"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// `y = (x − mean)/√(var + eps)·weight + bias` per channel of `x: [N, C, ...]` (then `max(y, 0)`
/// with `relu`, then a max-pool `(kernel, stride, padding)` of `[N, C, H, W]` with `pool`). With
/// `batch_stats`, `mean` and `var` must be `x`'s own [`channel_stats`] and the gradient flows
/// through them; otherwise they are constants (running statistics).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    mean: &[f64],
    var: &[f64],
    eps: f64,
    batch_stats: bool,
    relu: bool,
    pool: Option<(usize, usize, usize)>,
) -> Result<Tensor> {
    let d = Dims::of(x.dims())?;
    let pool = match pool {
        Some((k, s, p)) => Some(PoolGeom::new(x.dims(), k, s, p)?),
        None => None,
    };
    if mean.len() != d.c || var.len() != d.c || weight.dims() != [d.c] || bias.dims() != [d.c] {
        candle_core::bail!(
            "batch norm: input {:?} needs {} statistics, weights and biases",
            x.dims(),
            d.c
        );
    }
    let norm = Norm {
        d,
        mean: mean.to_vec(),
        invstd: var.iter().map(|&v| inverse_std(v, eps)).collect(),
        batch_stats,
        relu,
        pool,
        argmax: Arc::default(),
    };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{max_diff, weighted_grads};
    use candle_core::{Device, Var};

    /// The plain candle composition the kernel replaces.
    fn reference(x: &Tensor, g: &Tensor, b: &Tensor, eps: f64) -> Tensor {
        let reduce: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
        let shape: Vec<usize> = (0..x.rank())
            .map(|d| if d == 1 { x.dim(1).unwrap() } else { 1 })
            .collect();
        let mean = x.mean_keepdim(reduce.as_slice()).unwrap();
        let xc = x.broadcast_sub(&mean).unwrap();
        let var = xc.sqr().unwrap().mean_keepdim(reduce.as_slice()).unwrap();
        xc.broadcast_div(&(var + eps).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&g.reshape(shape.as_slice()).unwrap())
            .unwrap()
            .broadcast_add(&b.reshape(shape.as_slice()).unwrap())
            .unwrap()
    }

    #[test]
    fn matches_the_candle_composition_forward_and_backward() {
        let dev = Device::Cpu;
        for shape in [
            vec![5, 3],
            vec![2, 3, 5, 7],
            vec![3, 4, 1, 9],
            vec![4, 2, 13],
        ] {
            let c = shape[1];
            let x = Var::from_tensor(
                &(Tensor::randn(0f64, 2.0, shape.as_slice(), &dev).unwrap() + 1.5).unwrap(),
            )
            .unwrap();
            let g = Var::from_tensor(&Tensor::randn(1f64, 0.5, c, &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f64, 0.5, c, &dev).unwrap()).unwrap();
            let r = Tensor::randn(0f64, 1.0, shape.as_slice(), &dev).unwrap();
            let (mean, var) = channel_stats(&x).unwrap();
            let ours = batch_norm(&x, &g, &b, &mean, &var, 1e-5, true, false, None).unwrap();
            let theirs = reference(&x, &g, &b, 1e-5);
            assert!(max_diff(&ours, &theirs) < 1e-10);
            let go = weighted_grads(&ours, &r);
            let gt = weighted_grads(&theirs, &r);
            for v in [&x, &g, &b] {
                let d = max_diff(go.get(v).unwrap(), gt.get(v).unwrap());
                assert!(d < 1e-9, "{shape:?}: gradient differs by {d}");
            }
            // Fixed statistics: an affine map per channel.
            let ours = batch_norm(&x, &g, &b, &mean, &var, 1e-5, false, false, None).unwrap();
            let go = weighted_grads(&ours, &r);
            let shape_c: Vec<usize> = (0..x.rank()).map(|d| if d == 1 { c } else { 1 }).collect();
            let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
            let want = (r.broadcast_mul(
                &(g.as_tensor() * Tensor::new(inv.as_slice(), &dev).unwrap())
                    .unwrap()
                    .reshape(shape_c.as_slice())
                    .unwrap(),
            ))
            .unwrap();
            assert!(max_diff(go.get(&x).unwrap(), &want) < 1e-12);
        }
    }

    #[test]
    fn fused_max_pool_equals_batch_norm_relu_then_max_pool() {
        // Odd planes, overlapping and padded windows; batch and running statistics; with and
        // without the ReLU. Same values and same gradients (the same ops in the same order).
        let dev = Device::Cpu;
        for (shape, pool) in [
            ([2, 3, 8, 6], (2, 2, 0)),
            ([3, 2, 7, 9], (2, 2, 0)),
            ([2, 2, 7, 5], (3, 2, 1)),
        ] {
            let c = shape[1];
            let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, &shape, &dev).unwrap()).unwrap();
            let g = Var::from_tensor(&Tensor::randn(1f64, 0.5, c, &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f64, 0.5, c, &dev).unwrap()).unwrap();
            let (mean, var) = channel_stats(&x).unwrap();
            for (batch_stats, relu) in [(true, true), (true, false), (false, true)] {
                let fused =
                    batch_norm(&x, &g, &b, &mean, &var, 1e-5, batch_stats, relu, Some(pool))
                        .unwrap();
                let plain = super::super::max_pool2d(
                    &batch_norm(&x, &g, &b, &mean, &var, 1e-5, batch_stats, relu, None).unwrap(),
                    pool.0,
                    pool.1,
                    pool.2,
                )
                .unwrap();
                assert_eq!(fused.dims(), plain.dims());
                assert_eq!(max_diff(&fused, &plain), 0.0, "{shape:?} {pool:?}");
                let r = Tensor::randn(0f64, 1.0, fused.dims(), &dev).unwrap();
                let gf = weighted_grads(&fused, &r);
                let gp = weighted_grads(&plain, &r);
                for v in [&x, &g, &b] {
                    let d = max_diff(gf.get(v).unwrap(), gp.get(v).unwrap());
                    assert!(d < 1e-12, "{shape:?} {pool:?}: gradient differs by {d}");
                }
            }
        }
    }
}
