//! The LoRA linear layer (Hu et al. 2021, as PEFT's `lora.Linear`): a frozen base weight plus a
//! trainable low-rank update.
//!
//! # Maths and shapes
//! ```text
//! y = x·Wᵀ + s · dropout(x)·Aᵀ·Bᵀ        W: [out, in] frozen, A: [r, in], B: [out, r], s = α / r
//! ```
//! A starts Kaiming-uniform as PEFT's `kaiming_uniform_(A, a=√5)`, i.e. U(−1/√in, 1/√in); B starts
//! at zero, so the adapted model starts equal to the base. Only A and B are [`Var`]s; the base
//! goes through [`FrozenWeight::linear`], whose backward computes the input gradient only.

use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::{CandleContext, Result};
use crate::weight::FrozenWeight;

/// The trainable pair of one adapted linear.
#[derive(Clone)]
pub struct LoraPair {
    /// `[r, in]`.
    pub a: Var,
    /// `[out, r]`.
    pub b: Var,
    /// `α / r`.
    pub scale: f64,
    /// Dropout probability on the adapter's input while training (PEFT's `lora_dropout`).
    pub dropout: f32,
}

impl LoraPair {
    /// A fresh pair: A ~ U(−1/√in, 1/√in) from `rng`, B = 0.
    pub fn init(
        rng: &mut impl Rng,
        rank: usize,
        inputs: usize,
        outputs: usize,
        alpha: f64,
        dropout: f32,
    ) -> Result<Self> {
        let bound = 1.0 / (inputs as f32).sqrt();
        let a: Vec<f32> = (0..rank * inputs)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let a = Var::from_vec(a, (rank, inputs), &Device::Cpu).ctx("creating LoRA A")?;
        let b = Var::zeros((outputs, rank), DType::F32, &Device::Cpu).ctx("creating LoRA B")?;
        Ok(Self {
            a,
            b,
            scale: alpha / rank as f64,
            dropout,
        })
    }

    pub fn rank(&self) -> usize {
        self.a.dims()[0]
    }

    /// `s·B·A`, the `[out, in]` update that merging adds to the base weight.
    pub fn delta(&self) -> Result<Tensor> {
        (self.b.matmul(&self.a).ctx("computing B·A")? * self.scale).ctx("scaling B·A")
    }
}

/// A linear layer of the base, maybe adapted.
#[derive(Clone)]
pub struct LoraLinear {
    /// `[out, in]`, never trained (f32 or GGUF blocks).
    pub base: FrozenWeight,
    pub lora: Option<LoraPair>,
}

impl LoraLinear {
    pub fn frozen(base: impl Into<FrozenWeight>) -> Self {
        Self {
            base: base.into(),
            lora: None,
        }
    }

    pub fn out_features(&self) -> usize {
        self.base.dims().0
    }

    pub fn in_features(&self) -> usize {
        self.base.dims().1
    }

    /// `x: [N, in]` → `[N, out]`; `train` applies the adapter dropout. f32 on the CPU runs as
    /// one op (`lora_op.rs`); other inputs take [`LoraLinear::forward_composed`].
    pub fn forward(
        &self,
        x: &Tensor,
        train: Option<&mut ChaCha8Rng>,
    ) -> candle_core::Result<Tensor> {
        let Some(l) = &self.lora else {
            return self.base.linear(x);
        };
        if x.dtype() != DType::F32 || !x.device().is_cpu() {
            return self.forward_composed(x, train);
        }
        let mask = train.and_then(|rng| dropout_mask(rng, l.dropout, x.elem_count()));
        crate::lora_op::lora_linear(
            x,
            &self.base,
            l.a.as_tensor(),
            l.b.as_tensor(),
            l.scale,
            mask,
        )
    }

    /// [`LoraLinear::forward`] by plain candle ops (the reference the fused op is tested
    /// against; the same dropout draws).
    pub fn forward_composed(
        &self,
        x: &Tensor,
        train: Option<&mut ChaCha8Rng>,
    ) -> candle_core::Result<Tensor> {
        let y = self.base.linear(x)?;
        let Some(l) = &self.lora else {
            return Ok(y);
        };
        let xd = match train.and_then(|rng| dropout_mask(rng, l.dropout, x.elem_count())) {
            Some(m) => (x * Tensor::from_vec(m, x.shape(), x.device())?)?,
            None => x.clone(),
        };
        let low = xd.matmul(&l.a.t()?)?.matmul(&l.b.t()?)?;
        y + (low * l.scale)?
    }
}

