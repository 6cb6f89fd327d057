//! Time one AdamW step of lepton-train's fused update against candle-nn's tensor-op AdamW on the
//! same parameters: `cargo run --release -p lepton-train --example optim_bench -- [MILLION_PARAMS]`.

use std::time::Instant;

use candle_core::{Device, Var};
use candle_nn::Optimizer as _;
use lepton_train::{AdamConfig, OptimizerSpec};

fn main() -> anyhow::Result<()> {
    let m: f64 = std::env::args().nth(1).map_or(Ok(1.0), |s| s.parse())?;
    // A few tensors of MLP-like sizes adding up to about `m` million values.
    let sizes: Vec<usize> = [0.6, 0.3, 0.09, 0.01]
        .iter()
        .map(|f| ((f * m * 1e6) as usize).max(1))
        .collect();
    let make = || -> anyhow::Result<Vec<(String, Var)>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Ok((format!("p{i}"), Var::randn(0f32, 1., n, &Device::Cpu)?)))
            .collect()
    };
    let ours_params = make()?;
    let theirs_params = make()?;
    let loss_of = |ps: &[(String, Var)]| -> anyhow::Result<candle_core::Tensor> {
        let mut total = ps[0].1.as_tensor().sqr()?.sum_all()?;
        for (_, p) in &ps[1..] {
            total = (total + p.as_tensor().sqr()?.sum_all()?)?;
        }
        Ok(total)
    };
    let steps = 20;
    let mut ours = OptimizerSpec::AdamW(AdamConfig {
        weight_decay: 0.01,
        ..Default::default()
    })
    .build(ours_params.clone());
    let mut t_ours = 0.0;
    for _ in 0..steps {
        let g = loss_of(&ours_params)?.backward()?;
        let t = Instant::now();
        ours.step(&g, 1e-3, 1.0)?;
        t_ours += t.elapsed().as_secs_f64();
    }
    let vars: Vec<Var> = theirs_params.iter().map(|(_, v)| v.clone()).collect();
    let mut theirs = candle_nn::AdamW::new(
        vars,
        candle_nn::ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.01,
            ..Default::default()
        },
    )?;
    let mut t_theirs = 0.0;
    for _ in 0..steps {
        let g = loss_of(&theirs_params)?.backward()?;
        let t = Instant::now();
        theirs.step(&g)?;
        t_theirs += t.elapsed().as_secs_f64();
    }
    println!(
        "{:.2}M parameters: lepton fused AdamW {:.2} ms/step, candle-nn AdamW {:.2} ms/step ({:.1}x)",
        sizes.iter().sum::<usize>() as f64 / 1e6,
        1e3 * t_ours / steps as f64,
        1e3 * t_theirs / steps as f64,
        t_theirs / t_ours
    );
    Ok(())
}
