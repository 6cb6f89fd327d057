//! The adapted linear of `lora.rs` as one candle op over `(x, A, B)`: the frozen base
//! matmul, the low-rank update and (in the backward) the input gradient and both adapter
//! gradients, each a multi-threaded GEMM on plain rows. The composition it replaces took eight
//! candle nodes per adapted linear (two single-threaded matmuls with transposed operands, a
//! scale, an add, the dropout product), each a fresh `[N, out]` or `[N, in]` tensor, and their
//! backward as many again.
//!
//! # Maths and shapes
//! ```text
//! x: [N, in]   A: [r, in]   B: [out, r]   m: [N, in] the dropout mask (1/keep or 0; all ones
//!                                                     without dropout)   s = α / r
//! forward   u = (x⊙m)·Aᵀ              [N, r]
//!           y = x·Wᵀ + (u·Bᵀ)·s       [N, out]
//! backward  g  = (dy·s)·B             [N, r]
//!           dB = (uᵀ·(dy·s))ᵀ         [out, r]
//!           dA = ((x⊙m)ᵀ·g)ᵀ          [r, in]
//!           dx = dy·W + (g·A)⊙m       [N, in]   (skipped when x needs no gradient: the first
//!                                               layer's input is the embedding, a constant)
//! ```
//! The composition's products in its order (the forward bit-identical to it: tested, with the
//! backward to rounding and by finite differences).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use lepton_nn::kernels::{matmul, Mat};
use rayon::prelude::*;

use crate::fused::{values, with_values};
use crate::weight::FrozenWeight;

/// The op: the frozen base, the scale and the dropout mask of one forward.
pub(crate) struct LoraOp {
    pub base: FrozenWeight,
    pub scale: f32,
    /// `x.elem_count()` values, or `None` (no dropout).
    pub mask: Option<Arc<Vec<f32>>>,
    /// Whether `x` needs a gradient (decided when the op is built, from `x.track_op()`).
    pub x_grad: bool,
}

const PAR: Parallelism = Parallelism::Rayon(0);

impl LoraOp {
    /// `x⊙m` (a copy only with a mask).
    fn masked<'a>(&self, x: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        match &self.mask {
            Some(m) => x.iter().zip(m.iter()).map(|(x, m)| x * m).collect(),
            None => std::borrow::Cow::Borrowed(x),
        }
    }

    /// The forward on plain rows: `x` (`N × in`), `A` (`r × in`), `B` (`out × r`) → `N × out`.
    /// The composition's operations in its order: `y + ((x⊙m)·Aᵀ·Bᵀ)·s`.
    pub(crate) fn forward_values(
        &self,
        x: &[f32],
        a: &[f32],
        b: &[f32],
        r: usize,
        out: usize,
    ) -> Result<Vec<f32>> {
        let mut y = self.base.forward_rows(x)?;
        self.add_low(x, a, b, r, out, &mut y);
        Ok(y)
    }

    /// `y += ((x⊙m)·Aᵀ·Bᵀ)·s`: the adapter's part of [`LoraOp::forward_values`], for a `y`
    /// (`N × out`) that already holds the base's output.
    pub(crate) fn add_low(
        &self,
        x: &[f32],
        a: &[f32],
        b: &[f32],
        r: usize,
        out: usize,
        y: &mut [f32],
    ) {
        let k = a.len() / r.max(1);
        let n_rows = x.len() / k.max(1);
        let u = self.low(&self.masked(x), a, r, k);
        let mut low = vec![0f32; n_rows * out];
        matmul(
            n_rows,
            out,
            r,
            &mut low,
            Mat::rows(&u, r),
            Mat::rows_t(b, r),
            false,
            PAR,
        );
        let s = self.scale;
        y.par_chunks_mut(16_384)
            .zip(low.par_chunks(16_384))
            .for_each(|(y, l)| y.iter_mut().zip(l).for_each(|(y, l)| *y += l * s));
    }

    /// The backward on plain rows: `(dx, dA, dB)` for the output gradient `dy` (`N × out`);
    /// `dx` only when the op was built with `x_grad`. The composition's products: `dlow = dy·s`,
    /// `g = dlow·B`, `dBᵀ = uᵀ·dlow`, `dAᵀ = (x⊙m)ᵀ·g`, `dx = dy·W + (g·A)⊙m`.
    #[allow(clippy::type_complexity)]
    pub(crate) fn backward_values(
        &self,
        xv: &[f32],
        av: &[f32],
        bv: &[f32],
        dyv: &[f32],
        r: usize,
        out: usize,
    ) -> Result<(Option<Vec<f32>>, Vec<f32>, Vec<f32>)> {
        let (ga, da, db) = self.low_grads(xv, av, bv, dyv, r, out, self.x_grad);
        let dx = match ga {
            Some(ga) => {
                let mut dx = self.base.input_grad_rows(dyv)?;
                dx.iter_mut().zip(&ga).for_each(|(d, v)| *d += v);
                Some(dx)
            }
            None => None,
        };
        Ok((dx, da, db))
    }

    /// The adapter's part of [`LoraOp::backward_values`]: `((g·A)⊙m, dA, dB)`, the first only
    /// with `want_dx` (the caller adds the base's `dy·W`).
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    pub(crate) fn low_grads(
        &self,
        xv: &[f32],
        av: &[f32],
        bv: &[f32],
        dyv: &[f32],
        r: usize,
        out: usize,
        want_dx: bool,
    ) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
        let k = av.len() / r.max(1);
        let n_rows = xv.len() / k;
        let xd = self.masked(xv);
        let u = self.low(&xd, av, r, k);
        let s = self.scale;
        let dlow: Vec<f32> = dyv.par_iter().map(|v| v * s).collect();
        let mut dbt = vec![0f32; r * out];
        matmul(
            r,
            out,
            n_rows,
            &mut dbt,
            Mat::rows_t(&u, r),
            Mat::rows(&dlow, out),
            false,
            PAR,
        );
        let mut g = vec![0f32; n_rows * r];
        matmul(
            n_rows,
            r,
            out,
            &mut g,
            Mat::rows(&dlow, out),
            Mat::rows(bv, r),
            false,
            PAR,
        );
        let mut dat = vec![0f32; k * r];
        matmul(
            k,
            r,
            n_rows,
            &mut dat,
            Mat::rows_t(&xd, k),
            Mat::rows(&g, r),
            false,
            PAR,
        );
        let ga = if want_dx {
            let mut ga = vec![0f32; n_rows * k];
            matmul(
                n_rows,
                k,
                r,
                &mut ga,
                Mat::rows(&g, r),
                Mat::rows(av, k),
                false,
                PAR,
            );
            if let Some(m) = &self.mask {
                ga.iter_mut().zip(m.iter()).for_each(|(v, m)| *v *= m);
            }
            Some(ga)
        } else {
            None
        };
        (ga, transpose(&dat, k, r), transpose(&dbt, r, out))
    }

    /// `(x⊙m)·Aᵀ`: `[N, r]`.
    fn low(&self, xd: &[f32], a: &[f32], r: usize, k: usize) -> Vec<f32> {
        let n_rows = xd.len() / k.max(1);
        let mut u = vec![0f32; n_rows * r];
        matmul(
            n_rows,
            r,
            k,
            &mut u,
            Mat::rows(xd, k),
            Mat::rows_t(a, k),
            false,
            PAR,
        );
        u
    }
}

