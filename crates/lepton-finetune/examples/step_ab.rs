//! One process, one loaded base, the training step's two implementations alternating on the
//! same batch: candle autograd over [`Decoder::loss`] ("autograd") against the hand-written
//! [`lepton_finetune::step::loss_and_grads`] ("step"). Prints each timing, the medians, the
//! losses and the largest gradient difference (bench/lora/step_ab.sh runs it; not a user
//! command).
//!
//! ```text
//! cargo run --release -p lepton-finetune --example step_ab -- BASE TEXT f32|quantized ROUNDS
//! ```
//! r = 8, α = 16, q_proj/v_proj, 4 windows of 128 tokens (the first of TEXT), as
//! bench/lora/precision_ab.sh.

use std::path::Path;
use std::time::Instant;

use candle_core::{Device, Tensor};
use lepton_finetune::config::{default_optimizer, FinetuneFile, FinetuneSpec};
use lepton_finetune::{step, train, Base, BasePrecision};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 5,
        "usage: step_ab BASE TEXT f32|quantized ROUNDS"
    );
    let precision = match args[3].as_str() {
        "f32" => BasePrecision::F32,
        "quantized" => BasePrecision::Quantized,
        other => anyhow::bail!("precision {other}: want f32 or quantized"),
    };
    let rounds: usize = args[4].parse()?;
    let mut spec = FinetuneSpec::new(&args[1], &args[2]);
    spec.targets = vec!["q_proj".into(), "v_proj".into()];
    spec.lora_r = 8;
    spec.lora_alpha = 16.0;
    spec.seq_len = 128;
    spec.batch_size = 4;
    spec.base_precision = precision;
    let file = FinetuneFile {
        finetune: spec,
        optimizer: default_optimizer(),
        schedule: Default::default(),
    };
    let base = Base::load_with(Path::new(&args[1]), precision)?;
    let splits = lepton_finetune::data::load_splits(&base, &file.finetune)?;
    let mut d = base.decoder;
    train::attach(&mut d, &file)?;
    // B ≠ 0, as after a few steps (B = 0 leaves A's gradient zero).
    for (_, _, pair) in d.adapters() {
        let b = (pair.b.ones_like()? * 0.01)?;
        pair.b.set(&b)?;
    }
    let batch = &splits.train[..4];
    let t = batch[0].tokens.len();
    let ids: Vec<u32> = batch.iter().flat_map(|e| e.tokens.clone()).collect();
    let targets: Vec<u32> = batch
        .iter()
        .flat_map(|e| e.tokens[1..].iter().copied().chain([0]))
        .collect();
    let mask: Vec<bool> = batch
        .iter()
        .flat_map(|e| e.mask.iter().copied().chain([false]))
        .collect();
    let tokens = Tensor::from_vec(ids, (4, t), &Device::Cpu)?;
    let plan = step::Plan::new(&d)?;
    lepton_quant::pool::share_rayon_threads(true);
    let (mut old, mut new) = (Vec::new(), Vec::new());
    let mut worst = 0f32;
    for round in 0..rounds {
        let rng = || ChaCha8Rng::seed_from_u64(round as u64);
        let t0 = Instant::now();
        let loss = d.loss(&tokens, &targets, &mask, Some(&mut rng()))?;
        let g_old = loss.backward()?;
        let loss_old = loss.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let (loss_new, g_new) =
            step::loss_and_grads(&d, &plan, &tokens, &targets, &mask, &mut rng())?;
        let t2 = Instant::now();
        old.push((t1 - t0).as_secs_f64());
        new.push((t2 - t1).as_secs_f64());
        for (_, _, pair) in d.adapters() {
            for v in [&pair.a, &pair.b] {
                let (a, b) = (
                    g_old.get(v.as_tensor()).expect("grad"),
                    g_new.get(v.as_tensor()).expect("grad"),
                );
                let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
                let scale = a.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-30);
                worst = worst.max(diff / scale);
            }
        }
        println!(
            "round {round}: autograd {:.3} s (loss {loss_old}), step {:.3} s (loss {loss_new})",
            old[round], new[round]
        );
    }
    let tokens_per_step = (4 * t) as f64;
    let (mo, mn) = (median(&mut old), median(&mut new));
    // The quantized kernels' sensitivity: the step with and without stacked projections (the
    // same sums in another order) against each other.
    let unstacked = step::Plan::unstacked(&d);
    let rng = || ChaCha8Rng::seed_from_u64(0);
    let (_, g1) = step::loss_and_grads(&d, &plan, &tokens, &targets, &mask, &mut rng())?;
    let (_, g2) = step::loss_and_grads(&d, &unstacked, &tokens, &targets, &mask, &mut rng())?;
    let mut order = 0f32;
    for (_, _, pair) in d.adapters() {
        for v in [&pair.a, &pair.b] {
            let (a, b) = (
                g1.get(v.as_tensor()).expect("grad"),
                g2.get(v.as_tensor()).expect("grad"),
            );
            let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            let scale = b.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-30);
            order = order.max(diff / scale);
        }
    }
    println!(
        "the same step with the projections stacked and unstacked (summation order only): \
         largest gradient difference relative to its tensor's max {order:.2e}"
    );
    println!(
        "median s/step: autograd {mo:.3}, step {mn:.3}; tokens/s {:.1} -> {:.1} (speed-up {:.2}x); \
         largest gradient difference relative to its tensor's max: {worst:.2e}",
        tokens_per_step / mo,
        tokens_per_step / mn,
        mo / mn
    );
    Ok(())
}