/// Inverted dropout's mask (`1/keep` or 0 per value) of `n` values from the run's seeded
/// generator, so a resumed run draws the same masks; `None` without dropout.
pub(crate) fn dropout_mask(rng: &mut ChaCha8Rng, dropout: f32, n: usize) -> Option<Vec<f32>> {
    if dropout <= 0.0 {
        return None;
    }
    let keep = 1.0 - dropout;
    Some(
        (0..n)
            .map(|_| {
                if rng.random::<f32>() < keep {
                    1.0 / keep
                } else {
                    0.0
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn init_matches_peft_bounds_and_starts_at_the_base() -> anyhow::Result<()> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let pair = LoraPair::init(&mut rng, 4, 64, 10, 8.0, 0.0)?;
        assert_eq!(pair.scale, 2.0);
        let a = pair.a.flatten_all()?.to_vec1::<f32>()?;
        let bound = 1.0 / 8.0;
        assert!(a.iter().all(|v| v.abs() <= bound));
        // Spread over the whole range, not a constant.
        let max = a.iter().copied().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.9 * bound, "max |A| {max}");
        assert_eq!(pair.b.flatten_all()?.to_vec1::<f32>()?, vec![0.0; 40]);
        let base = Tensor::randn(0f32, 1.0, (10, 64), &Device::Cpu)?;
        let layer = LoraLinear {
            base: base.clone().into(),
            lora: Some(pair),
        };
        let x = Tensor::randn(0f32, 1.0, (3, 64), &Device::Cpu)?;
        let diff = (layer.forward(&x, None)? - x.matmul(&base.t()?)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5);
        Ok(())
    }

    #[test]
    fn adapter_adds_scaled_low_rank_update() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let base = Tensor::randn(0f32, 1.0, (6, 5), &dev)?;
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 5), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, (6, 2), &dev)?)?;
        let pair = LoraPair {
            a,
            b,
            scale: 0.5,
            dropout: 0.0,
        };
        let merged = (&base + pair.delta()?)?;
        let layer = LoraLinear {
            base: base.into(),
            lora: Some(pair),
        };
        let x = Tensor::randn(0f32, 1.0, (4, 5), &dev)?;
        let diff = (layer.forward(&x, None)? - x.matmul(&merged.t()?)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{diff}");
        Ok(())
    }
}

