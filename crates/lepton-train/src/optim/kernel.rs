//! The fused in-place parameter update, as a candle [`InplaceOp2`].
//!
//! `apply(param, grad, f)` locks the parameter's storage for writing and the gradient's for
//! reading and calls `f(param_slice, grad_slice)` on their contiguous `f32` data, with no copy.
//! [`par_zip`] runs an element-wise update in parallel chunks for large tensors; chunks are
//! independent, so the result does not depend on the thread count.

use std::cell::RefCell;

use candle_core::{CpuStorage, InplaceOp2, Layout, Storage, Tensor};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Tensors with at least this many elements are updated by several rayon threads.
pub const PARALLEL_MIN: usize = 1 << 15;
const CHUNK: usize = 1 << 13;

struct HostUpdate<F> {
    f: RefCell<F>,
}

fn slice_of<'a>(s: &'a [f32], l: &Layout) -> candle_core::Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => candle_core::bail!("optimizer update: tensor is not contiguous"),
    }
}

impl<F: FnMut(&mut [f32], &[f32])> InplaceOp2 for HostUpdate<F> {
    fn name(&self) -> &'static str {
        "lepton-optimizer-update"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        match (s1, s2) {
            (CpuStorage::F32(p), CpuStorage::F32(g)) => {
                let g = slice_of(g, l2)?;
                let (a, b) = l1.contiguous_offsets().ok_or_else(|| {
                    candle_core::Error::Msg("optimizer update: parameter is not contiguous".into())
                })?;
                let p = &mut p[a..b];
                if p.len() != g.len() {
                    candle_core::bail!(
                        "optimizer update: parameter has {} elements, gradient {}",
                        p.len(),
                        g.len()
                    );
                }
                (self.f.borrow_mut())(p, g);
                Ok(())
            }
            _ => candle_core::bail!(
                "optimizer update: parameters and gradients must be f32 on the CPU"
            ),
        }
    }
}

/// Run `f(param, grad)` in place on the parameter's storage.
pub fn apply(
    name: &str,
    param: &Tensor,
    grad: &Tensor,
    f: impl FnMut(&mut [f32], &[f32]),
) -> Result<()> {
    let grad = grad.contiguous().map_err(|source| Error::Tensor {
        op: format!("gradient of `{name}`"),
        source,
    })?;
    param
        .inplace_op2(&grad, &HostUpdate { f: RefCell::new(f) })
        .map_err(|source| Error::Tensor {
            op: format!("updating parameter `{name}`"),
            source,
        })
}

/// Sum of squares of a tensor's `f32` elements, read in place (f64 accumulation, fixed order).
pub fn sum_squares(t: &Tensor) -> Result<f64> {
    let t = t.contiguous().map_err(|source| Error::Tensor {
        op: "gradient norm".into(),
        source,
    })?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => {
            let s = slice_of(v, layout).map_err(|source| Error::Tensor {
                op: "gradient norm".into(),
                source,
            })?;
            Ok(s.chunks(CHUNK)
                .map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
                .sum())
        }
        _ => Err(Error::Invalid(
            "gradient norm: gradients must be f32 on the CPU".into(),
        )),
    }
}

/// One chunk of work: parameter, gradient and two state buffers.
type Job<'a> = (&'a mut [f32], &'a [f32], &'a mut [f32], &'a mut [f32]);

/// Apply `f(p_chunk, g_chunk, a_chunk, b_chunk)` over aligned chunks of four slices, in parallel
/// for large tensors. `a` and `b` are optimizer state buffers (pass empty slices when unused).
pub fn par_zip(
    p: &mut [f32],
    g: &[f32],
    a: &mut [f32],
    b: &mut [f32],
    f: impl Fn(&mut [f32], &[f32], &mut [f32], &mut [f32]) + Sync,
) {
    let n = p.len();
    let chunk = if n >= PARALLEL_MIN { CHUNK } else { n.max(1) };
    let mut a_parts = a.chunks_mut(chunk);
    let mut b_parts = b.chunks_mut(chunk);
    let jobs: Vec<Job<'_>> = p
        .chunks_mut(chunk)
        .zip(g.chunks(chunk))
        .map(|(pc, gc)| {
            (
                pc,
                gc,
                a_parts.next().unwrap_or_default(),
                b_parts.next().unwrap_or_default(),
            )
        })
        .collect();
    if jobs.len() > 1 {
        jobs.into_par_iter()
            .for_each(|(pc, gc, ac, bc)| f(pc, gc, ac, bc));
    } else {
        for (pc, gc, ac, bc) in jobs {
            f(pc, gc, ac, bc);
        }
    }
}
