//! Intermediate feature maps of a sequential model: the output of `model.layers[i]` for one
//! input, with each channel's range, for `lepton explain --layer NAME`.
//!
//! The model is rebuilt from the spec's first `i + 1` layers over the same weights (parameter
//! names are per layer index, so the prefix loads unchanged); the fusion pass then folds exactly
//! what the full model folds up to that layer, so the map of a `relu` after a `conv2d` is the
//! activated convolution and the map of the `conv2d` itself is its raw output.
//!
//! # Shapes
//! `x`: one sample; the map is that layer's per-sample output (`[C, H, W]` for a conv block).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lepton_nn::{Model, ModelSpec};
use serde::Serialize;

use crate::error::{during, Error, Result};
use crate::scorer::values;

/// One layer's output for one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureMaps {
    /// `model.layers[layer]`.
    pub layer: usize,
    /// The layer's type (`conv2d`, `relu`, ...).
    pub kind: String,
    /// The per-sample output shape; `values` in row-major order.
    pub shape: Vec<usize>,
    #[serde(skip)]
    pub values: Vec<f32>,
    /// Per channel (the first dimension; one channel for a flat output).
    pub min: Vec<f32>,
    pub max: Vec<f32>,
}

/// The index of the layer `name`: an index (`3`), a type (`conv2d`: its first layer of that
/// type) or a type and its ordinal among the layers of that type (`conv2d.1`: the second).
pub fn resolve_layer(spec: &ModelSpec, name: &str) -> Result<usize> {
    let kinds: Vec<&str> = spec.layers.iter().map(|l| l.kind()).collect();
    let found = if let Ok(i) = name.parse::<usize>() {
        (i < kinds.len()).then_some(i)
    } else {
        let (kind, nth) = match name.rsplit_once('.') {
            Some((k, n)) if n.parse::<usize>().is_ok() => (k, n.parse().unwrap_or(0)),
            _ => (name, 0),
        };
        kinds
            .iter()
            .enumerate()
            .filter(|(_, k)| **k == kind)
            .nth(nth)
            .map(|(i, _)| i)
    };
    found.ok_or_else(|| {
        let list: Vec<String> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{i}: {k}"))
            .collect();
        Error::invalid(
            "layer",
            format!(
                "no layer '{name}' in the model (layers: {})",
                list.join(", ")
            ),
        )
    })
}

/// The output of `model.layers[layer]` for the sample `x`; `tensors` are the model's weights by
/// parameter name (a photon's `tensors()`).
pub fn feature_maps(
    spec: &ModelSpec,
    input: &[usize],
    tensors: &HashMap<String, Tensor>,
    layer: usize,
    x: &Tensor,
) -> Result<FeatureMaps> {
    if layer >= spec.layers.len() {
        return Err(Error::invalid(
            "layer",
            format!(
                "index {layer} but the model has {} layers",
                spec.layers.len()
            ),
        ));
    }
    let prefix = ModelSpec {
        input: spec.input.clone(),
        layers: spec.layers[..=layer].to_vec(),
    };
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
    let model = Model::new(&prefix, input, vb).map_err(|e| Error::Model {
        op: "building the model up to the layer",
        source: candle_core::Error::Msg(e.to_string()),
    })?;
    let y = candle_nn::ModuleT::forward_t(
        &model,
        &x.unsqueeze(0).map_err(during("preparing the input"))?,
        false,
    )
    .and_then(|y| y.squeeze(0))
    .map_err(during("forward pass to the layer"))?;
    let shape = y.dims().to_vec();
    let values = values(&y)?;
    let per = if shape.len() >= 2 {
        values.len() / shape[0].max(1)
    } else {
        values.len()
    };
    let (min, max) = values
        .chunks(per.max(1))
        .map(|c| {
            c.iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                })
        })
        .unzip();
    Ok(FeatureMaps {
        layer,
        kind: spec.layers[layer].kind().to_string(),
        shape,
        values,
        min,
        max,
    })
}
