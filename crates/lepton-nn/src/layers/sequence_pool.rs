//! `sequence-pool`: one vector per sequence, `[T, D]` -> `[D]`: the `last` position (what a
//! causal model has seen everything by), the `mean` over positions, or the element-wise `max`
//! (its gradient goes to the arg-max position). For classifying sequences.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{BuildCtx, Ctx, Layer, LayerConfig, ShapeCtx};

/// How `sequence-pool` reduces the positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SequencePoolMode {
    Last,
    Mean,
    Max,
}

/// The `sequence-pool` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SequencePoolConfig {
    /// `last`, `mean` or `max` (required).
    pub mode: SequencePoolMode,
}

impl LayerConfig for SequencePoolConfig {
    fn kind(&self) -> &'static str {
        "sequence-pool"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        match x {
            [_, d] => Ok(vec![*d]),
            _ => Err(ctx.error(format!("expects [T, D] per sample, got {x:?}"))),
        }
    }

    fn build(&self, _: &[usize], _: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        Ok(Box::new(SequencePool(self.mode)))
    }
}

/// A built `sequence-pool`.
#[derive(Debug, Clone, Copy)]
pub struct SequencePool(SequencePoolMode);

impl Layer for SequencePool {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        let (_, t, _) = x.dims3()?;
        match self.0 {
            SequencePoolMode::Last => x.narrow(1, t - 1, 1)?.squeeze(1),
            SequencePoolMode::Mean => x.mean(1),
            SequencePoolMode::Max => x.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    use super::*;

    #[test]
    fn pools_a_hand_written_sequence() {
        let x = Tensor::new(&[[[1f32, -2.0], [3.0, 0.0], [-1.0, 5.0]]], &Device::Cpu).unwrap();
        let varmap = VarMap::new();
        for (mode, want) in [
            (SequencePoolMode::Last, [-1.0, 5.0]),
            (SequencePoolMode::Mean, [1.0, 1.0]),
            (SequencePoolMode::Max, [3.0, 5.0]),
        ] {
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            let layer = SequencePoolConfig { mode }
                .build(&[3, 2], vb, &mut BuildCtx::default())
                .unwrap();
            let y = layer.forward(&x, &Ctx::EVAL).unwrap();
            assert_eq!(y.to_vec2::<f32>().unwrap(), [want], "{mode:?}");
        }
    }
}
