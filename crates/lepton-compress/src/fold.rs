//! Batch-norm folding: a `conv2d` (or `linear`) followed by a batch norm becomes one layer with
//! `W' = W · γ / √(σ² + ε)` per output channel and `b' = β + (b − μ) · γ / √(σ² + ε)`, exactly
//! the same function in evaluation mode, one pass less, and a single weight to quantize or prune
//! (PyTorch's `fuse_modules` does the same before static quantization).

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use lepton_nn::LayerSpec;

use crate::error::{Error, Result};
use crate::net::Net;

/// Drop the layers in `removed` (sorted) and rename the tensors of the layers after them.
pub(crate) fn remove_layers(net: &mut Net, removed: &[usize]) {
    let mut map = HashMap::new();
    let mut next = 0;
    for i in 0..net.spec.layers.len() {
        if !removed.contains(&i) {
            map.insert(i, next);
            next += 1;
        }
    }
    let tensors = std::mem::take(&mut net.tensors);
    for (name, t) in tensors {
        let Some(rest) = name.strip_prefix("layers.") else {
            net.tensors.insert(name, t);
            continue;
        };
        let (idx, tail) = rest.split_once('.').unwrap_or((rest, ""));
        match idx.parse::<usize>().ok().and_then(|i| map.get(&i)) {
            Some(j) => {
                net.tensors.insert(format!("layers.{j}.{tail}"), t);
            }
            None if idx.parse::<usize>().is_ok() => {}
            None => {
                net.tensors.insert(name, t);
            }
        }
    }
    let mut i = 0;
    net.spec.layers.retain(|_| {
        let keep = !removed.contains(&i);
        i += 1;
        keep
    });
}

pub(crate) fn to_vec(t: &Tensor, step: &str) -> Result<Vec<f32>> {
    t.flatten_all()
        .and_then(|t| t.to_vec1())
        .map_err(Error::tensor(step.to_string()))
}

pub(crate) fn tensor(v: Vec<f32>, shape: &[usize], step: &str) -> Result<Tensor> {
    Tensor::from_vec(v, shape, &Device::Cpu).map_err(Error::tensor(step.to_string()))
}

/// Fold every batch norm that directly follows a `conv2d` or a `linear` (no tie) into it; returns
/// how many were folded.
pub fn fold_batch_norms(net: &mut Net) -> Result<usize> {
    let step = "folding batch norms";
    let mut removed = Vec::new();
    for i in 1..net.spec.layers.len() {
        let eps = match &net.spec.layers[i] {
            LayerSpec::BatchNorm2d(c) => c.0.eps,
            LayerSpec::BatchNorm1d(c) => c.0.eps,
            _ => continue,
        };
        let prev = i - 1;
        let has_bias = match &mut net.spec.layers[prev] {
            LayerSpec::Conv2d(c) => std::mem::replace(&mut c.bias, true),
            LayerSpec::Linear(c) if c.tie.is_none() => std::mem::replace(&mut c.bias, true),
            _ => continue,
        };
        let get = |name: &str| {
            net.get(i, name).ok_or_else(|| Error::Model {
                step: "folding batch norms",
                message: format!("layers.{i}.{name} is missing"),
            })
        };
        let (g, b, mu, var) = (
            to_vec(get("weight")?, step)?,
            to_vec(get("bias")?, step)?,
            to_vec(get("running_mean")?, step)?,
            to_vec(get("running_var")?, step)?,
        );
        let w = net.get(prev, "weight").ok_or_else(|| Error::Model {
            step: "folding batch norms",
            message: format!("layers.{prev}.weight is missing"),
        })?;
        let shape = w.dims().to_vec();
        let mut wv = to_vec(w, step)?;
        let co = shape[0];
        let per = wv.len() / co;
        let mut bias = match (has_bias, net.get(prev, "bias")) {
            (true, Some(b)) => to_vec(b, step)?,
            _ => vec![0f32; co],
        };
        for c in 0..co {
            let k = g[c] / (var[c] + eps as f32).sqrt();
            for v in &mut wv[c * per..(c + 1) * per] {
                *v *= k;
            }
            bias[c] = b[c] + (bias[c] - mu[c]) * k;
        }
        net.tensors
            .insert(format!("layers.{prev}.weight"), tensor(wv, &shape, step)?);
        net.tensors
            .insert(format!("layers.{prev}.bias"), tensor(bias, &[co], step)?);
        removed.push(i);
    }
    remove_layers(net, &removed);
    Ok(removed.len())
}
