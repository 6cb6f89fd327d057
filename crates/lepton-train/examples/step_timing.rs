//! Time the parts of one training step (forward, backward, optimizer) for a spec's model on random
//! batches: `cargo run --release -p lepton-train --example step_timing -- SPEC [BATCH] [STEPS]`.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_train::{optim::trainable_params, Spec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let spec = Spec::from_file(std::path::Path::new(&args[1]))?;
    let batch: usize = args.get(2).map_or(Ok(128), |s| s.parse())?;
    let steps: usize = args.get(3).map_or(Ok(10), |s| s.parse())?;
    let input = spec
        .known_input_shape()
        .expect("spec with a known input shape");
    let varmap = VarMap::new();
    let model = lepton_nn::Model::new(
        &spec.model,
        &input,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    lepton_nn::init_seeded(&varmap, 0)?;
    let mut opt = spec.optimizer.build(trainable_params(&varmap));
    let mut shape = vec![batch];
    shape.extend(&input);
    let x = Tensor::randn(0f32, 1., shape, &Device::Cpu)?;
    let y = Tensor::from_vec(
        (0..batch as u32).map(|i| i % 10).collect::<Vec<_>>(),
        batch,
        &Device::Cpu,
    )?;
    let loss_spec = spec.loss.clone().unwrap_or_default();
    let (mut tf, mut tb, mut to) = (0.0, 0.0, 0.0);
    for i in 0..steps + 2 {
        let t0 = Instant::now();
        let logits = model.forward_t(&x, true)?;
        let loss = lepton_nn::loss(&loss_spec, &logits, &y, None)?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        opt.step(&grads, 1e-3, 1.0)?;
        let t3 = Instant::now();
        if i >= 2 {
            tf += (t1 - t0).as_secs_f64();
            tb += (t2 - t1).as_secs_f64();
            to += (t3 - t2).as_secs_f64();
        }
    }
    let n = steps as f64;
    println!(
        "batch {batch}: forward {:.1} ms, backward {:.1} ms, optimizer {:.2} ms per step; {:.0} samples/s",
        1e3 * tf / n,
        1e3 * tb / n,
        1e3 * to / n,
        batch as f64 * n / (tf + tb + to)
    );
    Ok(())
}
