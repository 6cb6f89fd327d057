//! Seeded, PyTorch-style initialisation of a `VarMap`.
//!
//! candle's initialisers draw from an unseeded generator; here every parameter is drawn from
//! ChaCha seeded with `(seed, FNV-1a(name))`, so the values do not depend on creation order.
//! Weights of linear and conv layers (rank >= 2) and their biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
//! (PyTorch's kaiming_uniform(a=sqrt(5)) default); norm weights 1, biases 0; running mean 0, var 1.

use candle_core::Tensor;
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Result;

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
        let t = if name.ends_with("running_mean") {
            constant(0.0)?
        } else if name.ends_with("running_var") {
            constant(1.0)?
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
                let bound = 1.0 / (fan_in as f64).sqrt();
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(name));
                let v: Vec<f64> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
                Tensor::from_vec(v, dims.as_slice(), var.device())?.to_dtype(var.dtype())?
            }
        };
        var.set(&t)?;
    }
    Ok(())
}
