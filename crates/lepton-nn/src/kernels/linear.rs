//! `act(x·Wᵀ + b)` as one custom op: the bias is written into the output before the GEMM
//! accumulates into it, and the activation runs in place over the output in parallel, vectorised
//! (see `math.rs`). Plain candle needs a matmul, a broadcast add and a scalar-libm activation,
//! three passes with two allocations; its GELU alone was 16 % of a GPT-2 forward.
//!
//! The backward pass is plain candle matmuls on `dz = dy·act'(z)`; for GELU, `z` is recomputed
//! by the fused forward without activation (cheaper than keeping it alive for inference).
//! f32 only: other dtypes take the plain candle path, which is also the reference in the tests.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::blas::{matmul, Mat};
use super::math;

/// Elements per parallel task for the activation pass.
const CHUNK: usize = 16 * 1024;

/// The activation fused into [`linear`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Relu,
    /// Exact GELU, `x·Φ(x)` (BERT's `gelu`, PyTorch's default).
    GeluErf,
    /// GELU with the tanh approximation (GPT-2's `gelu_new`, PyTorch's `approximate="tanh"`).
    GeluTanh,
}

impl Activation {
    pub(super) fn apply(self, ys: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Relu => math::map_inplace(ys, |v| v.max(0.0)),
            Activation::GeluErf => math::gelu_erf_inplace(ys),
            Activation::GeluTanh => math::gelu_tanh_inplace(ys),
        }
    }

    /// The same activation as plain candle ops (the reference, and the path for f64).
    fn candle(self, z: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Identity => Ok(z.clone()),
            Activation::Relu => z.relu(),
            Activation::GeluErf => z.gelu_erf(),
            Activation::GeluTanh => z.gelu(),
        }
    }
}

struct Linear(Activation);

/// `dy·act'(z)` for the GELUs, given the pre-activation `z`.
struct GeluBackward(Activation);

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => Ok(&v[l.start_offset()..]),
        _ => candle_core::bail!("linear kernel: {what} must be f32"),
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "lepton-linear"
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
        let k = xl.dims()[xl.dims().len() - 1];
        let m = xl.shape().elem_count() / k.max(1);
        let [n, wk] = *wl.dims() else {
            candle_core::bail!("linear kernel: w must be [out, in], got {:?}", wl.dims());
        };
        if wk != k || bl.dims() != [n] || !xl.is_contiguous() || !bl.is_contiguous() {
            candle_core::bail!(
                "linear kernel: x {:?}, w {:?}, b {:?} do not fit",
                xl.dims(),
                wl.dims(),
                bl.dims()
            );
        }
        // The bias rows are the GEMM's starting value (no zero fill first).
        let mut y = Vec::with_capacity(m * n);
        for _ in 0..m {
            y.extend_from_slice(&b[..n]);
        }
        // wᵀ as a view: element (kk, j) of wᵀ is w[j, kk].
        let (ws0, ws1) = (wl.stride()[0], wl.stride()[1]);
        matmul(
            m,
            n,
            k,
            &mut y,
            Mat::rows(x, k),
            Mat {
                data: w,
                rs: ws1,
                cs: ws0,
            },
            true,
            ::gemm::Parallelism::Rayon(0),
        );
        if self.0 != Activation::Identity {
            y.par_chunks_mut(CHUNK).for_each(|c| self.0.apply(c));
        }
        let mut dims = xl.dims().to_vec();
        *dims.last_mut().expect("x has a last dimension") = n;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dz = match self.0 {
            Activation::Identity => dy.clone(),
            Activation::Relu => super::activation::relu_backward(y, dy)?,
            act => {
                let z = x.apply_op3_no_bwd(w, b, &Linear(Activation::Identity))?;
                z.apply_op2_no_bwd(&dy.contiguous()?, &GeluBackward(act))?
            }
        };
        let n = w.dim(0)?;
        let dz2 = dz.reshape(((), n))?;
        let x2 = x.reshape(((), w.dim(1)?))?;
        // Each gradient only when its operand needs one: no input gradient for the data of the
        // first layer, no weight gradients through the frozen weights of an explanation.
        let dx = if x.track_op() {
            Some(dz2.matmul(w)?.reshape(x.shape())?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(dz2.t()?.matmul(&x2)?)
        } else {
            None
        };
        let db = if b.track_op() {
            Some(column_sums(&dz2)?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

/// `Σ_rows t` of an f32 `[M, N]` matrix, one pass over the rows (candle's `sum(0)` over the
/// leading dimension walks it column by column and was 11 % of a nanoGPT training step).
fn column_sums(t: &Tensor) -> Result<Tensor> {
    let t = t.contiguous()?;
    let n = t.dim(1)?;
    let mut acc = vec![0f32; n];
    {
        let (storage, layout) = t.storage_and_layout();
        let (candle_core::Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("linear kernel: the output gradient must be f32 on the CPU");
        };
        for row in v[a..b].chunks_exact(n.max(1)) {
            acc.iter_mut().zip(row).for_each(|(s, x)| *s += x);
        }
    }
    Tensor::from_vec(acc, n, t.device())
}

/// A GELU as its own op, for training: `cpu_fwd` keeps the pre-activation `z` as the op's input,
/// so the backward needs no second GEMM to recompute it (the fused [`linear`] recomputes `z`,
/// which suits inference: nothing extra stays alive).
struct Gelu(Activation);

impl candle_core::CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "lepton-gelu"
    }

    fn cpu_fwd(&self, zs: &CpuStorage, zl: &Layout) -> Result<(CpuStorage, Shape)> {
        let z = slice(zs, zl, "z")?;
        let n = zl.shape().elem_count();
        if !zl.is_contiguous() {
            candle_core::bail!("gelu kernel: z must be contiguous");
        }
        let mut y = z[..n].to_vec();
        y.par_chunks_mut(CHUNK).for_each(|c| self.0.apply(c));
        Ok((CpuStorage::F32(y), zl.shape().clone()))
    }

    fn bwd(&self, z: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(z.apply_op2_no_bwd(
            &dy.contiguous()?,
            &GeluBackward(self.0),
        )?))
    }
}

