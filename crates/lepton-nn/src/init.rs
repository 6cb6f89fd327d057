//! Seeded, PyTorch-style initialisation.
//!
//! candle's initialisers draw from an unseeded generator; here every parameter is drawn from
//! ChaCha seeded with `(seed, FNV-1a(name))`, so the values do not depend on creation order.
//!
//! [`var_builder`] is the way to build a model for training: each new variable follows the init
//! hint its layer gives (`embedding` N(0, 1) as `nn.Embedding`, linear and conv layers
//! U(±1/sqrt(fan_in)), norms 1 and 0, ...), drawn from the seeded generator.
//! [`init_seeded`] re-draws an already built `VarMap` by name rules alone (it cannot see the
//! hints), kept for the golden tests and examples written against it:
//! Weights of linear and conv layers (rank >= 2) and their biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
//! (PyTorch's kaiming_uniform(a=sqrt(5)) default); recurrent weights and biases (`weight_ih_l0`, ...):
//! U(-1/sqrt(hidden), 1/sqrt(hidden)) (PyTorch's `nn.LSTM`/`nn.GRU` default); norm weights 1,
//! biases 0; running mean 0, var 1.

use std::collections::HashMap;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
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

/// A `VarBuilder` (f32, CPU) over `varmap` whose new variables follow their layer's init hint,
/// drawn from ChaCha seeded with `(seed, FNV-1a(name))`: the same model, seed and spec give the same
/// values whatever order the layers are built in. Variables already in `varmap` are reused.
pub fn var_builder(varmap: &VarMap, seed: u64) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(SeededVars {
            map: varmap.clone(),
            seed,
        }),
        DType::F32,
        Device::Cpu,
    )
}

/// The backend of [`var_builder`].
struct SeededVars {
    map: VarMap,
    seed: u64,
}

/// `n` values of `init` for a variable named `name` of shape `shape`.
fn draw(init: Init, shape: &Shape, name: &str, seed: u64) -> Vec<f64> {
    let n = shape.elem_count();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(name));
    let mut uniform =
        |lo: f64, up: f64| -> Vec<f64> { (0..n).map(|_| rng.random_range(lo..up)).collect() };
    match init {
        Init::Const(v) => vec![v; n],
        Init::Uniform { lo, up } => uniform(lo, up),
        Init::Randn { mean, stdev } => normal(n, mean, stdev, seed ^ fnv1a(name)),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let std = non_linearity.gain() / (fan.for_shape(shape).max(1) as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Uniform => {
                    let b = 3f64.sqrt() * std;
                    uniform(-b, b)
                }
                candle_nn::init::NormalOrUniform::Normal => normal(n, 0.0, std, seed ^ fnv1a(name)),
            }
        }
    }
}

/// `n` normal values by the Box-Muller transform (rand_distr is not a dependency for this).
fn normal(n: usize, mean: f64, stdev: f64, stream: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(stream);
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        out.push(mean + stdev * r * t.cos());
        out.push(mean + stdev * r * t.sin());
    }
    out.truncate(n);
    out
}

impl SimpleBackend for SeededVars {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self.map.data().lock().expect("VarMap mutex");
        if let Some(var) = data.get(name) {
            if var.shape() != &s {
                candle_core::bail!(
                    "variable {name} exists with shape {:?}, wanted {:?}",
                    var.dims(),
                    s.dims()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let values = draw(h, &s, name, self.seed);
        let var = Var::from_tensor(&Tensor::from_vec(values, &s, dev)?.to_dtype(dtype)?)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: a seeded VarBuilder needs the variable's shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .expect("VarMap mutex")
            .contains_key(name)
    }
}

/// Re-initialise every variable of `varmap` deterministically from `seed`, by name rules.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Model, ModelSpec};

    fn values(varmap: &VarMap) -> Vec<(String, Vec<f32>)> {
        let mut v: Vec<_> = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn build(spec: &str, input: &[usize], seed: u64) -> (VarMap, VarMap) {
        let spec: ModelSpec = toml::from_str(spec).unwrap();
        let hinted = VarMap::new();
        Model::new(&spec, input, var_builder(&hinted, seed)).unwrap();
        let renamed = VarMap::new();
        let vb = VarBuilder::from_varmap(&renamed, DType::F32, &Device::Cpu);
        Model::new(&spec, input, vb).unwrap();
        init_seeded(&renamed, seed).unwrap();
        (hinted, renamed)
    }

    #[test]
    fn hints_give_the_name_rules_values_for_linear_conv_norm_and_recurrent_layers() {
        let (hinted, renamed) = build(
            r#"layers = [
                { type = "conv2d", out-channels = 4, kernel = 3 }, { type = "batch-norm2d" },
                { type = "relu" }, { type = "flatten" }, { type = "linear", out-features = 8 },
                { type = "layer-norm" }, { type = "linear", out-features = 3 }]"#,
            &[1, 6, 6],
            7,
        );
        assert_eq!(values(&hinted), values(&renamed));
        let (hinted, renamed) = build(
            r#"layers = [{ type = "lstm", hidden-size = 5, num-layers = 2, bidirectional = true },
                { type = "gru", hidden-size = 3 }, { type = "linear", out-features = 2 }]"#,
            &[4, 6],
            3,
        );
        assert_eq!(values(&hinted), values(&renamed));
    }

    #[test]
    fn embeddings_follow_their_hint_seeded() {
        let spec = r#"layers = [{ type = "embedding", num-embeddings = 200, embedding-dim = 50 }]"#;
        let (a, renamed) = build(spec, &[4], 11);
        let (b, _) = build(spec, &[4], 11);
        let (c, _) = build(spec, &[4], 12);
        assert_eq!(values(&a), values(&b), "same seed, same values");
        assert_ne!(values(&a), values(&c), "another seed, other values");
        let w = &values(&a)[0].1;
        let n = w.len() as f64;
        let mean = w.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        // nn.Embedding's N(0, 1) over 10,000 draws; the name rule gave U(±1/sqrt(50)) (std 0.08).
        assert!(
            mean.abs() < 0.05 && (std - 1.0).abs() < 0.05,
            "mean {mean}, std {std}"
        );
        let old = &values(&renamed)[0].1;
        assert!(old.iter().all(|x| x.abs() <= 1.0 / 50f32.sqrt()));
    }
}
