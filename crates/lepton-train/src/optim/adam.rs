//! Adam and AdamW, as `torch.optim.Adam` / `torch.optim.AdamW` (single-tensor CPU path):
//!
//! ```text
//! t  = t + 1
//! g  = scale * grad (+ weight_decay * p      Adam: L2 penalty in the gradient)
//! p  = p * (1 - lr * weight_decay)           AdamW: decoupled decay
//! m  = m + (1 - b1) * (g - m)                (torch's lerp)
//! v  = b2 * v + (1 - b2) * g²
//! p  = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::kernel::{apply, par_zip};
use super::{state_scalar, state_vec, vec_tensor, Optimizer};
use crate::error::{Error, Result};

fn default_lr() -> f64 {
    1e-3
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}

/// Adam / AdamW hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdamConfig {
    /// Learning rate. Default 1e-3.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Decay rates of the first and second moment estimates. Default [0.9, 0.999].
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// Added to the denominator. Default 1e-8.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Adam: L2 penalty in the gradient; AdamW: decoupled decay rate. Default 0
    /// (PyTorch's AdamW defaults to 0.01; write it explicitly).
    #[serde(default)]
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: default_lr(),
            betas: default_betas(),
            eps: default_eps(),
            weight_decay: 0.0,
        }
    }
}

struct Moments {
    step: u64,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// The Adam / AdamW optimizer.
pub struct Adam {
    params: Vec<(String, Var)>,
    config: AdamConfig,
    decoupled: bool,
    state: Vec<Option<Moments>>,
}

impl Adam {
    /// `decoupled = true` makes it AdamW.
    pub fn new(params: Vec<(String, Var)>, config: AdamConfig, decoupled: bool) -> Self {
        let state = params.iter().map(|_| None).collect();
        Self {
            params,
            config,
            decoupled,
            state,
        }
    }
}

impl Optimizer for Adam {
    fn step(
        &mut self,
        grads: &candle_core::backprop::GradStore,
        lr: f64,
        grad_scale: f32,
    ) -> Result<()> {
        let [b1, b2] = self.config.betas;
        let (eps, wd) = (self.config.eps as f32, self.config.weight_decay as f32);
        let decoupled = self.decoupled;
        for ((name, var), st) in self.params.iter().zip(self.state.iter_mut()) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let n = var.elem_count();
            let st = st.get_or_insert_with(|| Moments {
                step: 0,
                m: vec![0.0; n],
                v: vec![0.0; n],
            });
            st.step += 1;
            let t = st.step as i32;
            let step_size = (lr / (1.0 - b1.powi(t))) as f32;
            let bc2_sqrt = (1.0 - b2.powi(t)).sqrt() as f32;
            let decay = (1.0 - lr * self.config.weight_decay) as f32;
            let (lerp_w, b2f, one_b2) = ((1.0 - b1) as f32, b2 as f32, (1.0 - b2) as f32);
            apply(name, var.as_tensor(), grad, |p, g| {
                par_zip(p, g, &mut st.m, &mut st.v, |p, g, m, v| {
                    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut())
                    {
                        let mut g = g * grad_scale;
                        if decoupled {
                            *p *= decay;
                        } else {
                            g += wd * *p;
                        }
                        *m += lerp_w * (g - *m);
                        *v = *v * b2f + one_b2 * g * g;
                        let denom = v.sqrt() / bc2_sqrt + eps;
                        *p -= step_size * *m / denom;
                    }
                })
            })?;
        }
        Ok(())
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for ((name, _), st) in self.params.iter().zip(&self.state) {
            if let Some(st) = st {
                let step = Tensor::from_slice(&[st.step as f64], 1, &candle_core::Device::Cpu)
                    .map_err(|source| Error::Tensor {
                        op: "saving optimizer state".into(),
                        source,
                    })?;
                out.push((format!("{name}.step"), step));
                out.push((format!("{name}.exp-avg"), vec_tensor(&st.m)?));
                out.push((format!("{name}.exp-avg-sq"), vec_tensor(&st.v)?));
            }
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for ((name, var), st) in self.params.iter().zip(self.state.iter_mut()) {
            let key = format!("{name}.step");
            *st = if state.contains_key(&key) {
                let n = var.elem_count();
                Some(Moments {
                    step: state_scalar(state, &key)? as u64,
                    m: state_vec(state, &format!("{name}.exp-avg"), n)?,
                    v: state_vec(state, &format!("{name}.exp-avg-sq"), n)?,
                })
            } else {
                None
            };
        }
        Ok(())
    }
}
