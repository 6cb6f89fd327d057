//! Layer norm over the last dimension, `y = x̂·γ + β` with `x̂ = (x − μ)·r`,
//! `r = 1/√(σ² + ε)` (biased σ²), as one custom op with a fused backward: per row
//! `dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂))` with `ĝ = dy ⊙ γ`, and `dγ = Σ dy ⊙ x̂`,
//! `dβ = Σ dy` over rows (μ and r are recomputed, one pass over the row). The plain candle
//! composition needs about ten broadcast passes each way; it is the reference here and the path
//! for dtypes other than f32.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// Rows per parallel task.
const ROWS: usize = 64;

struct LayerNorm {
    eps: f32,
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("layer-norm kernel: {what} must be contiguous f32"),
    }
}

/// `(μ, r)` of one row.
fn stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "lepton-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            slice(xs, xl, "x")?,
            slice(ws, wl, "w")?,
            slice(bs, bl, "b")?,
        );
        let f = w.len();
        if f == 0 || xl.dims().last() != Some(&f) || b.len() != f {
            candle_core::bail!(
                "layer-norm kernel: x {:?}, weight {:?}, bias {:?} do not fit",
                xl.dims(),
                wl.dims(),
                bl.dims()
            );
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(ROWS * f)
            .zip(x.par_chunks(ROWS * f))
            .for_each(|(y, x)| {
                for (y, x) in y.chunks_mut(f).zip(x.chunks(f)) {
                    let (mean, r) = stats(x, self.eps);
                    for j in 0..f {
                        y[j] = (x[j] - mean) * r * w[j] + b[j];
                    }
                }
            });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (xv, wv, gv) = (
            x.flatten_all()?.to_vec1::<f32>()?,
            w.to_vec1::<f32>()?,
            dy.flatten_all()?.to_vec1::<f32>()?,
        );
        let f = wv.len();
        let mut dx = vec![0f32; xv.len()];
        let (dw, db) = dx
            .par_chunks_mut(ROWS * f)
            .zip(xv.par_chunks(ROWS * f).zip(gv.par_chunks(ROWS * f)))
            .map(|(dx, (x, g))| {
                let (mut dw, mut db) = (vec![0f32; f], vec![0f32; f]);
                let mut xhat = vec![0f32; f];
                for (dx, (x, g)) in dx.chunks_mut(f).zip(x.chunks(f).zip(g.chunks(f))) {
                    let (mean, r) = stats(x, self.eps);
                    let (mut sum_g, mut sum_gx) = (0f32, 0f32);
                    for j in 0..f {
                        xhat[j] = (x[j] - mean) * r;
                        let gh = g[j] * wv[j];
                        sum_g += gh;
                        sum_gx += gh * xhat[j];
                        dw[j] += g[j] * xhat[j];
                        db[j] += g[j];
                    }
                    let (mg, mgx) = (sum_g / f as f32, sum_gx / f as f32);
                    for j in 0..f {
                        dx[j] = r * (g[j] * wv[j] - mg - xhat[j] * mgx);
                    }
                }
                (dw, db)
            })
            .reduce(
                || (vec![0f32; f], vec![0f32; f]),
                |(mut a, mut b), (c, d)| {
                    a.iter_mut().zip(&c).for_each(|(a, c)| *a += c);
                    b.iter_mut().zip(&d).for_each(|(b, d)| *b += d);
                    (a, b)
                },
            );
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, f, dev)?),
            Some(Tensor::from_vec(db, f, dev)?),
        ))
    }
}

/// Layer norm of `x: [..., F]` with `weight`, optional `bias`: `[F]`. f32 on the CPU runs the
/// fused kernel; other dtypes the plain candle ops.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    if x.dtype() != DType::F32 || !x.device().is_cpu() {
        return layer_norm_reference(x, weight, bias, eps);
    }
    let zeros;
    let bias = match bias {
        Some(b) => b,
        None => {
            zeros = Tensor::zeros(weight.shape(), DType::F32, weight.device())?;
            &zeros
        }
    };
    x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LayerNorm { eps: eps as f32 },
    )
}

/// [`layer_norm`] by plain candle ops (they all have a backward).
pub fn layer_norm_reference(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let y = centered
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(weight)?;
    match bias {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{max_diff, weighted_grads};
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_composition_forward_and_backward() {
        let dev = Device::Cpu;
        for (shape, bias) in [
            (vec![3, 7], true),
            (vec![2, 65, 128], true),
            (vec![5, 1], false),
            (vec![1, 3, 33], false),
        ] {
            let f = *shape.last().unwrap();
            let x = Var::randn(1f32, 2.0, shape.as_slice(), &dev).unwrap();
            let w = Var::randn(1f32, 0.5, f, &dev).unwrap();
            let b = Var::randn(0f32, 0.5, f, &dev).unwrap();
            let b = bias.then_some(b.as_tensor());
            let ours = layer_norm(&x, &w, b, 1e-5).unwrap();
            let plain = layer_norm_reference(&x, &w, b, 1e-5).unwrap();
            assert!(max_diff(&ours, &plain) < 1e-5, "{shape:?} forward");
            let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
            let (go, gp) = (weighted_grads(&ours, &r), weighted_grads(&plain, &r));
            let mut vars = vec![x.as_tensor(), w.as_tensor()];
            vars.extend(b);
            for v in vars {
                let d = max_diff(go.get(v).unwrap(), gp.get(v).unwrap());
                // dγ and dβ sum over up to 130 rows.
                assert!(
                    d < 1e-5 * (shape.iter().product::<usize>() / f).max(1) as f64,
                    "{shape:?}: {d}"
                );
            }
        }
    }

    /// The fused backward against central differences of the fused forward (f32, h = 1e-2).
    #[test]
    fn kernel_gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let x = Var::randn(0f32, 1.0, (4, 6), &dev).unwrap();
        let w = Var::randn(1f32, 0.3, 6, &dev).unwrap();
        let b = Var::randn(0f32, 0.3, 6, &dev).unwrap();
        let r = Tensor::randn(0f32, 1.0, (4, 6), &dev).unwrap();
        let f = |x: &Tensor, w: &Tensor, b: &Tensor| -> f64 {
            (layer_norm(x, w, Some(b), 1e-5).unwrap() * &r)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let y = layer_norm(&x, &w, Some(&b), 1e-5).unwrap();
        let grads = weighted_grads(&y, &r);
        let vars = [&x, &w, &b];
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
                let at = |h: f32| {
                    let mut v = base.clone();
                    v[i] += h;
                    let t = Tensor::from_vec(v, var.dims(), &dev).unwrap();
                    let mut args: Vec<Tensor> =
                        vars.iter().map(|v| v.as_tensor().clone()).collect();
                    args[which] = t;
                    f(&args[0], &args[1], &args[2])
                };
                let numeric = (at(1e-2) - at(-1e-2)) / 2e-2;
                let a = analytic[i] as f64;
                assert!(
                    (numeric - a).abs() < 2e-3 * a.abs().max(1.0),
                    "input {which}[{i}]: {a} vs {numeric}"
                );
            }
        }
    }
}
