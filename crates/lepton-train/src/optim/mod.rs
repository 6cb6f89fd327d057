//! Optimizers over candle [`Var`]s, with PyTorch semantics and savable state.
//!
//! | file | what |
//! |---|---|
//! | [`sgd`] | SGD with momentum, dampening, Nesterov and L2 weight decay (`torch.optim.SGD`) |
//! | [`adam`] | Adam (L2 weight decay) and AdamW (decoupled weight decay) (`torch.optim.Adam[W]`) |
//! | [`kernel`] | the fused in-place update: a candle `InplaceOp2` over contiguous `f32` slices |
//!
//! The update of each parameter is a single pass over its elements (rayon-parallel for large
//! tensors) that writes the parameter in place, with the optimizer state kept as host `f32`
//! vectors. This avoids the 4-8 temporary tensors per parameter that the same update costs as
//! candle tensor ops. Parameters without a gradient are skipped, as PyTorch skips `grad is None`.

pub mod adam;
pub mod kernel;
pub mod sgd;

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use adam::{Adam, AdamConfig};
pub use sgd::{Sgd, SgdConfig};

/// Names of model variables that are buffers, not trainable parameters (batch-norm statistics).
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean")
        || name.ends_with("running_var")
        || name.ends_with("num_batches_tracked")
}

/// The trainable parameters of a `VarMap`, sorted by name (so every run visits them in the same
/// order).
pub fn trainable_params(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap
        .data()
        .lock()
        .expect("the VarMap mutex is never poisoned by lepton");
    let mut params: Vec<(String, Var)> = data
        .iter()
        .filter(|(n, _)| !is_buffer(n))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
}

/// An optimizer: one step updates every parameter that has a gradient.
pub trait Optimizer: Send {
    /// One update with learning rate `lr`; every gradient is first multiplied by `grad_scale`
    /// (gradient clipping folds into the update this way, with no extra tensor pass).
    fn step(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        lr: f64,
        grad_scale: f32,
    ) -> Result<()>;
    /// The optimizer state as named tensors, keyed `{parameter name}.{buffer}`, for checkpoints.
    fn state(&self) -> Result<Vec<(String, Tensor)>>;
    /// Restore the state written by [`Optimizer::state`]; errors name a missing or mis-shaped entry.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;
}

/// The `[optimizer]` section of a spec.
///
/// In TOML it is one flat table, `kind = "sgd" | "adam" | "adamw"` plus that kind's keys (a key
/// of another kind is an error naming it); flat so that a typo or a wrong type is reported at its
/// own line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawOptimizerSpec", into = "RawOptimizerSpec")]
pub enum OptimizerSpec {
    /// Stochastic gradient descent, `torch.optim.SGD`.
    Sgd(SgdConfig),
    /// Adam with L2 weight decay added to the gradient, `torch.optim.Adam`.
    Adam(AdamConfig),
    /// Adam with decoupled weight decay, `torch.optim.AdamW`.
    AdamW(AdamConfig),
}

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    Sgd,
    Adam,
    #[serde(rename = "adamw")]
    AdamW,
}

/// The flat TOML form of [`OptimizerSpec`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawOptimizerSpec {
    kind: OptimizerKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight_decay: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    momentum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dampening: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nesterov: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    betas: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    eps: Option<f64>,
}