/// The fused op (`lora_op.rs`) through [`LoraLinear::forward`], against the composition.
#[cfg(test)]
mod op_tests {
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};

    use super::{LoraLinear, LoraPair};
    use crate::weight::FrozenWeight;

    fn random(shape: (usize, usize), seed: u64, scale: f32) -> anyhow::Result<Var> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        Ok(Var::from_vec(v, shape, &Device::Cpu)?)
    }

    /// A layer with a random base (f32, or Q8_0 blocks) and a random (non-zero) adapter.
    fn layer(quantized: bool, dropout: f32) -> anyhow::Result<LoraLinear> {
        let (out, k, r) = (64, 96, 4);
        let w = random((out, k), 1, 0.2)?.as_tensor().clone();
        let base: FrozenWeight = if quantized {
            let v = w.flatten_all()?.to_vec1::<f32>()?;
            let q = lepton_quant::QMatrix::new(
                lepton_quant::QType::Q8_0,
                out,
                k,
                crate::qfrozen::quantize_q8_0(&v),
            )?;
            FrozenWeight::Quantized(std::sync::Arc::new(crate::qfrozen::QuantWeight::new(
                q, None, "test",
            )?))
        } else {
            w.into()
        };
        Ok(LoraLinear {
            base,
            lora: Some(LoraPair {
                a: random((r, k), 2, 0.3)?,
                b: random((out, r), 3, 0.3)?,
                scale: 2.0,
                dropout,
            }),
        })
    }

    fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> anyhow::Result<f32> {
        Ok((a - b)?.abs()?.max_all()?.to_scalar::<f32>()?)
    }

    #[test]
    fn fused_lora_linear_equals_the_composition_forward_and_backward() -> anyhow::Result<()> {
        for (quantized, dropout) in [(false, 0.0), (false, 0.3), (true, 0.0), (true, 0.3)] {
            let l = layer(quantized, dropout)?;
            let pair = l.lora.as_ref().unwrap();
            let x = random((10, 96), 4, 1.0)?;
            // Same seed: the same dropout draws on both sides.
            let rng = || rand_chacha::ChaCha8Rng::seed_from_u64(7);
            let yf = l.forward(x.as_tensor(), Some(&mut rng()))?;
            let yc = l.forward_composed(x.as_tensor(), Some(&mut rng()))?;
            // The composition's operations in its order: bit-identical.
            assert_eq!(
                yf.flatten_all()?.to_vec1::<f32>()?,
                yc.flatten_all()?.to_vec1::<f32>()?,
                "q={quantized} p={dropout}: the forward is not bit-identical"
            );
            let c = random((10, 64), 5, 1.0)?;
            let gf = (yf * c.as_tensor())?.sum_all()?.backward()?;
            let gc = (yc * c.as_tensor())?.sum_all()?.backward()?;
            for (what, t) in [
                ("x", x.as_tensor()),
                ("A", pair.a.as_tensor()),
                ("B", pair.b.as_tensor()),
            ] {
                let (f, c) = (
                    gf.get(t).expect("fused gradient"),
                    gc.get(t).expect("gradient"),
                );
                let d = max_diff(f, c)?;
                let scale = c.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(scale > 1e-3, "{what}: a zero gradient tests nothing");
                assert!(
                    d < 1e-5 * scale.max(1.0),
                    "q={quantized} p={dropout}: d{what} differs by {d}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn adapter_gradients_match_finite_differences() -> anyhow::Result<()> {
        let l = layer(false, 0.0)?;
        let pair = l.lora.as_ref().unwrap();
        let x = random((6, 96), 8, 1.0)?;
        let c = random((6, 64), 9, 1.0)?;
        let loss = |l: &LoraLinear| -> anyhow::Result<f64> {
            Ok((l.forward(x.as_tensor(), None)? * c.as_tensor())?
                .sum_all()?
                .to_scalar::<f32>()? as f64)
        };
        let g = (l.forward(x.as_tensor(), None)? * c.as_tensor())?
            .sum_all()?
            .backward()?;
        for (which, var) in [(0, &pair.a), (1, &pair.b)] {
            let grad = g
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()?
                .to_vec1::<f32>()?;
            let v = var.flatten_all()?.to_vec1::<f32>()?;
            for idx in [0, 5, v.len() / 2, v.len() - 1] {
                let eps = 1e-2f32;
                let at = |delta: f32| -> anyhow::Result<f64> {
                    let mut w = v.clone();
                    w[idx] += delta;
                    var.set(&candle_core::Tensor::from_vec(
                        w,
                        var.shape(),
                        &Device::Cpu,
                    )?)?;
                    loss(&l)
                };
                let numeric = (at(eps)? - at(-eps)?) / (2.0 * eps as f64);
                at(0.0)?;
                let analytic = grad[idx] as f64;
                assert!(
                    (numeric - analytic).abs() < 2e-2 * (1.0 + analytic.abs()),
                    "{}[{idx}]: numeric {numeric} analytic {analytic}",
                    ["A", "B"][which]
                );
            }
        }
        Ok(())
    }

    #[test]
    fn a_constant_input_gets_no_gradient_but_the_adapter_does() -> anyhow::Result<()> {
        // The first layer's input (the embedding rows) is no variable: its input gradient
        // through the base would be work for nothing.
        let l = layer(false, 0.0)?;
        let pair = l.lora.as_ref().unwrap();
        let x = random((5, 96), 10, 1.0)?.as_tensor().detach();
        let g = l.forward(&x, None)?.sum_all()?.backward()?;
        assert!(g.get(&x).is_none(), "a constant input got a gradient");
        assert!(g.get(pair.a.as_tensor()).is_some() && g.get(pair.b.as_tensor()).is_some());
        Ok(())
    }
}