/// The `cols × rows` transpose of a row-major `rows × cols` matrix.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = m[i * cols + j];
        }
    }
    t
}

/// `(r, in, out)` of `A: [r, in]`, `B: [out, r]` checked against the base `[out, in]`.
fn adapter_dims(base: &FrozenWeight, al: &Layout, bl: &Layout) -> Result<(usize, usize, usize)> {
    let (out, k) = base.dims();
    match (al.dims(), bl.dims()) {
        (&[r, ka], &[ob, rb]) if ka == k && ob == out && rb == r => Ok((r, k, out)),
        (a, b) => candle_core::bail!(
            "lora linear: A {a:?} and B {b:?} do not fit the base [{out}, {k}] (want [r, {k}] and [{out}, r])"
        ),
    }
}

impl CustomOp3 for LoraOp {
    fn name(&self) -> &'static str {
        "lepton-lora-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        as_: &CpuStorage,
        al: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (r, k, out) = adapter_dims(&self.base, al, bl)?;
        let x = values(xs, xl, "lora linear")?;
        if xl.dims().last() != Some(&k) {
            candle_core::bail!("lora linear: x {:?} does not end in {k}", xl.dims());
        }
        let (a, b) = (
            values(as_, al, "lora linear")?,
            values(bs, bl, "lora linear")?,
        );
        let y = self.forward_values(x, a, b, r, out)?;
        let mut dims = xl.dims().to_vec();
        *dims.last_mut().expect("x has a last dimension") = out;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (r, k) = a.dims2()?;
        let out = b.dim(0)?;
        let dev = x.device();
        let (dx, da, db) = with_values(x, "lora linear", |xv| {
            with_values(a, "lora linear", |av| {
                with_values(b, "lora linear", |bv| {
                    with_values(dy, "lora linear", |dyv| {
                        self.backward_values(xv, av, bv, dyv, r, out)
                    })
                })
            })
        })?;
        let dx = dx
            .map(|v| Tensor::from_vec(v, x.shape(), dev))
            .transpose()?;
        Ok((
            dx,
            Some(Tensor::from_vec(da, (r, k), dev)?),
            Some(Tensor::from_vec(db, (out, r), dev)?),
        ))
    }
}

/// `x·Wᵀ + s·(x⊙m)·Aᵀ·Bᵀ` as one op (see the module docs); `x: [.., in]` f32 on the CPU.
pub(crate) fn lora_linear(
    x: &Tensor,
    base: &FrozenWeight,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    mask: Option<Vec<f32>>,
) -> Result<Tensor> {
    if x.dtype() != DType::F32 || !x.device().is_cpu() {
        candle_core::bail!("lora linear: x must be f32 on the CPU");
    }
    if let Some(m) = &mask {
        if m.len() != x.elem_count() {
            candle_core::bail!(
                "lora linear: a dropout mask of {} for x {:?}",
                m.len(),
                x.dims()
            );
        }
    }
    let op = LoraOp {
        base: base.clone(),
        scale: scale as f32,
        mask: mask.map(Arc::new),
        x_grad: x.track_op(),
    };
    x.contiguous()?
        .apply_op3(&a.contiguous()?, &b.contiguous()?, op)
}
