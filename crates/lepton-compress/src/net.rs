//! [`Net`]: a model as the compression steps see it (spec, per-sample input shape and the
//! tensors under their `state_dict` names), its evaluation and its measurements.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder};
use lepton_data::{Dataset, Targets};
use lepton_nn::{LayerSpec, Model, ModelSpec};

use crate::error::{Error, Result};

/// A model's spec, per-sample input shape and tensors (`layers.{i}.weight`, ...).
#[derive(Debug, Clone)]
pub struct Net {
    pub spec: ModelSpec,
    pub input: Vec<usize>,
    pub tensors: HashMap<String, Tensor>,
}

/// Samples per forward pass when evaluating.
const EVAL_BATCH: usize = 500;

impl Net {
    pub fn new(spec: ModelSpec, input: Vec<usize>, tensors: HashMap<String, Tensor>) -> Self {
        Self {
            spec,
            input,
            tensors,
        }
    }

    /// Build the model for inference; `step` names the step in errors.
    pub fn model(&self, step: &str) -> Result<Model> {
        let vb = VarBuilder::from_tensors(self.tensors.clone(), DType::F32, &Device::Cpu);
        Model::new(&self.spec, &self.input, vb).map_err(|source| Error::Build {
            step: step.to_string(),
            source,
        })
    }

    /// The tensor `layers.{i}.{name}`.
    pub(crate) fn get(&self, i: usize, name: &str) -> Option<&Tensor> {
        self.tensors.get(&format!("layers.{i}.{name}"))
    }

    /// Whether any layer is already int8.
    pub fn is_int8(&self) -> bool {
        self.spec
            .layers
            .iter()
            .any(|l| matches!(l, LayerSpec::LinearInt8(_) | LayerSpec::Conv2dInt8(_)))
    }

    /// Stored values: every element of every tensor (int8 codes count one each).
    pub fn parameter_count(&self) -> usize {
        self.tensors.values().map(Tensor::elem_count).sum()
    }

    /// Bytes of the tensors as a safetensors blob (what a package stores besides its header).
    pub fn size_bytes(&self) -> Result<usize> {
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let header: usize = names.iter().map(|n| n.len() + 64).sum();
        let data: usize = self
            .tensors
            .values()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum();
        Ok(8 + header + data)
    }

    /// Which of the zero weights of conv/linear layers are zero: the fraction of zeros over
    /// all their weights (unstructured sparsity).
    pub fn sparsity(&self) -> Result<f64> {
        let (mut zeros, mut total) = (0usize, 0usize);
        for (i, l) in self.spec.layers.iter().enumerate() {
            if !matches!(l, LayerSpec::Linear(_) | LayerSpec::Conv2d(_)) {
                continue;
            }
            if let Some(w) = self.get(i, "weight") {
                let v: Vec<f32> = w
                    .flatten_all()
                    .and_then(|t| t.to_vec1())
                    .map_err(Error::tensor("counting zero weights"))?;
                zeros += v.iter().filter(|x| **x == 0.0).count();
                total += v.len();
            }
        }
        Ok(if total == 0 {
            0.0
        } else {
            zeros as f64 / total as f64
        })
    }
}

/// Check that `data` has the model's per-sample shape; `what` names the data in the error.
pub fn check_shape(net: &Net, data: &Dataset, what: &'static str) -> Result<()> {
    if data.sample_shape != net.input {
        return Err(Error::Data {
            what,
            message: format!(
                "samples of shape {:?}, but the model takes {:?}",
                data.sample_shape, net.input
            ),
        });
    }
    if data.is_empty() {
        return Err(Error::Data {
            what,
            message: "no samples".into(),
        });
    }
    Ok(())
}

/// Logits of `model` for samples `range` of `data`.
pub(crate) fn logits(
    model: &Model,
    data: &Dataset,
    range: std::ops::Range<usize>,
) -> Result<Tensor> {
    let per = data.sample_len();
    let mut shape = vec![range.len()];
    shape.extend_from_slice(&data.sample_shape);
    let x = Tensor::from_slice(
        &data.features[range.start * per..range.end * per],
        shape,
        &Device::Cpu,
    )
    .map_err(Error::tensor("batching samples"))?;
    model
        .forward_t(&x, false)
        .map_err(Error::tensor("forward pass"))
}

/// Accuracy in percent of `net` on a classification dataset.
pub fn accuracy(net: &Net, data: &Dataset, step: &str) -> Result<f64> {
    let Targets::Classes { labels, .. } = &data.targets else {
        return Err(Error::Data {
            what: "evaluation data",
            message: "the gate compares classification accuracy; this is a regression dataset"
                .into(),
        });
    };
    check_shape(net, data, "evaluation data")?;
    let model = net.model(step)?;
    let mut right = 0usize;
    for start in (0..data.len()).step_by(EVAL_BATCH) {
        let end = (start + EVAL_BATCH).min(data.len());
        let pred: Vec<u32> = logits(&model, data, start..end)?
            .argmax(1)
            .and_then(|t| t.to_vec1())
            .map_err(Error::tensor("argmax"))?;
        right += pred
            .iter()
            .zip(&labels[start..end])
            .filter(|(p, l)| p == l)
            .count();
    }
    Ok(100.0 * right as f64 / data.len() as f64)
}

/// Speed of one model: batch-1 latency and batch-64 throughput.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Speed {
    /// Median milliseconds per batch-1 forward pass.
    pub latency_ms: f64,
    /// Samples per second at batch 64 (median of the timed passes).
    pub throughput: f64,
}

/// Measure the models of `nets` on the first samples of `data` (repeated if fewer than 64):
/// after one warm-up each, `reps` rounds, each timing every model once in turn at batch 1 and
/// then at batch 64; medians. Alternating keeps a load change on a shared machine from favouring
/// one model (the before/after ratio is the robust number).
pub fn speeds<const N: usize>(nets: [&Net; N], data: &Dataset, reps: usize) -> Result<[Speed; N]> {
    let mut models = Vec::with_capacity(N);
    for net in nets {
        check_shape(net, data, "timing data")?;
        models.push(net.model("timing")?);
    }
    let per = data.sample_len();
    let batch = |b: usize| -> Result<Tensor> {
        let v: Vec<f32> = (0..b)
            .flat_map(|i| {
                let j = i % data.len();
                data.features[j * per..(j + 1) * per].iter().copied()
            })
            .collect();
        let mut shape = vec![b];
        shape.extend_from_slice(&data.sample_shape);
        Tensor::from_vec(v, shape, &Device::Cpu).map_err(Error::tensor("timing batch"))
    };
    let (one, many) = (batch(1)?, batch(64)?);
    let pass = |m: &lepton_nn::Model, x: &Tensor| -> Result<f64> {
        let s = Instant::now();
        m.forward_t(x, false).map_err(Error::tensor("timing"))?;
        Ok(s.elapsed().as_secs_f64())
    };
    for m in &models {
        pass(m, &one)?;
        pass(m, &many)?;
    }
    let mut times = vec![(Vec::new(), Vec::new()); N];
    for _ in 0..reps.max(1) {
        for (m, (t1, t64)) in models.iter().zip(&mut times) {
            t1.push(pass(m, &one)?);
            t64.push(pass(m, &many)?);
        }
    }
    let median = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    Ok(std::array::from_fn(|i| {
        let (t1, t64) = &mut times[i];
        Speed {
            latency_ms: median(t1) * 1e3,
            throughput: 64.0 / median(t64),
        }
    }))
}
