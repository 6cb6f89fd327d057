//! Lepton side of the nanoGPT speed bench (issue 13, acceptance 1): the model of
//! `bench/speed/nanogpt_torch.py` (nanoGPT's `model.py`: embedding + learned positions, pre-norm
//! transformer blocks with a GELU MLP, final layer norm, output tied to the embedding; 4 layers,
//! 4 heads, 128 wide, block 64, batch 12, no dropout) as a lepton-nn spec, trained with candle
//! autograd and `candle_nn::AdamW` (betas 0.9/0.99, weight decay 0.1 on the 2-D tensors only, as
//! nanoGPT; lr 1e-3 cosine decay to 1e-4), on synthetic char data (65 symbols, seeded). The
//! trainer's own AdamW lives in lepton-train, which lepton-nn cannot depend on. Prints training
//! tokens/s over STEPS steps after WARMUP, and with `--profile` the time per phase.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p lepton-nn --example nanogpt_speed -- [STEPS] [WARMUP] [--profile]`

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, ModuleT, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use lepton_nn::{loss, LossSpec, Model, ModelSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const V: usize = 65;
const T: usize = 64;
const D: usize = 128;
const HEADS: usize = 4;
const LAYERS: usize = 4;
const B: usize = 12;
const LR: f64 = 1e-3;
const MIN_LR: f64 = 1e-4;

fn spec() -> anyhow::Result<ModelSpec> {
    let mut layers = format!(
        r#"{{ type = "embedding", num-embeddings = {V}, embedding-dim = {D} }},
           {{ type = "positional-embedding", max-len = {T} }},"#
    );
    for _ in 0..LAYERS {
        layers += &format!(r#"{{ type = "transformer-block", num-heads = {HEADS} }},"#);
    }
    layers += &format!(
        r#"{{ type = "layer-norm" }}, {{ type = "linear", out-features = {V}, bias = false, tie = 0 }}"#
    );
    Ok(toml::from_str(&format!("layers = [{layers}]"))?)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let profile = args.iter().any(|a| a == "--profile");
    let nums: Vec<usize> = args[1..].iter().filter_map(|a| a.parse().ok()).collect();
    let steps = nums.first().copied().unwrap_or(60);
    let warmup = nums.get(1).copied().unwrap_or(5);
    let dev = Device::Cpu;
    let spec = spec()?;
    let varmap = VarMap::new();
    let model = Model::new(
        &spec,
        &[T],
        VarBuilder::from_varmap(&varmap, DType::F32, &dev),
    )?;
    lepton_nn::init_seeded(&varmap, 1337)?;
    let vars: Vec<Var> = varmap.all_vars();
    let params = |wd: f64| ParamsAdamW {
        lr: LR,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: wd,
    };
    let group = |decay: bool| -> Vec<Var> {
        vars.iter()
            .filter(|v| (v.rank() >= 2) == decay)
            .cloned()
            .collect()
    };
    let mut decayed = AdamW::new(group(true), params(0.1))?;
    let mut plain = AdamW::new(group(false), params(0.0))?;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let data: Vec<u32> = (0..200_000)
        .map(|_| rng.random_range(0..V as u32))
        .collect();
    let ce = LossSpec::default();
    let total = warmup + steps;
    let (mut t_fwd, mut t_bwd, mut t_opt) = (0.0, 0.0, 0.0);
    let mut start = Instant::now();
    let mut last = 0f32;
    for step in 0..total {
        if step == warmup {
            start = Instant::now();
            (t_fwd, t_bwd, t_opt) = (0.0, 0.0, 0.0);
        }
        let lr = MIN_LR
            + 0.5
                * (LR - MIN_LR)
                * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
        decayed.set_learning_rate(lr);
        plain.set_learning_rate(lr);
        let (mut x, mut y) = (Vec::with_capacity(B * T), Vec::with_capacity(B * T));
        for _ in 0..B {
            let i = rng.random_range(0..data.len() - T - 1);
            x.extend(data[i..i + T].iter().map(|&v| v as f32));
            y.extend_from_slice(&data[i + 1..i + 1 + T]);
        }
        let x = Tensor::from_vec(x, (B, T), &dev)?;
        let y = Tensor::from_vec(y, (B, T), &dev)?;
        let t0 = Instant::now();
        let logits = model.forward_t(&x, true)?;
        let l = loss(&ce, &logits, &y, None)?;
        let t1 = Instant::now();
        let grads = l.backward()?;
        let t2 = Instant::now();
        decayed.step(&grads)?;
        plain.step(&grads)?;
        let t3 = Instant::now();
        t_fwd += (t1 - t0).as_secs_f64();
        t_bwd += (t2 - t1).as_secs_f64();
        t_opt += (t3 - t2).as_secs_f64();
        last = l.to_scalar::<f32>()?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "lepton: {steps} steps in {elapsed:.2} s, {:.0} tokens/s, loss {last:.3} ({} rayon threads)",
        (steps * B * T) as f64 / elapsed,
        rayon::current_num_threads()
    );
    if profile {
        let ms = |s: f64| s * 1e3 / steps as f64;
        println!(
            "per step: forward+loss {:.1} ms, backward {:.1} ms, AdamW {:.1} ms",
            ms(t_fwd),
            ms(t_bwd),
            ms(t_opt)
        );
    }
    Ok(())
}
