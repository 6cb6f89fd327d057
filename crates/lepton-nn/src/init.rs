//! Seeded, PyTorch-style initialisation of a `VarMap`.
//!
//! candle's initialisers draw from an unseeded generator; here every parameter is drawn from
//! ChaCha seeded with `(seed, FNV-1a(name))`, so the values do not depend on creation order.
//! Weights of linear and conv layers (rank >= 2) and their biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
//! (PyTorch's kaiming_uniform(a=sqrt(5)) default); recurrent weights and biases (`weight_ih_l0`, ...):
//! U(-1/sqrt(hidden), 1/sqrt(hidden)) (PyTorch's `nn.LSTM`/`nn.GRU` default); norm weights 1,
//! biases 0; running mean 0, var 1.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;

/// PyTorch's bound 1/sqrt(hidden) for the weights and biases of `lstm`, `gru` and `rnn`
/// (`{prefix}.weight_ih_l{k}`, ..., hidden from `{prefix}.weight_hh_l0: [G*H, H]`); `None` for other
/// parameters.
fn recurrent_bound(data: &HashMap<String, Var>, name: &str) -> Option<f64> {
    let (stem, last) = name.rsplit_once('.').unwrap_or(("", name));
    let recurrent = ["weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l"]
        .iter()
        .any(|p| last.starts_with(p));
    if !recurrent {
        return None;
    }
    let key = if stem.is_empty() {
        "weight_hh_l0".to_string()
    } else {
        format!("{stem}.weight_hh_l0")
    };
    let hidden = *data.get(&key)?.dims().get(1)?;
    Some(1.0 / (hidden.max(1) as f64).sqrt())
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Re-initialise every variable of `varmap` deterministically from `seed`.
pub fn init_seeded(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().expect("VarMap mutex");
    for (name, var) in data.iter() {
        let dims = var.dims().to_vec();
        let n = var.elem_count();
        let constant =
            |v: f64| Tensor::full(v, dims.as_slice(), var.device())?.to_dtype(var.dtype());
        let uniform = |name: &str, bound: f64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(name));
            let v: Vec<f64> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
            Tensor::from_vec(v, dims.as_slice(), var.device())?.to_dtype(var.dtype())
        };
        let t = if name.ends_with("running_mean") {
            constant(0.0)?
        } else if name.ends_with("running_var") {
            constant(1.0)?
        } else if let Some(bound) = recurrent_bound(&data, name) {
            uniform(name, bound)?
        } else {
            let stem = name.rsplit_once('.').map_or("", |(s, _)| s);
            let weight_dims = data
                .get(&format!("{stem}.weight"))
                .map(|w| w.dims().to_vec())
                .unwrap_or_default();
            if weight_dims.len() < 2 {
                // Norm layers (1-D weight): weight 1, bias 0.
                constant(if name.ends_with("weight") { 1.0 } else { 0.0 })?
            } else {
                let fan_in: usize = weight_dims[1..].iter().product();
                uniform(name, 1.0 / (fan_in as f64).sqrt())?
            }
        };
        var.set(&t)?;
    }
    Ok(())
}
