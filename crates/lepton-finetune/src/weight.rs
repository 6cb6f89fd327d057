//! A frozen base weight `W: [out, in]` (HF row order) in either precision of
//! [`BasePrecision`]: an f32 tensor ([`crate::frozen`]) or GGUF blocks ([`crate::qfrozen`]).
//! Linears, the embedding lookup and the (tied) LM head all go through it.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::frozen::frozen_linear;
use crate::qfrozen::{quantized_linear, QuantWeight};

/// How the frozen base is held and run (`base-precision` in `[finetune]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BasePrecision {
    /// Every weight dequantized to f32, f32 GEMMs: the same numbers as PEFT on the dequantized
    /// base (what the cross-loading and merge checks rely on). The default, as in the issue and
    /// in PEFT (quantized bases are PEFT's opt-in `load_in_4bit` too).
    #[default]
    F32,
    /// Quantized GGUF tensors stay in their blocks and run on the integer kernels (QLoRA-style,
    /// activations rounded to 8 bits per block of 32, as `lepton run` serves the file): less
    /// memory, faster; tensors stored as F32/F16 (or an HF folder) stay f32.
    Quantized,
}

/// One frozen weight.
#[derive(Debug, Clone)]
pub enum FrozenWeight {
    F32(Tensor),
    Quantized(Arc<QuantWeight>),
}

impl From<Tensor> for FrozenWeight {
    fn from(t: Tensor) -> Self {
        FrozenWeight::F32(t)
    }
}

impl FrozenWeight {
    /// The rows of quantized `parts` stacked into one `[Σ out, in]` weight, so projections that
    /// share an input (q/k/v, gate/up) run as one matmul with one activation quantization: each
    /// output column the same dot product as in its part. `None` when a part is f32 (a stacked
    /// f32 copy would cost 4 bytes per weight, 280 MB for SmolLM2, for no shared work) or the
    /// parts differ in type or inputs.
    pub fn concat(parts: &[&FrozenWeight], what: &str) -> crate::Result<Option<FrozenWeight>> {
        let qs: Option<Vec<&QuantWeight>> = parts
            .iter()
            .map(|p| match p {
                FrozenWeight::Quantized(q) => Some(&**q),
                FrozenWeight::F32(_) => None,
            })
            .collect();
        match qs {
            Some(qs) => {
                Ok(QuantWeight::concat(&qs, what)?.map(|q| FrozenWeight::Quantized(Arc::new(q))))
            }
            None => Ok(None),
        }
    }

    /// `(out, in)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            FrozenWeight::F32(t) => {
                let d = t.dims();
                (d[0], d[1])
            }
            FrozenWeight::Quantized(q) => (q.rows(), q.cols()),
        }
    }

    pub fn elem_count(&self) -> usize {
        let (n, k) = self.dims();
        n * k
    }

    /// The f32 tensor of an f32 weight.
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            FrozenWeight::F32(t) => Some(t),
            FrozenWeight::Quantized(_) => None,
        }
    }

    /// `W` as an f32 tensor (dequantized when quantized): merging, exports.
    pub fn to_f32(&self) -> candle_core::Result<Tensor> {
        match self {
            FrozenWeight::F32(t) => Ok(t.clone()),
            FrozenWeight::Quantized(q) => q.to_f32(),
        }
    }

    /// `x·Wᵀ` for `x: [.., in]`, with a gradient for `x` only.
    pub fn linear(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            FrozenWeight::F32(w) => frozen_linear(x, w),
            FrozenWeight::Quantized(q) => quantized_linear(x, q),
        }
    }

    /// `y = x·Wᵀ` on plain rows (`x`: `m × in`, `y`: `m × out`), the same numbers as
    /// [`FrozenWeight::linear`] gives for those rows.
    pub(crate) fn forward_rows(&self, x: &[f32]) -> candle_core::Result<Vec<f32>> {
        match self {
            FrozenWeight::F32(w) => {
                let (n, k) = self.dims();
                with_f32(w, |w| crate::frozen::matmul_xwt(x, w, n, k))
            }
            FrozenWeight::Quantized(q) => Ok(q.forward_rows(x)),
        }
    }

    /// `dx = dy·W` on plain rows (`dy`: `m × out`, `dx`: `m × in`): the input gradient of
    /// [`FrozenWeight::forward_rows`].
    pub(crate) fn input_grad_rows(&self, dy: &[f32]) -> candle_core::Result<Vec<f32>> {
        match self {
            FrozenWeight::F32(w) => {
                let (n, k) = self.dims();
                with_f32(w, |w| crate::frozen::matmul_dyw(dy, w, n, k))
            }
            FrozenWeight::Quantized(q) => Ok(q.backward_rows(dy)),
        }
    }

    /// Rows `ids` of `W` (an embedding lookup): `[ids.len(), in]`, no gradient.
    pub fn rows(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            FrozenWeight::F32(w) => w.index_select(ids, 0),
            FrozenWeight::Quantized(q) => {
                let ids = ids.to_vec1::<u32>()?;
                let k = q.cols();
                let mut out = vec![0f32; ids.len() * k];
                for (&id, o) in ids.iter().zip(out.chunks_exact_mut(k)) {
                    if id as usize >= q.rows() {
                        candle_core::bail!(
                            "token id {id} is outside the vocabulary of {}",
                            q.rows()
                        );
                    }
                    q.dequantize_row(id as usize, o);
                }
                Tensor::from_vec(out, (ids.len(), k), &Device::Cpu)
            }
        }
    }
}

/// `f` on the contiguous f32 values of a CPU tensor.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    let (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((a, b))) =
        (&*s, l.contiguous_offsets())
    else {
        candle_core::bail!("frozen weight: expected contiguous f32 values on the CPU");
    };
    Ok(f(&v[a..b]))
}
