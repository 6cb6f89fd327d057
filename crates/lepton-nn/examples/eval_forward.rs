//! The eval-mode forward of a trained model on loaded weights (what `lepton serve` and
//! `lepton predict` run), timed per batch size: `bench/speed/eval_ab.sh` runs two builds of it
//! alternately (issue 19).
//!
//!     cargo run --release -p lepton-nn --example eval_forward -- RUN_DIR [MS_PER_BATCH_SIZE]
//!
//! RUN_DIR holds `spec.toml` (its `[model]`) and `best.safetensors`, e.g. the quickstart run of
//! `examples/mnist-cnn.toml`. Prints one line per batch size (1, 8, 64): images per second and
//! microseconds per batch, the median of 7 timed blocks of about MS_PER_BATCH_SIZE / 7 ms each.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder};
use lepton_nn::{Model, ModelSpec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 2,
        "usage: eval_forward RUN_DIR [MS_PER_BATCH_SIZE]"
    );
    let run = Path::new(&args[1]);
    let budget_ms: f64 = args.get(2).map_or(Ok(1400.0), |s| s.parse())?;
    let text = std::fs::read_to_string(run.join("spec.toml")).context("spec.toml")?;
    let value: toml::Value = toml::from_str(&text)?;
    let spec: ModelSpec = value
        .get("model")
        .context("no [model]")?
        .clone()
        .try_into()?;
    let input: Vec<usize> = value["model"]["input"]
        .as_array()
        .context("no model.input")?
        .iter()
        .map(|v| v.as_integer().map(|i| i as usize).context("model.input"))
        .collect::<anyhow::Result<_>>()?;
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(run.join("best.safetensors"), &Device::Cpu)?;
    let model = Model::new(
        &spec,
        &input,
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
    )?;
    for batch in [1usize, 8, 64] {
        let mut shape = vec![batch];
        shape.extend_from_slice(&input);
        let x = Tensor::randn(0f32, 1.0, shape.as_slice(), &Device::Cpu)?;
        // Calibrate a block to ~budget/7 ms, then take the median of 7 blocks.
        let t = Instant::now();
        model.forward_t(&x, false)?;
        let one = t.elapsed().as_secs_f64().max(1e-6);
        let reps = ((budget_ms / 7e3) / one).ceil().max(1.0) as usize;
        let mut blocks: Vec<f64> = (0..7)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..reps {
                    model.forward_t(&x, false).expect("forward");
                }
                t.elapsed().as_secs_f64() / reps as f64
            })
            .collect();
        blocks.sort_by(f64::total_cmp);
        let s = blocks[3];
        println!(
            "batch {batch}: {:.0} images/s, {:.1} us per batch",
            batch as f64 / s,
            s * 1e6
        );
    }
    Ok(())
}
