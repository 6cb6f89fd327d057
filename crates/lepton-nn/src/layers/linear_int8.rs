//! `linear-int8`: `y = s ⊙ (Q x̂) + b`, a `linear` layer with per-output-channel symmetric int8
//! weights, run as i8 × i8 → i32 products (`lepton_quant::Int8Matrix`: AVX-512 VNNI, AVX2 or the
//! portable kernel). Written by `lepton compress --quantize`; inference only.
//!
//! # Shapes
//! `[..., in]` -> `[..., out-features]`; tensors `weight: [out-features, in]` (u8 holding the i8
//! codes, two's complement), `weight_scale: [out-features]` (f32), `bias: [out-features]` (f32).
//! The input `x̂` is quantized per 32-value block at run time, or with the calibrated
//! `activation-scale` when the spec has one. A following ReLU is folded into the epilogue.

use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use lepton_quant::{ActScale, Int8Matrix};
use serde::{Deserialize, Serialize};

use super::{yes, BuildCtx, Ctx, Fold, Layer, LayerConfig, LinearConfig, ShapeCtx, Values};

/// The `linear-int8` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LinearInt8Config {
    /// Output features (at least 1).
    pub out_features: usize,
    /// Input features: inferred from the input shape; when given it must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_features: Option<usize>,
    /// Add a bias. Default `true`.
    #[serde(default = "yes")]
    pub bias: bool,
    /// Static quantization: the input scale `max|x| / 127` from calibration (finite, > 0).
    /// Default: none, the input is quantized per block at run time (dynamic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_scale: Option<f32>,
}

impl LinearInt8Config {
    fn as_f32(&self) -> LinearConfig {
        LinearConfig {
            out_features: self.out_features,
            in_features: self.in_features,
            bias: self.bias,
            tie: None,
        }
    }
}

/// The activation quantization of a spec's `activation-scale`, checked.
pub(super) fn act_scale(scale: Option<f32>, ctx: &ShapeCtx) -> crate::Result<ActScale> {
    match scale {
        None => Ok(ActScale::Dynamic),
        Some(s) if s.is_finite() && s > 0.0 => Ok(ActScale::Static(s)),
        Some(s) => Err(ctx.error(format!("activation-scale = {s} must be finite and > 0"))),
    }
}

/// Read the int8 weight `weight` (u8 codes `[rows, cols]`) and `weight_scale` (`[rows]`) under `vb`.
pub(super) fn int8_weight(vb: &VarBuilder, rows: usize, cols: usize) -> Result<Int8Matrix> {
    let zero = Init::Const(0.0);
    let codes = vb.get_with_hints_dtype((rows, cols), "weight", zero, DType::U8)?;
    let scales = vb.get_with_hints_dtype(rows, "weight_scale", zero, DType::F32)?;
    let codes: Vec<i8> = codes
        .flatten_all()?
        .to_vec1::<u8>()?
        .into_iter()
        .map(|c| c as i8)
        .collect();
    let what = format!("{}.weight", vb.prefix());
    Int8Matrix::new(rows, cols, &codes, scales.to_vec1()?, &what)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))
}

impl LayerConfig for LinearInt8Config {
    fn kind(&self) -> &'static str {
        "linear-int8"
    }

    fn output_shape(&self, x: &[usize], ctx: &mut ShapeCtx) -> crate::Result<Vec<usize>> {
        act_scale(self.activation_scale, ctx)?;
        self.as_f32().output_shape(x, ctx)
    }

    fn values(&self, x: &[usize], ctx: &ShapeCtx) -> crate::Result<Values> {
        self.as_f32().values(x, ctx)
    }

    fn size_field(&self) -> Option<&'static str> {
        Some("out-features")
    }

    fn build(&self, x: &[usize], vb: VarBuilder, _: &mut BuildCtx) -> Result<Box<dyn Layer>> {
        let cols = *x.last().expect("shapes checked");
        let weight = int8_weight(&vb, self.out_features, cols)?;
        let bias = if self.bias {
            Some(
                vb.get_with_hints_dtype(self.out_features, "bias", Init::Const(0.0), DType::F32)?
                    .to_vec1()?,
            )
        } else {
            None
        };
        let act = match self.activation_scale {
            Some(s) => ActScale::Static(s),
            None => ActScale::Dynamic,
        };
        Ok(Box::new(LinearInt8 {
            weight,
            bias,
            act,
            relu: false,
        }))
    }
}

/// A built `linear-int8` layer.
#[derive(Debug, Clone)]
pub struct LinearInt8 {
    weight: Int8Matrix,
    bias: Option<Vec<f32>>,
    act: ActScale,
    /// The ReLU after this layer, computed in the epilogue (see `fuse.rs`).
    relu: bool,
}

impl Layer for LinearInt8 {
    fn forward(&self, x: &Tensor, _: &Ctx) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let k = self.weight.cols();
        if dims.last() != Some(&k) {
            candle_core::bail!("linear-int8 expects [..., {k}], got {dims:?}");
        }
        let xs: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let n = self.weight.rows();
        let m = xs.len() / k;
        let mut out = vec![0f32; m * n];
        self.weight.matmul(&xs, self.act, &mut out, &mut Vec::new());
        epilogue(&mut out, n, self.bias.as_deref(), self.relu);
        let mut shape = dims;
        *shape.last_mut().expect("checked") = n;
        Tensor::from_vec(out, shape, x.device())
    }

    fn fold(&mut self, op: Fold, _: bool) -> bool {
        if op == Fold::Relu && !self.relu {
            self.relu = true;
            return true;
        }
        false
    }
}

/// Bias and ReLU over rows of `n` outputs.
pub(super) fn epilogue(out: &mut [f32], n: usize, bias: Option<&[f32]>, relu: bool) {
    for row in out.chunks_exact_mut(n) {
        if let Some(b) = bias {
            for (o, b) in row.iter_mut().zip(b) {
                *o += b;
            }
        }
        if relu {
            for o in row.iter_mut() {
                *o = o.max(0.0);
            }
        }
    }
}
