//! SGD with momentum, dampening, Nesterov momentum and L2 weight decay, as `torch.optim.SGD`:
//!
//! ```text
//! g  = scale * grad + weight_decay * p
//! b  = g                                   (first step)
//! b  = momentum * b + (1 - dampening) * g  (later steps)
//! g  = g + momentum * b   if nesterov,  else  g = b      (when momentum > 0)
//! p  = p - lr * g
//! ```

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::kernel::{apply, par_zip};
use super::{state_vec, vec_tensor, Optimizer};
use crate::error::Result;

fn default_lr() -> f64 {
    0.01
}

/// SGD hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SgdConfig {
    /// Learning rate. Default 0.01.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Momentum factor in `[0, 1)`. Default 0 (plain SGD).
    #[serde(default)]
    pub momentum: f64,
    /// Dampening of the momentum in `[0, 1]`. Default 0.
    #[serde(default)]
    pub dampening: f64,
    /// Nesterov momentum (needs momentum > 0 and dampening 0). Default false.
    #[serde(default)]
    pub nesterov: bool,
    /// L2 penalty added to the gradient. Default 0.
    #[serde(default)]
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: default_lr(),
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// The SGD optimizer.
pub struct Sgd {
    params: Vec<(String, Var)>,
    config: SgdConfig,
    /// Momentum buffers, allocated at a parameter's first update.
    momentum: Vec<Option<Vec<f32>>>,
}

impl Sgd {
    pub fn new(params: Vec<(String, Var)>, config: SgdConfig) -> Self {
        let momentum = vec![None; params.len()];
        Self {
            params,
            config,
            momentum,
        }
    }
}

impl Optimizer for Sgd {
    fn step(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        lr: f64,
        grad_scale: f32,
    ) -> Result<()> {
        let (lr, wd, mu, damp) = (
            lr as f32,
            self.config.weight_decay as f32,
            self.config.momentum as f32,
            self.config.dampening as f32,
        );
        let nesterov = self.config.nesterov;
        for ((name, var), buf) in self.params.iter().zip(self.momentum.iter_mut()) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            if mu == 0.0 {
                apply(name, var.as_tensor(), grad, |p, g| {
                    par_zip(p, g, &mut [], &mut [], |p, g, _, _| {
                        for (p, &g) in p.iter_mut().zip(g) {
                            let d = g * grad_scale + wd * *p;
                            *p -= lr * d;
                        }
                    })
                })?;
                continue;
            }
            let first = buf.is_none();
            let b = buf.get_or_insert_with(|| vec![0.0; var.elem_count()]);
            apply(name, var.as_tensor(), grad, |p, g| {
                par_zip(p, g, b, &mut [], |p, g, b, _| {
                    for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
                        let d = g * grad_scale + wd * *p;
                        *b = if first { d } else { mu * *b + (1.0 - damp) * d };
                        let d = if nesterov { d + mu * *b } else { *b };
                        *p -= lr * d;
                    }
                })
            })?;
        }
        Ok(())
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for ((name, _), buf) in self.params.iter().zip(&self.momentum) {
            if let Some(b) = buf {
                out.push((format!("{name}.momentum-buffer"), vec_tensor(b)?));
            }
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for ((name, var), buf) in self.params.iter().zip(self.momentum.iter_mut()) {
            let key = format!("{name}.momentum-buffer");
            *buf = if state.contains_key(&key) {
                Some(state_vec(state, &key, var.elem_count())?)
            } else {
                None
            };
        }
        Ok(())
    }
}
