//! One recurrent layer-direction (LSTM, GRU or Elman RNN) over the whole sequence as one custom op
//! with its own backward through time.
//!
//! # Computation
//! [`recurrent`] takes the input projections of all steps `xp = x·W_ihᵀ + b_ih: [B, T, G*H]`
//! (one GEMM, done by the caller with [`super::linear`], whose backward gives `dx`, `dW_ih` and
//! `db_ih` in one GEMM each from this op's `∂L/∂xp`), then per step one GEMM
//! `h_prev·W_hhᵀ + b_hh` and one pass over the gates writing `h` (and the LSTM's `c`), keeping the
//! gate activations for the backward. The backward walks the steps in reverse: the gates'
//! gradients, one GEMM `[B, G*H] x [G*H, H]` per step for `∂L/∂h_prev`, and at the end one GEMM
//! each for `dW_hh` and `db_hh` over all steps. The plain candle composition (one matmul and
//! about a dozen element-wise ops per step, each a tensor with a backward node) is the reference
//! in `layers/recurrent.rs`.
//!
//! # Shapes
//! `xp: [B, T, G*H]`, `w_hh: [G*H, H]`, `b_hh: [G*H]` -> `hs: [B, T, H]` in time order (the reverse
//! direction runs from step `T - 1` to 0, its final state is `hs[:, 0]`); the initial states are
//! zero. Gates in PyTorch's order (LSTM `i, f, g, o`; GRU `r, z, n`). f32 and f64 on the CPU.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Storage, Tensor, WithDType,
};

pub use super::recurrent_steps::RecurrentCell;
use super::recurrent_steps::{self as steps, Dims, Real};

/// `hs: [B, T, H]` of one layer-direction from the input projections `xp: [B, T, G*H]` (with
/// `b_ih`), `w_hh: [G*H, H]` and `b_hh: [G*H]`; `reverse` runs from the last step to the first.
/// f32 or f64 CPU tensors (see [`recurrent_supported`]).
pub fn recurrent(
    xp: &Tensor,
    w_hh: &Tensor,
    b_hh: &Tensor,
    cell: RecurrentCell,
    reverse: bool,
) -> Result<Tensor> {
    let keep = xp.track_op() || w_hh.track_op() || b_hh.track_op();
    let op = Recurrent {
        cell,
        reverse,
        keep,
        acts: Mutex::new(None),
    };
    xp.contiguous()?.apply_op3_arc(
        &w_hh.contiguous()?,
        &b_hh.contiguous()?,
        Arc::new(Box::new(op)),
    )
}

/// Whether [`recurrent`] runs on tensors of this dtype and device.
pub fn recurrent_supported(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

struct Recurrent {
    cell: RecurrentCell,
    reverse: bool,
    /// Keep the activations for the backward (some input needs a gradient).
    keep: bool,
    /// The activations the forward kept (`[B, T, S]`, see `recurrent_steps.rs`).
    acts: Mutex<Option<Arc<CpuStorage>>>,
}

impl Recurrent {
    /// Check the shapes: `Dims` for `xp: [B, T, G*H]`, `w_hh: [G*H, H]`, `b_hh: [G*H]`.
    fn dims(&self, xp: &[usize], w: &[usize], bias: &[usize]) -> Result<Dims> {
        let g = self.cell.gates();
        let (&[b, t, gh], &[wgh, h]) = (xp, w) else {
            candle_core::bail!(
                "recurrent kernel: xp {xp:?} must be [B, T, G*H], w_hh {w:?} [G*H, H]"
            );
        };
        if gh != g * h || wgh != gh || bias != [gh] {
            candle_core::bail!(
                "recurrent kernel ({:?}, {g} gates): xp {xp:?}, w_hh {w:?}, b_hh {bias:?} do not fit",
                self.cell
            );
        }
        Ok(Dims {
            cell: self.cell,
            reverse: self.reverse,
            b,
            t,
            h,
        })
    }
}

/// The contiguous data of a CPU storage from its layout's offset.
fn data<'a, T: Real>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    if !l.is_contiguous() {
        candle_core::bail!("recurrent kernel: {what} must be contiguous");
    }
    match T::cpu(s) {
        Some(v) => Ok(&v[l.start_offset()..][..l.shape().elem_count()]),
        None => candle_core::bail!("recurrent kernel: {what} has dtype {:?}", s.dtype()),
    }
}

