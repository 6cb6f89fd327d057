//! A linear layer for inference whose weights are packed once, at load time, into the panels the
//! `gemm` crate's microkernels read, so a forward pass is only microkernel calls. `gemm` itself
//! makes the weights its left operand for `y = x·Wᵀ` and re-packs them on every call once there
//! are more than a few rows of `x`: 13 % of a GPT-2 forward at 128 tokens.
//!
//! Layout: output features in panels of `MR` (64 with AVX-512, 16 with AVX2), each panel stored
//! `[in][MR]` (zero-padded past `out`), so one microkernel step loads `MR` contiguous weights and
//! broadcasts one element from each of `NR = 6` rows of `x`, which is read in place (element
//! `(k, token)` at `token·in + k`). Each rayon task owns one panel: it writes the bias into its
//! output columns, accumulates `KC`-deep blocks of the panel (which stay in cache while every
//! token passes over them) and applies the activation to its columns while they are still hot.
//! CPUs without AVX2+FMA (and non-x86 targets) keep the weights as a tensor and run [`linear`].

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::linear::{linear, Activation};

/// Depth of one block of a panel: `64·KC` floats (64 KiB) stay in L1/L2 for all tokens.
const KC: usize = 256;
/// Tokens per block, so that a block's rows of `x` (`TB·KC` floats) stay in L2 as well.
const TB: usize = 192;
/// Columns of `x` (tokens) per microkernel call; both instruction sets have 6.
const NR: usize = 6;

/// `gemm_common::microkernel::MicroKernelFn<f32>`: `(m, n, k, dst, lhs, rhs, dst_cs, dst_rs,
/// lhs_cs, rhs_rs, rhs_cs, alpha, beta, alpha_status, conj_dst, conj_lhs, conj_rhs, next_lhs)`
/// computes `dst = beta·lhs·rhs` (status 0) or `dst += beta·lhs·rhs` (status 1) for one
/// `m ≤ MR` by `n` tile; `lhs` rows beyond `m` are read (so panels are padded) but not stored.
///
/// # Safety
/// The caller must guarantee that the CPU has the kernel's instruction set (see `detect`), that
/// `lhs` points to `k` steps of `MR` readable floats (column stride `lhs_cs`), that `rhs` points to
/// `k × n` readable floats with the given strides, and that `dst` points to `m × n` writable floats
/// with strides `dst_cs`, `dst_rs` that no other thread touches during the call (and that are
/// initialised when `alpha_status` is 1).
type Ukr = unsafe fn(
    usize,
    usize,
    usize,
    *mut f32,
    *const f32,
    *const f32,
    isize,
    isize,
    isize,
    isize,
    isize,
    f32,
    f32,
    u8,
    bool,
    bool,
    bool,
    *const f32,
);

/// The microkernels of one instruction set, for a full-height panel and 1..=6 tokens.
struct Isa {
    mr: usize,
    ukr: [Ukr; NR],
}

#[cfg(target_arch = "x86_64")]
mod isa {
    use super::{Isa, NR};
    use gemm_f32::microkernel::{avx512f::f32 as v4, fma::f32 as v3};

    const _: () = assert!(v4::NR == NR && v3::NR == NR);

    pub static AVX512: Isa = Isa {
        mr: v4::MR_DIV_N * 16,
        ukr: v4::UKR[v4::MR_DIV_N - 1],
    };
    pub static AVX2: Isa = Isa {
        mr: v3::MR_DIV_N * 8,
        ukr: v3::UKR[v3::MR_DIV_N - 1],
    };
}

/// The best instruction set this CPU runs, if any.
fn detect() -> Option<&'static Isa> {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return Some(&isa::AVX512);
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Some(&isa::AVX2);
        }
    }
    None
}

enum Weights {
    /// Panels of `isa.mr` output features, `[in][mr]` each; the data starts at `offset`
    /// (64-byte aligned).
    Packed {
        isa: &'static Isa,
        data: Vec<f32>,
        offset: usize,
    },
    /// The `[out, in]` tensor, for [`linear`].
    Plain(Tensor),
}

