//! int8 quantization: every `conv2d` (groups 1) and `linear` (no tie) becomes `conv2d-int8` /
//! `linear-int8` with per-output-channel symmetric int8 weights (`lepton_quant`), after batch
//! norms are folded into them ([`crate::fold`]).
//!
//! - [`Quantize::Int8`] (static): each quantized layer's input scale is `max |x| / 127` over the
//!   calibration samples (the layer's inputs computed by the f32 model before it).
//! - [`Quantize::DynamicInt8`]: activations are quantized per 32-value block at run time (no
//!   calibration), the choice for linear-heavy models and transformers.

use candle_core::Tensor;
use lepton_data::Dataset;
use lepton_nn::layers::{Conv2dInt8Config, LinearInt8Config};
use lepton_nn::{LayerSpec, ModelSpec};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fold::{fold_batch_norms, to_vec};
use crate::net::{check_shape, logits, Net};

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

/// Most calibration samples per forward pass.
const CALIBRATION_BATCH: usize = 256;

/// `max |x|` of the input of each layer over `samples` (the first of `data`).
fn input_ranges(net: &Net, data: &Dataset, samples: usize) -> Result<Vec<f32>> {
    let n = samples.min(data.len());
    let mut amax = vec![0f32; net.spec.layers.len()];
    // The input of layer i is the output of the model cut after layer i - 1.
    for (i, a) in amax.iter_mut().enumerate() {
        let upto = if i == 0 {
            None
        } else {
            let spec = ModelSpec {
                input: net.spec.input.clone(),
                layers: net.spec.layers[..i].to_vec(),
            };
            Some(Net::new(spec, net.input.clone(), net.tensors.clone()).model("calibration")?)
        };
        for start in (0..n).step_by(CALIBRATION_BATCH) {
            let end = (start + CALIBRATION_BATCH).min(n);
            let x = match &upto {
                Some(m) => logits(m, data, start..end)?,
                None => {
                    let per = data.sample_len();
                    Tensor::from_slice(
                        &data.features[start * per..end * per],
                        end * per - start * per,
                        &candle_core::Device::Cpu,
                    )
                    .map_err(Error::tensor("calibration"))?
                }
            };
            let m: f32 = x
                .abs()
                .and_then(|t| t.flatten_all()?.max(0)?.to_scalar())
                .map_err(Error::tensor("calibration ranges"))?;
            *a = a.max(m);
        }
    }
    Ok(amax)
}

/// Quantize `net` in place; `calibration` (with at least one sample) is required for
/// [`Quantize::Int8`]. Returns how many layers became int8.
pub fn quantize(
    net: &mut Net,
    mode: Quantize,
    calibration: Option<(&Dataset, usize)>,
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
        (Quantize::Int8, Some((data, samples))) => {
            check_shape(net, data, "calibration data")?;
            if samples == 0 {
                return Err(Error::Setting {
                    field: "calibration-samples",
                    message: "must be at least 1 for static int8".into(),
                });
            }
            Some(input_ranges(net, data, samples)?)
        }
        (Quantize::Int8, None) => {
            return Err(Error::Data {
                what: "calibration data",
                message: "static int8 needs calibration samples (or use dynamic-int8)".into(),
            })
        }
    };
    let mut count = 0;
    for i in 0..net.spec.layers.len() {
        // Every convolution, the first (fan-in 9 to 27) too: the int8 kernel reads patches in
        // place (no padded patch rows), and its fused pool replaces the f32 path's.
        let scale = ranges
            .as_ref()
            .map(|r| (r[i] / 127.0).max(f32::MIN_POSITIVE));
        let new = match &net.spec.layers[i] {
            LayerSpec::Conv2d(c) if c.groups == 1 => LayerSpec::Conv2dInt8(Conv2dInt8Config {
                out_channels: c.out_channels,
                kernel: c.kernel,
                stride: c.stride,
                padding: c.padding,
                dilation: c.dilation,
                bias: c.bias,
                activation_scale: scale,
            }),
            LayerSpec::Linear(c) if c.tie.is_none() => LayerSpec::LinearInt8(LinearInt8Config {
                out_features: c.out_features,
                in_features: c.in_features,
                bias: c.bias,
                activation_scale: scale,
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
    Ok(count)
}
