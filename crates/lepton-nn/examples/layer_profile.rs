//! Where a training step's time goes, layer by layer: for each top-level layer of a spec's model,
//! the median forward time (training mode) and backward time on a random batch of the layer's
//! input shape (the input gets a gradient except for the first layer, as in training).
//!
//! `cargo run --release -p lepton-nn --example layer_profile -- SPEC.toml [BATCH] [REPS]`

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_nn::{Model, ModelSpec};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: layer_profile SPEC.toml [BATCH] [REPS]"))?;
    let batch: usize = args.get(2).map_or(Ok(64), |s| s.parse())?;
    let reps: usize = args.get(3).map_or(Ok(20), |s| s.parse())?;
    let doc: toml::Table = toml::from_str(&std::fs::read_to_string(path)?)?;
    let spec: ModelSpec = doc
        .get("model")
        .ok_or_else(|| anyhow::anyhow!("{path}: no [model] section"))?
        .clone()
        .try_into()?;
    let input = spec
        .input
        .clone()
        .ok_or_else(|| anyhow::anyhow!("{path}: model.input is needed"))?;
    let shapes = spec.shapes(&input)?;
    let mut in_shape = input.clone();
    let (mut total_f, mut total_b) = (0.0, 0.0);
    println!(
        "batch {batch}, {} rayon threads, median of {reps}",
        rayon::current_num_threads()
    );
    println!(
        "{:<4} {:<14} {:>22} {:>10} {:>10}",
        "", "layer", "output", "fwd ms", "bwd ms"
    );
    for (i, layer) in spec.layers.iter().enumerate() {
        let one = ModelSpec {
            input: None,
            layers: vec![layer.clone()],
        };
        let varmap = VarMap::new();
        let model = Model::new(
            &one,
            &in_shape,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )?;
        lepton_nn::init_seeded(&varmap, 0)?;
        let mut shape = vec![batch];
        shape.extend(&in_shape);
        let x = Tensor::randn(0f32, 1., shape, &Device::Cpu)?;
        let x = if i == 0 {
            x
        } else {
            Var::from_tensor(&x)?.into_inner()
        };
        let (mut f, mut b) = (Vec::new(), Vec::new());
        for rep in 0..reps + 2 {
            let t0 = Instant::now();
            let y = model.forward_t(&x, true)?;
            let t1 = Instant::now();
            let s = y.sum_all()?;
            let t2 = Instant::now();
            let g = s.backward()?;
            let t3 = Instant::now();
            drop(g);
            if rep >= 2 {
                f.push((t1 - t0).as_secs_f64() * 1e3);
                b.push((t3 - t2).as_secs_f64() * 1e3);
            }
        }
        let (f, b) = (median(f), median(b));
        total_f += f;
        total_b += b;
        println!(
            "{:<4} {:<14} {:>22} {:>10.2} {:>10.2}",
            i,
            layer.kind(),
            format!("{:?}", shapes[i]),
            f,
            b
        );
        in_shape = shapes[i].clone();
    }
    println!(
        "{:<4} {:<14} {:>22} {total_f:>10.2} {total_b:>10.2}",
        "", "total", ""
    );
    Ok(())
}
