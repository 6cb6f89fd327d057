//! Pruning.
//!
//! - **Structured** ([`prune_structured`]): in every `conv2d` (groups 1) and `linear` whose
//!   outputs feed another `conv2d` or `linear` through channel-wise layers only (batch norm,
//!   activations, dropout, pooling, `flatten`), the fraction `ratio` of output channels (neurons)
//!   with the smallest L1 weight norm is removed (Li et al. 2017, "Pruning Filters for Efficient
//!   ConvNets"), together with their bias and batch-norm entries and the matching input channels
//!   (or, after a `flatten`, the matching `H·W` input columns) of the consumer. The model is
//!   smaller and faster, not only sparse. The last layer's outputs (the classes) are never pruned.
//! - **Unstructured** ([`prune_magnitude`]): the fraction `ratio` of all conv/linear weights with
//!   the smallest magnitude (one global threshold) is set to zero; the returned masks keep them
//!   zero during a fine-tune ([`crate::finetune`]).

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use lepton_nn::LayerSpec;

use crate::error::{Error, Result};
use crate::fold::to_vec;
use crate::net::Net;

/// Check a pruning ratio: in `[0, 1)`.
pub fn check_ratio(ratio: f64) -> Result<()> {
    if (0.0..1.0).contains(&ratio) {
        Ok(())
    } else {
        Err(Error::Setting {
            field: "prune",
            message: format!(
                "{ratio} is outside [0, 1): the fraction of weights or channels to remove"
            ),
        })
    }
}

fn out_channels(l: &LayerSpec) -> Option<usize> {
    match l {
        LayerSpec::Conv2d(c) if c.groups == 1 => Some(c.out_channels),
        LayerSpec::Linear(c) if c.tie.is_none() => Some(c.out_features),
        _ => None,
    }
}

/// The consumer of layer `i`'s channels, the batch norms on the way and the number of input
/// columns per channel at the consumer (`H·W` after a `flatten`, else 1).
fn consumer(net: &Net, shapes: &[Vec<usize>], i: usize) -> Option<(usize, Vec<usize>, usize)> {
    let mut norms = Vec::new();
    let mut per = 1;
    let mut flat = false;
    for j in i + 1..net.spec.layers.len() {
        match &net.spec.layers[j] {
            LayerSpec::BatchNorm1d(_) | LayerSpec::BatchNorm2d(_) if !flat => norms.push(j),
            LayerSpec::Relu {}
            | LayerSpec::LeakyRelu(_)
            | LayerSpec::Gelu {}
            | LayerSpec::Sigmoid {}
            | LayerSpec::Tanh {}
            | LayerSpec::Dropout(_) => {}
            LayerSpec::MaxPool2d(_) | LayerSpec::AvgPool2d(_) if !flat => {}
            LayerSpec::Flatten {} if !flat => {
                let s = &shapes[j - 1];
                per = s[1..].iter().product();
                flat = true;
            }
            LayerSpec::Conv2d(c) if c.groups == 1 && !flat => return Some((j, norms, 1)),
            LayerSpec::Linear(c) if c.tie.is_none() => {
                // A linear over [T, F] (no flatten) keeps its channels in the last dimension.
                let s = &shapes[j - 1];
                if !flat && s.len() != 1 && !matches!(net.spec.layers[i], LayerSpec::Linear(_)) {
                    return None;
                }
                return Some((j, norms, per));
            }
            _ => return None,
        }
    }
    None
}

fn select(t: &Tensor, keep: &Tensor, dim: usize) -> Result<Tensor> {
    t.index_select(keep, dim)
        .map_err(Error::tensor("structured pruning"))
}

