//! Our side of `bench/explain/captum.sh`: integrated gradients (50 and 256 steps), saliency and
//! 4x4 occlusion of a trained MNIST CNN run directory on the first N test images, timed per image,
//! with the inputs, targets and attributions written as JSON for `captum_ref.py` to compare.
//!
//!     cargo run --release -p lepton-explain --example captum_bench -- RUN_DIR OUT.json [N] [IG_BATCH]
//!
//! `IG_BATCH`: interpolated inputs per forward/backward pass (default: `IgConfig`'s, 64).
//! `METHODS=ig50,ig256,saliency,occlusion4x4` (the environment): run only those;
//! `EXPLAIN_PATH=autograd`: the generic candle-autograd path instead of the piecewise net.
//!
//! The model is held as the server and `lepton explain` hold a loaded model: in an
//! [`Explainer`], which compiles its piecewise net on the first explanation (the warm-up, as
//! captum's side warms up too) and keeps it.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lepton_explain::{
    integrated_gradients, occlusion, predicted, saliency, Baseline, Explainer, FnScorer, IgConfig,
    OcclusionConfig, Scorer,
};
use lepton_nn::{Model, ModelSpec};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 3, "usage: captum_bench RUN_DIR OUT.json [N]");
    let run = Path::new(&args[1]);
    let n: usize = args.get(3).map_or(Ok(20), |s| s.parse())?;
    let ig_batch: usize = args
        .get(4)
        .map_or(Ok(IgConfig::default().batch), |s| s.parse())?;
    let spec_text = fs_err::read_to_string(run.join("spec.toml"))?;
    let spec_value: toml::Value = toml::from_str(&spec_text)?;
    let spec: ModelSpec = spec_value
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
    let inputs: Vec<Vec<f32>> = (0..n)
        .map(|i| {
            t10k.pixels[i * 784..(i + 1) * 784]
                .iter()
                .map(|&p| (f32::from(p) / 255.0 - mean) / std)
                .collect()
        })
        .collect();
    let xs: Vec<Tensor> = inputs
        .iter()
        .map(|v| Tensor::from_slice(v, (1, 28, 28), &Device::Cpu))
        .collect::<candle_core::Result<_>>()?;
    let targets: Vec<usize> = xs
        .iter()
        .map(|x| predicted(&model, x))
        .collect::<lepton_explain::Result<_>>()?;
    // `EXPLAIN_PATH=autograd`: the generic candle-autograd path (what every model took before
    // the piecewise net), for an A/B in one binary.
    let autograd = FnScorer(|x: &Tensor| model.scores(x));
    let explainer = Explainer::new(&model);
    let scorer: &dyn Scorer = match std::env::var("EXPLAIN_PATH").as_deref() {
        Ok("autograd") => &autograd,
        _ => &explainer,
    };
    type Run<'a> = Box<dyn Fn(&Tensor, usize) -> lepton_explain::Result<Vec<f32>> + 'a>;
    let ig = |steps: usize| -> Run {
        let model = scorer;
        Box::new(move |x, t| {
            let cfg = IgConfig {
                steps,
                batch: ig_batch,
                ..IgConfig::default()
            };
            Ok(integrated_gradients(model, x, &Baseline::Zeros, t, &cfg)?.attributions)
        })
    };
    let methods: Vec<(&str, Run)> = vec![
        ("ig50", ig(50)),
        ("ig256", ig(256)),
        (
            "saliency",
            Box::new(|x, t| Ok(saliency(scorer, x, t, false)?.attributions)),
        ),
        (
            "occlusion4x4",
            Box::new(|x, t| {
                let cfg = OcclusionConfig {
                    window: 4,
                    stride: 1,
                    baseline: 0.0,
                    batch: 128,
                };
                Ok(occlusion(scorer, x, t, &cfg)?.attributions)
            }),
        ),
    ];
    // `METHODS=ig50,ig256` (as `captum.sh`'s): only those.
    let only = std::env::var("METHODS").ok();
    let mut ours = serde_json::Map::new();
    for (name, f) in methods.iter().filter(|(name, _)| {
        only.as_deref()
            .is_none_or(|m| m.split(',').any(|m| m == *name))
    }) {
        f(&xs[0], targets[0])?; // warm-up
        let started = Instant::now();
        let attrs: Vec<Vec<f32>> = xs
            .iter()
            .zip(&targets)
            .map(|(x, &t)| f(x, t))
            .collect::<lepton_explain::Result<_>>()?;
        let ms = started.elapsed().as_secs_f64() * 1e3 / n as f64;
        eprintln!("ours {name}: {ms:.2} ms per image");
        ours.insert(
            name.to_string(),
            json!({ "ms_per_image": ms, "attributions": attrs }),
        );
    }
    let threads = rayon::current_num_threads();
    fs_err::write(
        &args[2],
        json!({ "threads": threads, "ig_batch": ig_batch, "inputs": inputs, "targets": targets, "ours": ours })
            .to_string(),
    )?;
    Ok(())
}