/// `act(x·wᵀ + b)` for training: the GEMM (with the bias) and the activation as two ops, so
/// that a GELU's backward reads the kept pre-activation instead of recomputing it. Same values
/// as [`linear`]; ReLU and identity stay fused (their backward needs only the output).
pub fn linear_train(x: &Tensor, w: &Tensor, b: Option<&Tensor>, act: Activation) -> Result<Tensor> {
    match act {
        Activation::GeluErf | Activation::GeluTanh
            if x.dtype() == DType::F32 && x.device().is_cpu() =>
        {
            linear(x, w, b, Activation::Identity)?
                .contiguous()?
                .apply_op1(Gelu(act))
        }
        _ => linear(x, w, b, act),
    }
}

impl CustomOp2 for GeluBackward {
    fn name(&self) -> &'static str {
        "lepton-gelu-backward"
    }

    fn cpu_fwd(
        &self,
        zs: &CpuStorage,
        zl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = zl.shape().elem_count();
        let (z, g) = (&slice(zs, zl, "z")?[..n], &slice(gs, gl, "dy")?[..n]);
        let mut dz = vec![0f32; n];
        let erf = self.0 == Activation::GeluErf;
        dz.par_chunks_mut(CHUNK)
            .zip(z.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
            .for_each(|(d, (z, g))| {
                if erf {
                    math::gelu_erf_backward(d, z, g);
                } else {
                    math::gelu_tanh_backward(d, z, g);
                }
            });
        Ok((CpuStorage::F32(dz), zl.shape().clone()))
    }
}