impl TryFrom<RawOptimizerSpec> for OptimizerSpec {
    type Error = String;
    fn try_from(r: RawOptimizerSpec) -> std::result::Result<Self, String> {
        let sgd_only = [
            ("momentum", r.momentum.is_some()),
            ("dampening", r.dampening.is_some()),
            ("nesterov", r.nesterov.is_some()),
        ];
        let adam_only = [("betas", r.betas.is_some()), ("eps", r.eps.is_some())];
        let foreign = |keys: &[(&str, bool)], kind: &str| -> std::result::Result<(), String> {
            match keys.iter().find(|(_, set)| *set) {
                Some((k, _)) => Err(format!("optimizer.{k} does not apply to kind = \"{kind}\"")),
                None => Ok(()),
            }
        };
        Ok(match r.kind {
            OptimizerKind::Sgd => {
                foreign(&adam_only, "sgd")?;
                let d = SgdConfig::default();
                OptimizerSpec::Sgd(SgdConfig {
                    lr: r.lr.unwrap_or(d.lr),
                    momentum: r.momentum.unwrap_or(d.momentum),
                    dampening: r.dampening.unwrap_or(d.dampening),
                    nesterov: r.nesterov.unwrap_or(d.nesterov),
                    weight_decay: r.weight_decay.unwrap_or(d.weight_decay),
                })
            }
            OptimizerKind::Adam | OptimizerKind::AdamW => {
                let name = if r.kind == OptimizerKind::Adam {
                    "adam"
                } else {
                    "adamw"
                };
                foreign(&sgd_only, name)?;
                let d = AdamConfig::default();
                let c = AdamConfig {
                    lr: r.lr.unwrap_or(d.lr),
                    betas: r.betas.unwrap_or(d.betas),
                    eps: r.eps.unwrap_or(d.eps),
                    weight_decay: r.weight_decay.unwrap_or(d.weight_decay),
                };
                if r.kind == OptimizerKind::Adam {
                    OptimizerSpec::Adam(c)
                } else {
                    OptimizerSpec::AdamW(c)
                }
            }
        })
    }
}

impl From<OptimizerSpec> for RawOptimizerSpec {
    fn from(s: OptimizerSpec) -> Self {
        let empty = RawOptimizerSpec {
            kind: OptimizerKind::Sgd,
            lr: None,
            weight_decay: None,
            momentum: None,
            dampening: None,
            nesterov: None,
            betas: None,
            eps: None,
        };
        let adam = matches!(s, OptimizerSpec::Adam(_));
        match s {
            OptimizerSpec::Sgd(c) => RawOptimizerSpec {
                kind: OptimizerKind::Sgd,
                lr: Some(c.lr),
                weight_decay: Some(c.weight_decay),
                momentum: Some(c.momentum),
                dampening: Some(c.dampening),
                nesterov: Some(c.nesterov),
                ..empty
            },
            OptimizerSpec::Adam(c) | OptimizerSpec::AdamW(c) => RawOptimizerSpec {
                kind: if adam {
                    OptimizerKind::Adam
                } else {
                    OptimizerKind::AdamW
                },
                lr: Some(c.lr),
                weight_decay: Some(c.weight_decay),
                betas: Some(c.betas),
                eps: Some(c.eps),
                ..empty
            },
        }
    }
}

impl Default for OptimizerSpec {
    /// Adam with lr 1e-3.
    fn default() -> Self {
        OptimizerSpec::Adam(AdamConfig::default())
    }
}

impl OptimizerSpec {
    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerSpec::Sgd(c) => c.lr,
            OptimizerSpec::Adam(c) | OptimizerSpec::AdamW(c) => c.lr,
        }
    }

    /// Range checks; errors name the key (`optimizer.lr`, ...).
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, field: &str, msg: String| {
            if ok {
                Ok(())
            } else {
                Err(Error::spec(format!("optimizer.{field}"), msg))
            }
        };
        let lr = self.lr();
        check(
            lr > 0.0 && lr.is_finite(),
            "lr",
            format!("must be > 0, got {lr}"),
        )?;
        match self {
            OptimizerSpec::Sgd(c) => {
                check(
                    (0.0..1.0).contains(&c.momentum),
                    "momentum",
                    format!("must be in [0, 1), got {}", c.momentum),
                )?;
                check(
                    (0.0..=1.0).contains(&c.dampening),
                    "dampening",
                    format!("must be in [0, 1], got {}", c.dampening),
                )?;
                check(
                    c.weight_decay >= 0.0,
                    "weight-decay",
                    format!("must be >= 0, got {}", c.weight_decay),
                )?;
                check(
                    !c.nesterov || (c.momentum > 0.0 && c.dampening == 0.0),
                    "nesterov",
                    "Nesterov momentum needs momentum > 0 and dampening = 0".into(),
                )
            }
            OptimizerSpec::Adam(c) | OptimizerSpec::AdamW(c) => {
                let [b1, b2] = c.betas;
                check(
                    (0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2),
                    "betas",
                    format!("both must be in [0, 1), got [{b1}, {b2}]"),
                )?;
                check(c.eps > 0.0, "eps", format!("must be > 0, got {}", c.eps))?;
                check(
                    c.weight_decay >= 0.0,
                    "weight-decay",
                    format!("must be >= 0, got {}", c.weight_decay),
                )
            }
        }
    }

    /// Build the optimizer over the given named parameters.
    pub fn build(&self, params: Vec<(String, Var)>) -> Box<dyn Optimizer> {
        match self {
            OptimizerSpec::Sgd(c) => Box::new(Sgd::new(params, c.clone())),
            OptimizerSpec::Adam(c) => Box::new(Adam::new(params, c.clone(), false)),
            OptimizerSpec::AdamW(c) => Box::new(Adam::new(params, c.clone(), true)),
        }
    }
}