/// `act(x·Wᵀ + b)` with `W` packed at construction (inference only: no gradients).
pub struct PackedLinear {
    in_dim: usize,
    out_dim: usize,
    bias: Tensor,
    weights: Weights,
}

impl std::fmt::Debug for PackedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedLinear")
            .field("in_dim", &self.in_dim)
            .field("out_dim", &self.out_dim)
            .field("packed", &matches!(self.weights, Weights::Packed { .. }))
            .finish()
    }
}

impl PackedLinear {
    /// Pack `w: [out, in]` (any strides, any float dtype; converted to f32) and `b: [out]`.
    pub fn new(w: &Tensor, b: Option<&Tensor>) -> Result<Self> {
        Self::with_isa(w, b, detect())
    }

    fn with_isa(w: &Tensor, b: Option<&Tensor>, isa: Option<&'static Isa>) -> Result<Self> {
        let (out_dim, in_dim) = w.dims2()?;
        let w = w.to_dtype(DType::F32)?;
        let bias = match b {
            Some(b) if b.dims() == [out_dim] => b.to_dtype(DType::F32)?.contiguous()?,
            Some(b) => candle_core::bail!(
                "packed linear: bias {:?} does not fit weights {:?}",
                b.dims(),
                w.dims()
            ),
            None => Tensor::zeros(out_dim, DType::F32, w.device())?,
        };
        let weights = match isa {
            Some(isa) if w.device().is_cpu() => {
                let mr = isa.mr;
                // wᵀ row-major: row k holds every output feature's weight k.
                let wt = w.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
                let panels = out_dim.div_ceil(mr);
                let len = panels * in_dim * mr;
                let mut data = vec![0f32; len + 16];
                let offset = data.as_ptr().align_offset(64).min(16);
                for p in 0..panels {
                    let (o0, m) = (p * mr, mr.min(out_dim - p * mr));
                    let panel = &mut data[offset + p * in_dim * mr..][..in_dim * mr];
                    for (k, dst) in panel.chunks_exact_mut(mr).enumerate() {
                        dst[..m].copy_from_slice(&wt[k * out_dim + o0..][..m]);
                    }
                }
                Weights::Packed { isa, data, offset }
            }
            _ => Weights::Plain(w),
        };
        Ok(Self {
            in_dim,
            out_dim,
            bias,
            weights,
        })
    }

    /// Input features.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `act(x·Wᵀ + b)` for `x: [..., in]`; returns `[..., out]`. f32 CPU tensors run the packed
    /// kernel; other inputs (and CPUs without AVX2) run [`linear`] on the kept weights.
    pub fn forward(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        if x.dims().last() != Some(&self.in_dim) {
            candle_core::bail!(
                "packed linear: input {:?} does not end in {} features",
                x.dims(),
                self.in_dim
            );
        }
        match &self.weights {
            Weights::Packed { isa, data, offset }
                if x.dtype() == DType::F32 && x.device().is_cpu() =>
            {
                let panels =
                    &data[*offset..][..self.out_dim.div_ceil(isa.mr) * self.in_dim * isa.mr];
                x.contiguous()?.apply_op1_no_bwd(&Forward {
                    layer: self,
                    isa,
                    panels,
                    act,
                })
            }
            Weights::Packed { .. } => {
                let w = self.unpack()?.to_dtype(x.dtype())?;
                let b = self.bias.to_dtype(x.dtype())?;
                linear(x, &w, Some(&b), act)
            }
            Weights::Plain(w) => {
                let w = w.to_dtype(x.dtype())?;
                let b = self.bias.to_dtype(x.dtype())?;
                linear(x, &w, Some(&b), act)
            }
        }
    }

    /// The `[out, in]` weights back from the panels (for the rare non-f32 input).
    fn unpack(&self) -> Result<Tensor> {
        let Weights::Packed { isa, data, offset } = &self.weights else {
            candle_core::bail!("packed linear: weights are not packed");
        };
        let mr = isa.mr;
        let mut w = vec![0f32; self.out_dim * self.in_dim];
        for (o, row) in w.chunks_exact_mut(self.in_dim.max(1)).enumerate() {
            let panel = &data[offset + (o / mr) * self.in_dim * mr..];
            for (k, v) in row.iter_mut().enumerate() {
                *v = panel[k * mr + o % mr];
            }
        }
        Tensor::from_vec(w, (self.out_dim, self.in_dim), self.bias.device())
    }
}

