//! `y = x·Wᵀ` for a frozen weight `W [out, in]`: a custom op whose backward returns only the
//! input gradient `dx = dy·W`. A plain candle matmul would also compute `dW = dyᵀ·x` for every
//! base linear on every step (candle's backward computes both operands' gradients whether or not
//! the weight is a variable): as many FLOPs again as the input gradient, for nothing.
//!
//! # Shapes
//! `x: [.., in]` (any leading dimensions, contiguous), `W: [out, in]` → `y: [.., out]`.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use lepton_nn::kernels::{matmul, Mat};

/// The op; holds the frozen weight.
struct Frozen {
    w: Tensor,
}

impl CustomOp1 for Frozen {
    fn name(&self) -> &'static str {
        "lepton-frozen-linear"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(x) = xs else {
            candle_core::bail!("frozen linear: x must be f32");
        };
        let (ws, wl) = self.w.storage_and_layout();
        let candle_core::Storage::Cpu(CpuStorage::F32(w)) = &*ws else {
            candle_core::bail!("frozen linear: the weight must be f32 on the CPU");
        };
        let (Some((x0, x1)), Some((w0, w1))) = (xl.contiguous_offsets(), wl.contiguous_offsets())
        else {
            candle_core::bail!("frozen linear: x and the weight must be contiguous");
        };
        let &[n, k] = wl.dims() else {
            candle_core::bail!(
                "frozen linear: the weight must be [out, in], got {:?}",
                wl.dims()
            );
        };
        let dims = xl.dims();
        if dims.last() != Some(&k) {
            candle_core::bail!("frozen linear: x {dims:?} does not end in the weight's {k} inputs");
        }
        let y = matmul_xwt(&x[x0..x1], &w[w0..w1], n, k);
        let mut out = dims.to_vec();
        *out.last_mut().expect("x has a last dimension") = n;
        Ok((CpuStorage::F32(y), Shape::from(out)))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let n = self.w.dim(0)?;
        let dx = dy.reshape(((), n))?.matmul(&self.w)?;
        Ok(Some(dx.reshape(x.shape())?))
    }
}

/// `y = x·Wᵀ` for the `m = x.len() / k` rows of `x` (`m × k`) and `W` (`n × k`), both
/// row-major: `m × n`, on `gemm` over rayon's threads.
pub(crate) fn matmul_xwt(x: &[f32], w: &[f32], n: usize, k: usize) -> Vec<f32> {
    let m = x.len() / k.max(1);
    let mut y = vec![0f32; m * n];
    let (x, wt) = (Mat::rows(x, k), Mat::rows_t(w, k));
    matmul(m, n, k, &mut y, x, wt, false, Parallelism::Rayon(0));
    y
}

/// `dx = dy·W` for the `m = dy.len() / n` rows of `dy` (`m × n`) and `W` (`n × k`), both
/// row-major: `m × k`.
pub(crate) fn matmul_dyw(dy: &[f32], w: &[f32], n: usize, k: usize) -> Vec<f32> {
    let m = dy.len() / n.max(1);
    let mut dx = vec![0f32; m * k];
    let (dy, w) = (Mat::rows(dy, n), Mat::rows(w, k));
    matmul(m, k, n, &mut dx, dy, w, false, Parallelism::Rayon(0));
    dx
}

/// `x·Wᵀ` with a gradient for `x` only (see the module docs). Other dtypes or devices take a
/// plain matmul (`W` detached).
pub fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 || !x.device().is_cpu() {
        let k = w.dim(1)?;
        let mut out = x.dims().to_vec();
        *out.last_mut().expect("x has a last dimension") = w.dim(0)?;
        return x.reshape(((), k))?.matmul(&w.detach().t()?)?.reshape(out);
    }
    x.contiguous()?.apply_op1(Frozen { w: w.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_equals_matmul_and_backward_gives_only_the_input_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_vec(
            (0..2 * 3 * 5).map(|v| (v as f32 * 0.37).sin()).collect(),
            (2, 3, 5),
            &dev,
        )?;
        let w = Tensor::from_vec(
            (0..4 * 5)
                .map(|v| (v as f32 * 0.11).cos())
                .collect::<Vec<f32>>(),
            (4, 5),
            &dev,
        )?;
        let y = frozen_linear(x.as_tensor(), &w)?;
        let want = x.as_tensor().broadcast_matmul(&w.t()?)?;
        let diff = (&y - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "forward differs by {diff}");
        // d(sum(y ⊙ c))/dx = c·W for a fixed c.
        let c = Tensor::from_vec(
            (0..2 * 3 * 4)
                .map(|v| v as f32 / 7.0 - 1.0)
                .collect::<Vec<f32>>(),
            (2, 3, 4),
            &dev,
        )?;
        let grads = (y * &c)?.sum_all()?.backward()?;
        let dx = grads.get(x.as_tensor()).expect("x has a gradient");
        let want = c.broadcast_matmul(&w)?;
        let diff = (dx - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "input gradient differs by {diff}");
        assert!(grads.get(&w).is_none(), "the frozen weight got a gradient");
        Ok(())
    }
}