/// Check that a state tensor exists with the right length and return it as host `f32`.
pub(crate) fn state_vec(
    state: &HashMap<String, Tensor>,
    key: &str,
    len: usize,
) -> Result<Vec<f32>> {
    let t = state
        .get(key)
        .ok_or_else(|| Error::Invalid(format!("optimizer state: missing `{key}`")))?;
    if t.elem_count() != len {
        return Err(Error::Invalid(format!(
            "optimizer state: `{key}` has {} elements, the parameter has {len}",
            t.elem_count()
        )));
    }
    t.flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|source| Error::Tensor {
            op: format!("reading optimizer state `{key}`"),
            source,
        })
}

/// Read a scalar counter saved as a one-element `f64` tensor.
pub(crate) fn state_scalar(state: &HashMap<String, Tensor>, key: &str) -> Result<f64> {
    let t = state
        .get(key)
        .ok_or_else(|| Error::Invalid(format!("optimizer state: missing `{key}`")))?;
    t.flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F64))
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(|source| Error::Tensor {
            op: format!("reading optimizer state `{key}`"),
            source,
        })?
        .first()
        .copied()
        .ok_or_else(|| Error::Invalid(format!("optimizer state: `{key}` is empty")))
}

/// A host vector as a 1-D CPU tensor.
pub(crate) fn vec_tensor(v: &[f32]) -> Result<Tensor> {
    Tensor::from_slice(v, v.len(), &candle_core::Device::Cpu).map_err(|source| Error::Tensor {
        op: "saving optimizer state".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    //! Against `bench/parity/optim_golden.json`, written by PyTorch (`make_optim_golden.py`).
    use super::*;
    use candle_core::Device;

    const GOLDEN: &str = include_str!("../../../../bench/parity/optim_golden.json");

    fn floats(v: &serde_json::Value) -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    }

    fn spec_of(case: &serde_json::Value) -> OptimizerSpec {
        let mut obj = case.as_object().unwrap().clone();
        obj.remove("steps");
        let obj: serde_json::Map<String, serde_json::Value> = obj
            .into_iter()
            .map(|(k, v)| (k.replace('_', "-"), v))
            .collect();
        toml::from_str(&toml::to_string(&serde_json::Value::Object(obj)).unwrap()).unwrap()
    }

    /// Run an optimizer on `loss = sum(c p^2 / 2 + d p)` and compare every step with PyTorch.
    fn check(name: &str, case: &serde_json::Value, g: &serde_json::Value, reload_every_step: bool) {
        let spec = spec_of(case);
        let (c, d) = (floats(&g["c"]), floats(&g["d"]));
        let dev = Device::Cpu;
        let p = Var::from_slice(&floats(&g["p0"]), 6, &dev).unwrap();
        let c = Tensor::from_slice(&c, 6, &dev).unwrap();
        let d = Tensor::from_slice(&d, 6, &dev).unwrap();
        let mut opt = spec.build(vec![("w".into(), p.clone())]);
        for (i, want) in case["steps"].as_array().unwrap().iter().enumerate() {
            let loss = ((p.as_tensor().sqr().unwrap() * &c).unwrap() * 0.5).unwrap();
            let loss = (loss + (p.as_tensor() * &d).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, spec.lr(), 1.0).unwrap();
            if reload_every_step {
                // Save and restore the state into a fresh optimizer: must not change anything.
                let state: HashMap<String, Tensor> = opt.state().unwrap().into_iter().collect();
                opt = spec.build(vec![("w".into(), p.clone())]);
                opt.load_state(&state).unwrap();
            }
            let got = p.as_tensor().to_vec1::<f32>().unwrap();
            for (k, (a, b)) in got.iter().zip(floats(want)).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 + 1e-5 * b.abs(),
                    "{name} step {i} elem {k}: ours {a}, torch {b}"
                );
            }
        }
    }

    #[test]
    fn optimizers_match_pytorch() {
        let g: serde_json::Value = serde_json::from_str(GOLDEN).unwrap();
        let cases = g["optimizers"].as_object().unwrap();
        assert_eq!(cases.len(), 6);
        for (name, case) in cases {
            check(name, case, &g, false);
            check(name, case, &g, true);
        }
    }

    #[test]
    fn missing_gradient_skips_parameter_and_bad_state_is_refused() {
        let dev = Device::Cpu;
        let a = Var::from_slice(&[1f32, 2.], 2, &dev).unwrap();
        let b = Var::from_slice(&[3f32], 1, &dev).unwrap();
        let spec = OptimizerSpec::Sgd(SgdConfig {
            lr: 0.5,
            momentum: 0.9,
            ..Default::default()
        });
        let mut opt = spec.build(vec![("a".into(), a.clone()), ("b".into(), b.clone())]);
        let grads = a.as_tensor().sum_all().unwrap().backward().unwrap();
        opt.step(&grads, 0.5, 2.0).unwrap();
        assert_eq!(a.as_tensor().to_vec1::<f32>().unwrap(), vec![0.0, 1.0]); // grad 1 * scale 2 * lr 0.5
        assert_eq!(b.as_tensor().to_vec1::<f32>().unwrap(), vec![3.0]);
        let state = opt.state().unwrap();
        assert_eq!(state.len(), 1);
        let bad = HashMap::from([(
            "a.momentum-buffer".to_string(),
            Tensor::zeros(3, candle_core::DType::F32, &dev).unwrap(),
        )]);
        let err = opt.load_state(&bad).unwrap_err().to_string();
        assert!(
            err.contains("a.momentum-buffer") && err.contains("3 elements"),
            "{err}"
        );
    }

    #[test]
    fn validation_names_the_key() {
        let bad = OptimizerSpec::Sgd(SgdConfig {
            momentum: 1.0,
            ..Default::default()
        });
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("optimizer.momentum"));
        let bad = OptimizerSpec::Adam(AdamConfig {
            lr: 0.0,
            ..Default::default()
        });
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("optimizer.lr"));
        let bad = OptimizerSpec::Sgd(SgdConfig {
            nesterov: true,
            ..Default::default()
        });
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("optimizer.nesterov"));
    }

    #[test]
    fn large_tensors_update_in_parallel_chunks_like_small_ones() {
        // Same update on a tensor above PARALLEL_MIN and on each of its elements' values.
        let n = kernel::PARALLEL_MIN * 2 + 7;
        let dev = Device::Cpu;
        let init: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 17.0).collect();
        let big = Var::from_slice(&init, n, &dev).unwrap();
        let spec = OptimizerSpec::Adam(AdamConfig::default());
        let mut opt = spec.build(vec![("big".into(), big.clone())]);
        for _ in 0..3 {
            let grads = big
                .as_tensor()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            opt.step(&grads, 1e-3, 1.0).unwrap();
        }
        let got = big.as_tensor().to_vec1::<f32>().unwrap();
        let small = Var::from_slice(&init[..97], 97, &dev).unwrap();
        let mut opt = spec.build(vec![("small".into(), small.clone())]);
        for _ in 0..3 {
            let grads = small
                .as_tensor()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            opt.step(&grads, 1e-3, 1.0).unwrap();
        }
        let want = small.as_tensor().to_vec1::<f32>().unwrap();
        for (i, v) in got.iter().enumerate() {
            assert_eq!(v.to_bits(), want[i % 97].to_bits(), "element {i}");
        }
    }
}
