//! A/B of the gradient paths in one process: integrated gradients (50 and 256 steps) and
//! saliency of a trained MNIST CNN run directory through
//! - `autograd`: the generic candle-autograd path (what every model took before the piecewise net),
//! - `per-call`: the model's piecewise net compiled on every call (`lepton_nn::Model` as a scorer),
//! - `kept`: the net compiled once and kept ([`lepton_explain::Explainer`], as a loaded model has it),
//!
//! alternating, `REPS` rounds of `N` images each; prints the median and the minimum ms per image
//! of each, the CPU ms per image, and each path's ratios to the last one. On a shared machine the
//! minimum is the better estimate of an idle machine's time, and the CPU time (all threads, from
//! `/proc/self/stat`, 10 ms ticks) the one least moved by load.
//!
//!     cargo run --release -p lepton-explain --example explain_ab -- RUN_DIR [N] [REPS]
//!
//! `PATHS=per-call,kept` and `METHODS=saliency,ig50` (the environment) pick a subset (also for
//! profiling one path with `perf record`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lepton_explain::{
    integrated_gradients, predicted, saliency, Baseline, Explainer, FnScorer, IgConfig, Scorer,
};
use lepton_nn::{Model, ModelSpec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 2, "usage: explain_ab RUN_DIR [N] [REPS]");
    let run = Path::new(&args[1]);
    let n: usize = args.get(2).map_or(Ok(5), |s| s.parse())?;
    let reps: usize = args.get(3).map_or(Ok(7), |s| s.parse())?;
    let spec: toml::Value = toml::from_str(&fs_err::read_to_string(run.join("spec.toml"))?)?;
    let spec: ModelSpec = spec
        .get("model")
        .context("spec.toml has no [model]")?
        .clone()
        .try_into()?;
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(run.join("best.safetensors"), &Device::Cpu)?;
    let model = Model::new(
        &spec,
        &[1, 28, 28],
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
    )?;
    let pre: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(run.join("preprocessor.json"))?)?;
    let (mean, std) = (
        pre["mean"][0].as_f64().unwrap_or(0.0) as f32,
        pre["std"][0].as_f64().unwrap_or(1.0) as f32,
    );
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    let t10k = lepton_data::idx::load_idx_pair(&data, "t10k")?;
    let xs: Vec<Tensor> = (0..n)
        .map(|i| {
            let px: Vec<f32> = t10k.pixels[i * 784..(i + 1) * 784]
                .iter()
                .map(|&p| (f32::from(p) / 255.0 - mean) / std)
                .collect();
            Tensor::from_vec(px, (1, 28, 28), &Device::Cpu)
        })
        .collect::<candle_core::Result<_>>()?;
    let targets: Vec<usize> = xs
        .iter()
        .map(|x| predicted(&model, x))
        .collect::<lepton_explain::Result<_>>()?;
    let autograd = FnScorer(|x: &Tensor| model.scores(x));
    let kept = Explainer::new(&model);
    let all: [(&str, &dyn Scorer); 3] = [
        ("autograd", &autograd),
        ("per-call", &model),
        ("kept", &kept),
    ];
    let pick = |var: &str, name: &str| {
        std::env::var(var)
            .map(|v| v.split(',').any(|p| p == name))
            .unwrap_or(true)
    };
    let paths: Vec<(&str, &dyn Scorer)> =
        all.into_iter().filter(|(p, _)| pick("PATHS", p)).collect();
    anyhow::ensure!(!paths.is_empty(), "PATHS: none of autograd, per-call, kept");
    let methods: [(&str, usize); 3] = [("ig50", 50), ("ig256", 256), ("saliency", 0)];
    let time = |scorer: &dyn Scorer, steps: usize| -> anyhow::Result<f64> {
        let started = Instant::now();
        for (x, &t) in xs.iter().zip(&targets) {
            if steps == 0 {
                saliency(scorer, x, t, false)?;
            } else {
                let cfg = IgConfig {
                    steps,
                    ..IgConfig::default()
                };
                integrated_gradients(scorer, x, &Baseline::Zeros, t, &cfg)?;
            }
        }
        Ok(started.elapsed().as_secs_f64() * 1e3 / n as f64)
    };
    for (method, steps) in methods.into_iter().filter(|(m, _)| pick("METHODS", m)) {
        let mut ms = vec![Vec::new(); paths.len()];
        let mut cpu = vec![0.0; paths.len()];
        for (_, scorer) in &paths {
            time(*scorer, steps)?; // warm-up
        }
        for _ in 0..reps {
            for (i, (_, scorer)) in paths.iter().enumerate() {
                let c0 = cpu_ms()?;
                ms[i].push(time(*scorer, steps)?);
                cpu[i] += cpu_ms()? - c0;
            }
        }
        let per = (reps * n) as f64;
        let stats: Vec<(f64, f64, f64)> = ms
            .iter_mut()
            .zip(&cpu)
            .map(|(v, c)| {
                v.sort_by(f64::total_cmp);
                (v[v.len() / 2], v[0], c / per)
            })
            .collect();
        let (lm, lmin, lc) = *stats.last().expect("at least one path");
        for ((name, _), (m, min, c)) in paths.iter().zip(&stats) {
            println!(
                "{method:>9} {name:>9}: median {m:8.3} min {min:8.3} cpu {c:8.3} ms/image | vs {}: median {:.2}x min {:.2}x cpu {:.2}x",
                paths.last().expect("at least one path").0,
                m / lm,
                min / lmin,
                c / lc
            );
        }
    }
    Ok(())
}

/// User + system CPU time of this process so far (all threads), from `/proc/self/stat`.
fn cpu_ms() -> anyhow::Result<f64> {
    let stat = fs_err::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').context("/proc/self/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks * 10.0) // USER_HZ = 100 on Linux
}