impl CustomOp3 for Recurrent {
    fn name(&self) -> &'static str {
        "lepton-recurrent"
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
        let d = self.dims(xl.dims(), wl.dims(), bl.dims())?;
        let (hs, acts) = match xs.dtype() {
            DType::F32 => {
                let (hs, acts) = steps::forward::<f32>(
                    d,
                    data(xs, xl, "xp")?,
                    data(ws, wl, "w_hh")?,
                    data(bs, bl, "b_hh")?,
                );
                (f32::storage(hs), f32::storage(acts))
            }
            DType::F64 => {
                let (hs, acts) = steps::forward::<f64>(
                    d,
                    data(xs, xl, "xp")?,
                    data(ws, wl, "w_hh")?,
                    data(bs, bl, "b_hh")?,
                );
                (f64::storage(hs), f64::storage(acts))
            }
            dt => candle_core::bail!("recurrent kernel: dtype {dt:?} (f32 or f64 only)"),
        };
        if self.keep {
            *self.acts.lock().expect("recurrent activations lock") = Some(Arc::new(acts));
        }
        Ok((hs, Shape::from((d.b, d.t, d.h))))
    }

    fn bwd(
        &self,
        xp: &Tensor,
        w_hh: &Tensor,
        b_hh: &Tensor,
        hs: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = self.dims(xp.dims(), w_hh.dims(), b_hh.dims())?;
        // Kept whenever an input tracks a gradient, the only case candle calls the backward in.
        let Some(acts) = self
            .acts
            .lock()
            .expect("recurrent activations lock")
            .clone()
        else {
            candle_core::bail!("recurrent kernel backward: the forward kept no activations");
        };
        let dy = dy.contiguous()?;
        let (dys, dyl) = dy.storage_and_layout();
        let (hss, hsl) = hs.storage_and_layout();
        let (ws, wl) = w_hh.storage_and_layout();
        let (Storage::Cpu(dys), Storage::Cpu(hss), Storage::Cpu(ws)) = (&*dys, &*hss, &*ws) else {
            candle_core::bail!("recurrent kernel: CPU tensors only");
        };
        let (dxp, dw, db) = match dys.dtype() {
            DType::F32 => back::<f32>(d, (dys, dyl), (hss, hsl), &acts, (ws, wl))?,
            DType::F64 => back::<f64>(d, (dys, dyl), (hss, hsl), &acts, (ws, wl))?,
            dt => candle_core::bail!("recurrent kernel: dtype {dt:?} (f32 or f64 only)"),
        };
        Ok((Some(dxp), Some(dw), Some(db)))
    }
}

/// `(∂L/∂xp, ∂L/∂w_hh, ∂L/∂b_hh)` from `dy`, the forward's output `hs` and kept `acts`.
fn back<T: Real + WithDType>(
    d: Dims,
    dy: (&CpuStorage, &Layout),
    hs: (&CpuStorage, &Layout),
    acts: &CpuStorage,
    w: (&CpuStorage, &Layout),
) -> Result<(Tensor, Tensor, Tensor)> {
    let Some(acts) = T::cpu(acts) else {
        candle_core::bail!(
            "recurrent kernel: the kept activations have dtype {:?}",
            acts.dtype()
        );
    };
    let (dxp, dw, db) = steps::backward(
        d,
        data::<T>(dy.0, dy.1, "dy")?,
        data::<T>(hs.0, hs.1, "hs")?,
        acts,
        data::<T>(w.0, w.1, "w_hh")?,
    );
    let dev = &Device::Cpu;
    let gh = d.cell.gates() * d.h;
    Ok((
        Tensor::from_vec(dxp, (d.b, d.t, gh), dev)?,
        Tensor::from_vec(dw, (gh, d.h), dev)?,
        Tensor::from_vec(db, gh, dev)?,
    ))
}

#[cfg(test)]
mod tests {
    use candle_core::Var;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Each thread runs its own group of batch rows: outputs and gradients are the same for any
    /// thread count (and so any grouping, uneven ones included) up to the GEMMs' rounding (their
    /// blocking depends on the group's width), and bit for bit for the same thread count.
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let dev = Device::Cpu;
        for cell in [RecurrentCell::Lstm, RecurrentCell::Gru, RecurrentCell::Rnn] {
            let gh = cell.gates() * 6;
            // Seeded, so a failure reproduces.
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cell.gates() as u64);
            let mut var = |shape: &[usize], scale: f32| {
                let v = (0..shape.iter().product::<usize>())
                    .map(|_| rng.random_range(-scale..scale))
                    .collect::<Vec<f32>>();
                Var::from_vec(v, shape, &dev).unwrap()
            };
            let xp = var(&[5, 7, gh], 1.7);
            let w = var(&[gh, 6], 0.9);
            let b = var(&[gh], 0.9);
            let run = |threads: usize, reverse: bool| -> Vec<Vec<f32>> {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let y = recurrent(&xp, &w, &b, cell, reverse).unwrap();
                    let g = y.sin().unwrap().sum_all().unwrap().backward().unwrap();
                    [
                        &y,
                        g.get(&xp).unwrap(),
                        g.get(&w).unwrap(),
                        g.get(&b).unwrap(),
                    ]
                    .iter()
                    .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                    .collect()
                })
            };
            for reverse in [false, true] {
                let one = run(1, reverse);
                for threads in [2, 3, 8] {
                    let many = run(threads, reverse);
                    assert_eq!(many, run(threads, reverse), "{cell:?}: {threads} threads");
                    for (a, b) in one.iter().flatten().zip(many.iter().flatten()) {
                        // Relative above 1: gradients summed over 35 steps reach tens.
                        assert!(
                            (a - b).abs() < 1e-5 * a.abs().max(1.0),
                            "{cell:?}: {threads} threads: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}