/// `act(x·wᵀ + b)` for `x: [..., in]`, `w: [out, in]` (candle's and PyTorch's `Linear` layout,
/// any strides), `b: [out]`. Returns `[..., out]`. f32 tensors run the fused kernel; others
/// run plain candle ops.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, act: Activation) -> Result<Tensor> {
    if x.dtype() != DType::F32 || !x.device().is_cpu() {
        return linear_reference(x, w, b, act);
    }
    let zeros;
    let b = match b {
        Some(b) => b.contiguous()?,
        None => {
            zeros = Tensor::zeros(w.dim(0)?, DType::F32, w.device())?;
            zeros
        }
    };
    x.contiguous()?.apply_op3(w, &b, Linear(act))
}

/// `act(x·wᵀ + b)` by plain candle ops: the reference for the fused kernel.
pub fn linear_reference(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    act: Activation,
) -> Result<Tensor> {
    let y = x.broadcast_matmul(&w.t()?)?;
    let y = match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    act.candle(&y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{max_diff, weighted_grads};
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_forward_and_backward() {
        let dev = Device::Cpu;
        for (shape, n, act, bias) in [
            (vec![7, 5], 3, Activation::Identity, true),
            (vec![2, 9, 13], 11, Activation::GeluErf, true),
            (vec![1, 31], 17, Activation::GeluTanh, false),
            (vec![3, 4, 6], 5, Activation::Relu, true),
            (vec![257, 64], 130, Activation::GeluTanh, true),
        ] {
            let k = *shape.last().unwrap();
            let x = Var::randn(0f32, 1.0, shape.as_slice(), &dev).unwrap();
            let w = Var::randn(0f32, 0.5, (n, k), &dev).unwrap();
            let b = Var::randn(0f32, 0.5, n, &dev).unwrap();
            let bias = bias.then_some(b.as_tensor());
            let ours = linear(&x, &w, bias, act).unwrap();
            let theirs = linear_reference(&x, &w, bias, act).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            assert!(max_diff(&ours, &theirs) < 1e-4, "{act:?} forward");
            let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
            let go = weighted_grads(&ours, &r);
            let gt = weighted_grads(&theirs, &r);
            let mut vars = vec![x.as_tensor(), w.as_tensor()];
            vars.extend(bias);
            for v in vars {
                let (a, b) = (go.get(v).unwrap(), gt.get(v).unwrap());
                assert!(max_diff(a, b) < 1e-3, "{act:?} gradient");
            }
        }
    }

    #[test]
    fn the_training_split_equals_the_fused_op() {
        let dev = Device::Cpu;
        for act in [Activation::GeluErf, Activation::GeluTanh, Activation::Relu] {
            let x = Var::randn(0f32, 1.0, (2, 9, 13), &dev).unwrap();
            let w = Var::randn(0f32, 0.5, (11, 13), &dev).unwrap();
            let b = Var::randn(0f32, 0.5, 11, &dev).unwrap();
            let fused = linear(&x, &w, Some(&b), act).unwrap();
            let split = linear_train(&x, &w, Some(&b), act).unwrap();
            assert!(max_diff(&fused, &split) < 1e-6, "{act:?} forward");
            let r = Tensor::randn(0f32, 1.0, fused.dims(), &dev).unwrap();
            let (gf, gs) = (weighted_grads(&fused, &r), weighted_grads(&split, &r));
            for v in [&x, &w, &b] {
                assert!(
                    max_diff(gf.get(v).unwrap(), gs.get(v).unwrap()) < 1e-5,
                    "{act:?} gradient"
                );
            }
        }
    }

    #[test]
    fn accepts_a_transposed_weight_view() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (6, 8), &dev).unwrap();
        let w_in_out = Tensor::randn(0f32, 1.0, (8, 5), &dev).unwrap();
        let ours = linear(&x, &w_in_out.t().unwrap(), None, Activation::Identity).unwrap();
        let theirs = x.matmul(&w_in_out).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-5);
    }

    #[test]
    fn f64_takes_the_candle_path() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1.0, (3, 4), &dev).unwrap();
        let w = Tensor::randn(0f64, 1.0, (2, 4), &dev).unwrap();
        let y = linear(&x, &w, None, Activation::GeluErf).unwrap();
        assert_eq!(y.dtype(), DType::F64);
        assert_eq!(y.dims(), [3, 2]);
    }
}
