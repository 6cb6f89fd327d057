//! int8 quantization: every `conv2d` (groups 1) and `linear` (no tie) becomes `conv2d-int8` /
//! `linear-int8` with per-output-channel symmetric int8 weights (`lepton_quant`), after batch
//! norms are folded into them ([`crate::fold`]).
//!
//! - [`Quantize::Int8`] (static): each quantized layer's input scale is `c / 127` for the range
//!   `c` [`crate::calibrate`] chooses from the calibration samples (the layer's inputs computed
//!   by the f32 model before it): the least-error range by default, or `max |x|`.
//!   Each static layer's bias then absorbs the mean output shift the quantization causes
//!   ([`crate::bias_correction`]), unless turned off.
//! - [`Quantize::DynamicInt8`]: activations are quantized per 32-value block at run time (no
//!   calibration), the choice for linear-heavy models and transformers.

use candle_core::Tensor;
use lepton_data::Dataset;
use lepton_nn::layers::{Conv2dInt8Config, LinearInt8Config};
use lepton_nn::LayerSpec;
use serde::{Deserialize, Serialize};

use crate::bias_correction::{corrected_bias, input_means, Reads};
use crate::calibrate::{input_ranges_with, Calibration, InputRange};
use crate::error::{Error, Result};
use crate::fold::{fold_batch_norms, to_vec};
use crate::net::{check_shape, Net};

/// The quantization mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quantize {
    /// Static: int8 weights, input scales from calibration.
    Int8,
    /// Dynamic: int8 weights, inputs quantized per block at run time.
    DynamicInt8,
}

impl Quantize {
    pub fn name(self) -> &'static str {
        match self {
            Quantize::Int8 => "int8",
            Quantize::DynamicInt8 => "dynamic-int8",
        }
    }
}

/// Whether layer `spec` becomes int8.
fn quantizable(spec: &LayerSpec) -> bool {
    matches!(spec, LayerSpec::Conv2d(c) if c.groups == 1)
        || matches!(spec, LayerSpec::Linear(c) if c.tie.is_none())
}

/// Quantize `net` in place; `calibration` (data with at least one sample, the number of samples
/// and how ranges are chosen) is required for [`Quantize::Int8`]. Returns how many layers became
/// int8. Static layers get their bias corrected (see [`quantize_with`]).
pub fn quantize(
    net: &mut Net,
    mode: Quantize,
    calibration: Option<(&Dataset, usize, Calibration)>,
) -> Result<usize> {
    quantize_with(net, mode, calibration, true)
}

/// [`quantize`], with the bias correction of static layers on or off: each layer in turn, its
/// bias absorbs the mean shift of its outputs on the calibration samples between the model
/// quantized so far and the f32 model ([`crate::bias_correction`]).
pub fn quantize_with(
    net: &mut Net,
    mode: Quantize,
    calibration: Option<(&Dataset, usize, Calibration)>,
    bias_correction: bool,
) -> Result<usize> {
    quantize_with_codes(net, mode, calibration, bias_correction, false)
}

/// [`quantize_with`], and when `zero_point_codes` the static layers whose input is never
/// negative on the calibration samples get codes with zero point 0 ([`InputRange`]); else every
/// layer keeps the symmetric codes (zero point 128).
pub fn quantize_with_codes(
    net: &mut Net,
    mode: Quantize,
    calibration: Option<(&Dataset, usize, Calibration)>,
    bias_correction: bool,
    zero_point_codes: bool,
) -> Result<usize> {
    if net.is_int8() {
        return Err(Error::Model {
            step: "quantize",
            message: "the model is already int8 (its layers are linear-int8/conv2d-int8); quantize the f32 model instead".into(),
        });
    }
    fold_batch_norms(net)?;
    let ranges = match (mode, calibration) {
        (Quantize::DynamicInt8, _) => None,
        (Quantize::Int8, Some((data, samples, method))) => {
            check_shape(net, data, "calibration data")?;
            if samples == 0 {
                return Err(Error::Setting {
                    field: "calibration-samples",
                    message: "must be at least 1 for static int8".into(),
                });
            }
            let wanted = quantizable_layers(net);
            Some(input_ranges_with(
                net,
                data,
                samples,
                &wanted,
                method,
                zero_point_codes,
            )?)
        }
        (Quantize::Int8, None) => {
            return Err(Error::Data {
                what: "calibration data",
                message: "static int8 needs calibration samples (or use dynamic-int8)".into(),
            })
        }
    };
    let correction = match calibration {
        Some((data, samples, _)) if bias_correction => Some((data, samples)),
        _ => None,
    };
    quantize_ranges(net, ranges, correction)
}

