//! ReLU as one custom op whose backward is one fused pass `dx = dy·[y > 0]` (candle's relu backward
//! builds a comparison tensor, converts and multiplies it: three passes and two allocations).
//! The gradient at 0 is 0, as in PyTorch.

use super::buffer::par_chunks;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use super::blas::Elem;

/// Elements per parallel task.
const CHUNK: usize = 32 * 1024;

fn contiguous<'a, T>(data: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("relu kernel needs contiguous inputs"),
    }
}

fn relu_fwd<T: Elem>(x: &[T]) -> Vec<T> {
    par_chunks(x.len(), CHUNK, 1, |i, ys| {
        for (y, &x) in ys.iter_mut().zip(&x[i * CHUNK..]) {
            *y = if x > T::ZERO { x } else { T::ZERO };
        }
    })
}

fn relu_bwd<T: Elem>(y: &[T], dy: &[T]) -> Vec<T> {
    par_chunks(y.len(), CHUNK, 1, |i, o| {
        for ((o, &y), &g) in o.iter_mut().zip(&y[i * CHUNK..]).zip(&dy[i * CHUNK..]) {
            *o = if y > T::ZERO { g } else { T::ZERO };
        }
    })
}

struct Relu;
struct ReluBackward;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "lepton-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(x) => CpuStorage::F32(relu_fwd(contiguous(x, l)?)),
            CpuStorage::F64(x) => CpuStorage::F64(relu_fwd(contiguous(x, l)?)),
            _ => candle_core::bail!("relu kernel: only f32 and f64 are supported"),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(relu_backward(y, dy)?))
    }
}

impl CustomOp2 for ReluBackward {
    fn name(&self) -> &'static str {
        "lepton-relu-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match (s1, s2) {
            (CpuStorage::F32(y), CpuStorage::F32(g)) => {
                CpuStorage::F32(relu_bwd(contiguous(y, l1)?, contiguous(g, l2)?))
            }
            (CpuStorage::F64(y), CpuStorage::F64(g)) => {
                CpuStorage::F64(relu_bwd(contiguous(y, l1)?, contiguous(g, l2)?))
            }
            _ => candle_core::bail!("relu backward: mismatched dtypes"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// `dy·[y > 0]`: the gradient through a ReLU whose output is `y`.
pub(crate) fn relu_backward(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    y.contiguous()?
        .apply_op2_no_bwd(&dy.contiguous()?, &ReluBackward)
}

/// `max(x, 0)` for f32/f64 tensors (other dtypes use candle's relu).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    match x.dtype() {
        candle_core::DType::F32 | candle_core::DType::F64 => x.contiguous()?.apply_op1(Relu),
        _ => x.relu(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::weighted_grads;
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_and_has_zero_gradient_at_zero() {
        let x = Var::new(&[[-1.0f32, 0.0, 2.0], [3.0, -0.5, 0.25]], &Device::Cpu).unwrap();
        let y = relu(&x).unwrap();
        assert_eq!(
            y.to_vec2::<f32>().unwrap(),
            x.relu().unwrap().to_vec2::<f32>().unwrap()
        );
        let r = Tensor::new(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::Cpu).unwrap();
        let g = weighted_grads(&y, &r);
        assert_eq!(
            g.get(&x).unwrap().to_vec2::<f32>().unwrap(),
            vec![vec![0.0, 0.0, 3.0], vec![4.0, 0.0, 6.0]]
        );
        // Large enough to be split across threads.
        let x = Tensor::randn(0f32, 1.0, (3, 70_001), &Device::Cpu).unwrap();
        assert_eq!(
            relu(&x).unwrap().to_vec2::<f32>().unwrap(),
            x.relu().unwrap().to_vec2::<f32>().unwrap()
        );
    }
}