/// Structured L1 pruning (see the module docs); returns the channels removed.
pub fn prune_structured(net: &mut Net, ratio: f64) -> Result<usize> {
    check_ratio(ratio)?;
    let shapes = net.spec.shapes(&net.input).map_err(|source| Error::Build {
        step: "structured pruning".into(),
        source,
    })?;
    let mut removed = 0;
    for i in 0..net.spec.layers.len() {
        let Some(co) = out_channels(&net.spec.layers[i]) else {
            continue;
        };
        let Some((j, norms, per)) = consumer(net, &shapes, i) else {
            continue;
        };
        let k = ((co as f64 * (1.0 - ratio)).round() as usize).clamp(1, co);
        if k == co {
            continue;
        }
        let missing = |name: String| Error::Model {
            step: "structured pruning",
            message: format!("{name} is missing"),
        };
        let wname = format!("layers.{i}.weight");
        let w = net
            .tensors
            .get(&wname)
            .ok_or_else(|| missing(wname.clone()))?;
        let wv = to_vec(w, "structured pruning")?;
        let per_row = wv.len() / co;
        let mut order: Vec<(f32, usize)> = wv
            .chunks_exact(per_row)
            .map(|r| r.iter().map(|v| v.abs()).sum::<f32>())
            .zip(0..)
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut kept: Vec<u32> = order[..k].iter().map(|&(_, c)| c as u32).collect();
        kept.sort_unstable();
        let dev = Device::Cpu;
        let idx =
            Tensor::new(kept.as_slice(), &dev).map_err(Error::tensor("structured pruning"))?;
        // The layer's own rows (weight, bias) and the batch norms' entries.
        let mut names = vec![wname, format!("layers.{i}.bias")];
        for n in &norms {
            for t in ["weight", "bias", "running_mean", "running_var"] {
                names.push(format!("layers.{n}.{t}"));
            }
        }
        for name in names {
            if let Some(t) = net.tensors.get(&name) {
                let t = select(t, &idx, 0)?;
                net.tensors.insert(name, t);
            }
        }
        // The consumer's input channels (conv: dim 1) or columns (linear: per-channel blocks).
        let cname = format!("layers.{j}.weight");
        let cw = net
            .tensors
            .get(&cname)
            .ok_or_else(|| missing(cname.clone()))?;
        let cols: Vec<u32> = kept
            .iter()
            .flat_map(|&c| (c as usize * per..(c as usize + 1) * per).map(|v| v as u32))
            .collect();
        let cidx =
            Tensor::new(cols.as_slice(), &dev).map_err(Error::tensor("structured pruning"))?;
        let cw = select(cw, &cidx, 1)?;
        net.tensors.insert(cname, cw);
        match &mut net.spec.layers[i] {
            LayerSpec::Conv2d(c) => c.out_channels = k,
            LayerSpec::Linear(c) => c.out_features = k,
            _ => unreachable!("out_channels matched"),
        }
        if let LayerSpec::Linear(c) = &mut net.spec.layers[j] {
            if c.in_features.is_some() {
                c.in_features = Some(k * per);
            }
        }
        removed += co - k;
    }
    Ok(removed)
}

/// Global magnitude pruning (see the module docs); returns the masks (1 kept, 0 pruned) by
/// weight name.
pub fn prune_magnitude(net: &mut Net, ratio: f64) -> Result<HashMap<String, Tensor>> {
    check_ratio(ratio)?;
    let step = "magnitude pruning";
    let names: Vec<String> = net
        .spec
        .layers
        .iter()
        .enumerate()
        .filter(|(_, l)| out_channels(l).is_some())
        .map(|(i, _)| format!("layers.{i}.weight"))
        .filter(|n| net.tensors.contains_key(n))
        .collect();
    let mut all: Vec<f32> = Vec::new();
    for n in &names {
        all.extend(to_vec(&net.tensors[n], step)?.iter().map(|v| v.abs()));
    }
    let mut masks = HashMap::new();
    if all.is_empty() {
        return Ok(masks);
    }
    let cut = ((all.len() as f64 * ratio) as usize).min(all.len() - 1);
    let (_, threshold, _) = all.select_nth_unstable_by(cut, f32::total_cmp);
    let threshold = *threshold;
    // Ties at the threshold: keep the count exact by pruning values strictly below it, then as
    // many equal ones as needed.
    let mut budget = (all.len() as f64 * ratio) as usize;
    for n in &names {
        let t = &net.tensors[n];
        let shape = t.dims().to_vec();
        let v = to_vec(t, step)?;
        let mut mask = vec![1f32; v.len()];
        for (m, x) in mask.iter_mut().zip(&v) {
            if x.abs() < threshold && budget > 0 {
                *m = 0.0;
                budget -= 1;
            }
        }
        for (m, x) in mask.iter_mut().zip(&v) {
            if *m == 1.0 && x.abs() == threshold && budget > 0 {
                *m = 0.0;
                budget -= 1;
            }
        }
        let pruned: Vec<f32> = v.iter().zip(&mask).map(|(a, b)| a * b).collect();
        let dev = Device::Cpu;
        net.tensors.insert(
            n.clone(),
            Tensor::from_vec(pruned, shape.as_slice(), &dev).map_err(Error::tensor(step))?,
        );
        masks.insert(
            n.clone(),
            Tensor::from_vec(mask, shape.as_slice(), &dev).map_err(Error::tensor(step))?,
        );
    }
    Ok(masks)
}