/// Which layers [`quantize`] turns to int8 (one flag per layer).
pub(crate) fn quantizable_layers(net: &Net) -> Vec<bool> {
    net.spec.layers.iter().map(quantizable).collect()
}

/// Quantize the (batch-norm folded) `net` with the input range `ranges[i]` of each layer (static
/// int8; dynamic without `ranges`), correcting the biases on `correction`'s samples when given.
pub(crate) fn quantize_ranges(
    net: &mut Net,
    ranges: Option<Vec<InputRange>>,
    correction: Option<(&Dataset, usize)>,
) -> Result<usize> {
    // The f32 model the corrected layers' mean outputs are matched to.
    let reference = (correction.is_some() && ranges.is_some()).then(|| net.clone());
    let mut count = 0;
    for i in 0..net.spec.layers.len() {
        // Every convolution, the first (fan-in 9 to 27) too: the int8 kernel reads patches in
        // place (no padded patch rows), and its fused pool replaces the f32 path's.
        let codes_at = ranges.as_ref().map(|r| r[i].codes());
        let scale = codes_at.map(|(d, _)| d);
        let zero = codes_at.map_or(128, |(_, z)| z);
        let correct = reference.is_some() && scale.is_some();
        let new = match &net.spec.layers[i] {
            LayerSpec::Conv2d(c) if c.groups == 1 => LayerSpec::Conv2dInt8(Conv2dInt8Config {
                out_channels: c.out_channels,
                kernel: c.kernel,
                stride: c.stride,
                padding: c.padding,
                dilation: c.dilation,
                bias: c.bias || correct,
                activation_scale: scale,
                output_scale: None,
                input_zero_point: zero,
                output_zero_point: 128,
            }),
            LayerSpec::Linear(c) if c.tie.is_none() => LayerSpec::LinearInt8(LinearInt8Config {
                out_features: c.out_features,
                in_features: c.in_features,
                bias: c.bias || correct,
                activation_scale: scale,
                output_scale: None,
                input_zero_point: zero,
                output_zero_point: 128,
            }),
            _ => continue,
        };
        let name = format!("layers.{i}.weight");
        let w = net.tensors.get(&name).ok_or_else(|| Error::Model {
            step: "quantize",
            message: format!("{name} is missing"),
        })?;
        let rows = w.dim(0).map_err(Error::tensor("quantize"))?;
        let v = to_vec(w, "quantize")?;
        let cols = v.len() / rows;
        let (codes, scales) = lepton_quant::quantize_per_channel(rows, cols, &v);
        if let (Some(reference), Some(d), Some((data, samples))) =
            (reference.as_ref().filter(|_| correct), scale, correction)
        {
            let reads = match &net.spec.layers[i] {
                LayerSpec::Conv2d(c) => Reads::Conv {
                    c: cols / (c.kernel * c.kernel),
                    kernel: c.kernel,
                    stride: c.stride,
                    padding: c.padding,
                    dilation: c.dilation,
                },
                _ => Reads::Linear { k: cols },
            };
            let (mx, _) = input_means(reference, i, reads, (d, zero), data, samples)?;
            let (_, mq) = input_means(net, i, reads, (d, zero), data, samples)?;
            let bias = match net.get(i, "bias") {
                Some(b) => to_vec(b, "bias correction")?,
                None => vec![0f32; rows],
            };
            let bias = corrected_bias(&bias, &v, &codes, &scales, (&mx, &mq));
            net.tensors.insert(
                format!("layers.{i}.bias"),
                Tensor::from_vec(bias, rows, &candle_core::Device::Cpu)
                    .map_err(Error::tensor("bias correction"))?,
            );
        }
        let codes: Vec<u8> = codes.into_iter().map(|c| c as u8).collect();
        let dev = candle_core::Device::Cpu;
        net.tensors.insert(
            name,
            Tensor::from_vec(codes, (rows, cols), &dev).map_err(Error::tensor("quantize"))?,
        );
        net.tensors.insert(
            format!("layers.{i}.weight_scale"),
            Tensor::from_vec(scales, rows, &dev).map_err(Error::tensor("quantize"))?,
        );
        net.spec.layers[i] = new;
        count += 1;
    }
    chain_codes(&mut net.spec.layers);
    Ok(count)
}