struct Forward<'a> {
    layer: &'a PackedLinear,
    isa: &'static Isa,
    panels: &'a [f32],
    act: Activation,
}

/// The output pointer shared by the panel tasks, which write disjoint columns.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every task writes only its own panel's columns of the output, so sending the pointer to
// another thread cannot make two threads write the same element.
unsafe impl Send for Out {}
// SAFETY: as for `Send`: shared use only ever writes disjoint columns.
unsafe impl Sync for Out {}

impl Out {
    /// The address of output element `i` (a method, so closures capture the whole `Out`).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

impl CustomOp1 for Forward<'_> {
    fn name(&self) -> &'static str {
        "lepton-packed-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(x) = s else {
            candle_core::bail!("packed linear: x must be f32");
        };
        let (k, n) = (self.layer.in_dim, self.layer.out_dim);
        let tokens: usize = l.dims()[..l.dims().len() - 1].iter().product();
        let x = &x[l.start_offset()..][..tokens * k];
        let bias = self.layer.bias.to_vec1::<f32>()?;
        let mut y: Vec<f32> = Vec::with_capacity(tokens * n);
        let out = Out(y.spare_capacity_mut().as_mut_ptr().cast::<f32>());
        let mr = self.isa.mr;
        let panels = n.div_ceil(mr);
        (0..panels).into_par_iter().for_each(|p| {
            let (o0, m) = (p * mr, mr.min(n - p * mr));
            let panel = &self.panels[p * k * mr..][..k * mr];
            for t0 in (0..tokens).step_by(TB) {
                let tb = TB.min(tokens - t0);
                for t in t0..t0 + tb {
                    // SAFETY: row t, columns o0..o0+m of the output lie inside its capacity and
                    // belong to this panel alone.
                    let row = unsafe {
                        std::slice::from_raw_parts_mut(
                            out.at(t * n + o0).cast::<MaybeUninit<f32>>(),
                            m,
                        )
                    };
                    for (d, &b) in row.iter_mut().zip(&bias[o0..o0 + m]) {
                        d.write(b);
                    }
                }
                for k0 in (0..k).step_by(KC) {
                    let kc = KC.min(k - k0);
                    for j0 in (t0..t0 + tb).step_by(NR) {
                        let nr = NR.min(t0 + tb - j0);
                        // SAFETY: the tile's `m × nr` outputs (initialised with the bias above)
                        // belong to this panel; the kernel reads `kc` steps of `mr` panel floats
                        // from `k0·mr` (inside the panel) and `x[j0 + j, k0..k0 + kc]` for
                        // j < nr (inside `x`); the CPU has the kernel's features (`detect`).
                        unsafe {
                            (self.isa.ukr[nr - 1])(
                                m,
                                nr,
                                kc,
                                out.at(j0 * n + o0),
                                panel.as_ptr().add(k0 * mr),
                                x.as_ptr().add(j0 * k + k0),
                                n as isize,
                                1,
                                mr as isize,
                                1,
                                k as isize,
                                1.0,
                                1.0,
                                1,
                                false,
                                false,
                                false,
                                std::ptr::null(),
                            );
                        }
                    }
                }
                if self.act != Activation::Identity {
                    for t in t0..t0 + tb {
                        // SAFETY: as above; the row is initialised now.
                        let row = unsafe { std::slice::from_raw_parts_mut(out.at(t * n + o0), m) };
                        self.act.apply(row);
                    }
                }
            }
        });
        // SAFETY: the panels together wrote (bias first) every one of the `tokens·n` outputs.
        unsafe { y.set_len(tokens * n) };
        let mut dims = l.dims().to_vec();
        *dims.last_mut().expect("x has a last dimension") = n;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::linear_reference;
    use candle_core::Device;

    fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
        let d = d.max(0).unwrap().to_scalar::<f32>().unwrap();
        let s = b.abs().unwrap().flatten_all().unwrap();
        d / s.max(0).unwrap().to_scalar::<f32>().unwrap().max(1e-6)
    }

    fn isas() -> Vec<Option<&'static Isa>> {
        let mut v = vec![None];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                v.push(Some(&isa::AVX512));
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Some(&isa::AVX2));
            }
        }
        v
    }

    #[test]
    fn matches_candle_on_odd_shapes_for_every_activation_and_isa() {
        let dev = Device::Cpu;
        let acts = [
            Activation::Identity,
            Activation::Relu,
            Activation::GeluTanh,
            Activation::GeluErf,
        ];
        for isa in isas() {
            for (i, (lead, k, n)) in [
                (vec![1], 768, 2304),
                (vec![5], 300, 70),
                (vec![127], 513, 130),
                (vec![129], 3, 17),
                (vec![2, 3, 4], 257, 64),
                (vec![200], 64, 65),
                (vec![7], 1, 1),
                (vec![], 10, 3),
            ]
            .into_iter()
            .enumerate()
            {
                let act = acts[i % acts.len()];
                let mut shape = lead.clone();
                shape.push(k);
                let x = Tensor::randn(0f32, 1.0, shape.as_slice(), &dev).unwrap();
                // A transposed view, as models stored `[in, out]` give.
                let w = Tensor::randn(0f32, 0.5, (k, n), &dev).unwrap().t().unwrap();
                let b = Tensor::randn(0f32, 0.5, n, &dev).unwrap();
                let bias = (i % 3 != 1).then_some(&b);
                let layer = PackedLinear::with_isa(&w, bias, isa).unwrap();
                assert_eq!(
                    matches!(layer.weights, Weights::Packed { .. }),
                    isa.is_some()
                );
                for act in [act, Activation::Identity] {
                    let ours = layer.forward(&x, act).unwrap();
                    // The reference wants at least two dimensions.
                    let x2 = x.reshape(((), k)).unwrap();
                    let theirs = linear_reference(&x2, &w, bias, act).unwrap();
                    let mut want = lead.clone();
                    want.push(n);
                    assert_eq!(ours.dims(), want.as_slice());
                    let theirs = theirs.reshape(want.as_slice()).unwrap();
                    let e = rel_err(&ours, &theirs);
                    assert!(e < 1e-4, "{lead:?}x{k}->{n} {act:?}: rel err {e}");
                }
            }
        }
    }

    #[test]
    fn f64_input_and_unpacking_round_trip() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (70, 9), &dev).unwrap();
        for isa in isas() {
            let layer = PackedLinear::with_isa(&w, None, isa).unwrap();
            if isa.is_some() {
                let back = layer.unpack().unwrap();
                assert_eq!(rel_err(&back, &w), 0.0);
            }
            let x = Tensor::randn(0f64, 1.0, (3, 9), &dev).unwrap();
            let y = layer.forward(&x, Activation::Relu).unwrap();
            assert_eq!(y.dtype(), DType::F64);
            let r = linear_reference(&x, &w.to_dtype(DType::F64).unwrap(), None, Activation::Relu)
                .unwrap();
            let d = (y - r).unwrap().abs().unwrap().max_keepdim(1).unwrap();
            let d = d.max(0).unwrap().to_vec1::<f64>().unwrap()[0];
            assert!(d < 1e-5);
        }
    }

    #[test]
    fn wrong_input_width_is_an_error() {
        let dev = Device::Cpu;
        let w = Tensor::zeros((4, 3), DType::F32, &dev).unwrap();
        let layer = PackedLinear::new(&w, None).unwrap();
        let err = layer
            .forward(
                &Tensor::zeros((2, 5), DType::F32, &dev).unwrap(),
                Activation::Identity,
            )
            .unwrap_err();
        assert!(err.to_string().contains("packed linear"), "{err}");
        let b = Tensor::zeros(3, DType::F32, &dev).unwrap();
        assert!(PackedLinear::new(&w, Some(&b)).is_err());
    }
}