/// Let each static int8 layer write its output as the u8 codes of the next static int8 layer
/// (its `output-scale`) when only operations its epilogue computes or that pass codes through
/// lie between: a convolution's ReLU then max-pool, or a linear layer's ReLU (folded into the
/// layer when built), then flattens and dropouts. Consecutive int8 layers then hand over codes
/// instead of f32 tensors quantized again. Returns how many layers were chained.
pub(crate) fn chain_codes(layers: &mut [LayerSpec]) -> usize {
    let mut chained = 0;
    for i in 0..layers.len() {
        let conv = match &layers[i] {
            LayerSpec::Conv2dInt8(c) if c.activation_scale.is_some() => true,
            LayerSpec::LinearInt8(c) if c.activation_scale.is_some() => false,
            _ => continue,
        };
        let mut j = i + 1;
        if matches!(layers.get(j), Some(LayerSpec::Relu {})) {
            j += 1;
        }
        if conv && matches!(layers.get(j), Some(LayerSpec::MaxPool2d(_))) {
            j += 1;
        }
        while matches!(
            layers.get(j),
            Some(LayerSpec::Flatten {} | LayerSpec::Dropout(_))
        ) {
            j += 1;
        }
        let next = match layers.get(j) {
            Some(LayerSpec::Conv2dInt8(c)) => c.activation_scale.map(|s| (s, c.input_zero_point)),
            Some(LayerSpec::LinearInt8(c)) => c.activation_scale.map(|s| (s, c.input_zero_point)),
            _ => None,
        };
        let Some((scale, zero)) = next else { continue };
        match &mut layers[i] {
            LayerSpec::Conv2dInt8(c) => (c.output_scale, c.output_zero_point) = (Some(scale), zero),
            LayerSpec::LinearInt8(c) => (c.output_scale, c.output_zero_point) = (Some(scale), zero),
            _ => unreachable!("matched above"),
        }
        chained += 1;
    }
    chained
}

#[cfg(test)]
mod tests {
    use lepton_nn::ModelSpec;

    use super::*;

    fn layers(toml: &str) -> Vec<LayerSpec> {
        let spec: ModelSpec = toml::from_str(&format!("layers = [{toml}]")).unwrap();
        spec.layers
    }

    fn output_scales(layers: &[LayerSpec]) -> Vec<Option<f32>> {
        layers
            .iter()
            .filter_map(|l| match l {
                LayerSpec::Conv2dInt8(c) => Some(c.output_scale),
                LayerSpec::LinearInt8(c) => Some(c.output_scale),
                _ => None,
            })
            .collect()
    }

    /// Codes pass on over a folded ReLU + max-pool, flattens and dropouts into a static int8
    /// layer; not over a ReLU after a pool (it would run on codes), an average pool, into a
    /// dynamic layer or a float layer, nor out of the last layer.
    #[test]
    fn codes_chain_only_over_what_the_epilogue_computes_or_passes_through() {
        let conv =
            |s: &str| format!(r#"{{ type = "conv2d-int8", out-channels = 4, kernel = 3{s} }}"#);
        let lin = |s: &str| format!(r#"{{ type = "linear-int8", out-features = 4{s} }}"#);
        let st = |v: f32| format!(", activation-scale = {v}");
        let relu = r#"{ type = "relu" }"#;
        let pool = r#"{ type = "max-pool2d", kernel = 2 }"#;
        let flat = r#"{ type = "flatten" }"#;
        let drop = r#"{ type = "dropout", p = 0.1 }"#;
        let cases = [
            (
                format!(
                    "{}, {relu}, {pool}, {}, {relu}, {pool}, {flat}, {drop}, {}, {relu}, {}",
                    conv(&st(0.1)),
                    conv(&st(0.2)),
                    lin(&st(0.3)),
                    lin(&st(0.4))
                ),
                vec![Some(0.2), Some(0.3), Some(0.4), None],
            ),
            (
                format!("{}, {pool}, {relu}, {}", conv(&st(0.1)), conv(&st(0.2))),
                vec![None, None],
            ),
            (
                format!(
                    r#"{}, {{ type = "avg-pool2d", kernel = 2 }}, {}"#,
                    conv(&st(0.1)),
                    conv(&st(0.2))
                ),
                vec![None, None],
            ),
            (
                format!(
                    "{}, {relu}, {}, {relu}, {}",
                    lin(&st(0.1)),
                    lin(""),
                    lin(&st(0.3))
                ),
                vec![None, None, None],
            ),
            (
                format!(
                    r#"{}, {relu}, {{ type = "linear", out-features = 3 }}, {}"#,
                    lin(&st(0.1)),
                    lin(&st(0.3))
                ),
                vec![None, None],
            ),
            // A linear layer's max-pool is not folded: no codes over it.
            (
                format!("{flat}, {}, {pool}, {}", lin(&st(0.1)), lin(&st(0.3))),
                vec![None, None],
            ),
        ];
        for (spec, want) in cases {
            let mut l = layers(&spec);
            let n = chain_codes(&mut l);
            assert_eq!(output_scales(&l), want, "{spec}");
            assert_eq!(n, want.iter().flatten().count(), "{spec}");
        }
    }
}
