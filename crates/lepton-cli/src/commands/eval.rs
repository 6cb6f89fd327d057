//! `lepton eval MODEL [--data PATH]`: evaluate a packaged model (or a run directory's) on data,
//! with the preprocessing stored in the package.

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{Device, Tensor};
use lepton_data::{Dataset, Targets};
use lepton_eval::plots::{confusion_matrix, learning_curves, Series};
use lepton_eval::Report;
use lepton_photon::Photon;

use crate::cli::EvalArgs;
use crate::output::{print_json, Mode};

/// The photon of MODEL (a file, or `model.photon` in a run directory, exported on demand).
pub fn photon_path(model: &Path) -> anyhow::Result<PathBuf> {
    if model.is_dir() {
        let p = model.join("model.photon");
        if !p.exists() {
            super::export::export_run(model, &p)?;
        }
        Ok(p)
    } else {
        Ok(model.to_path_buf())
    }
}

pub fn run(args: EvalArgs, mode: Mode) -> anyhow::Result<()> {
    crate::tuning::for_compute();
    let path = photon_path(&args.model)?;
    let photon = Photon::open(&path)?;
    let pre = &photon.manifest().preprocessor;
    let (data_spec, base) = match &args.data {
        Some(d) => (lepton_data::spec_for_path(d)?, PathBuf::new()),
        None => {
            let run_dir = if args.model.is_dir() {
                args.model.clone()
            } else {
                args.model
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            };
            let spec =
                lepton_train::Spec::from_file(&run_dir.join("spec.toml")).with_context(|| {
                    format!(
                        "no --data given and no run directory next to {} to take the data from",
                        path.display()
                    )
                })?;
            (spec.data, spec.base_dir)
        }
    };
    let data = lepton_data::load_for_eval(&data_spec, &base, pre)?;
    let report = evaluate(&photon, &data)?;
    if let Some(out) = &args.out {
        report.write(
            out,
            &format!(
                "{}: evaluation of {}",
                photon.manifest().name,
                data_spec.path.display()
            ),
        )?;
        if let Report::Classification(c) = &report {
            confusion_matrix(&out.join("confusion_matrix.png"), c)?;
        }
        curves_from_run(&path, out)?;
    }
    match mode {
        Mode::Json => print_json(&report),
        Mode::Human => {
            println!(
                "{} on {} ({} samples)\n",
                photon.manifest().name,
                data_spec.path.display(),
                data.len()
            );
            print!("{}", report.to_table());
            Ok(())
        }
        Mode::Quiet => Ok(()),
    }
}

/// Predict the whole dataset in batches and compute the report.
pub fn evaluate(photon: &Photon, data: &Dataset) -> anyhow::Result<Report> {
    let model = photon.model()?;
    let n = data.len();
    anyhow::ensure!(n > 0, "the evaluation data is empty");
    let per = data.sample_len();
    let mut outputs = Vec::with_capacity(n * data.class_names().len().max(1));
    for start in (0..n).step_by(500) {
        let end = (start + 500).min(n);
        let mut shape = vec![end - start];
        shape.extend_from_slice(&data.sample_shape);
        let x = Tensor::from_slice(&data.features[start * per..end * per], shape, &Device::Cpu)?;
        outputs.extend(model.predict(&x)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(match &data.targets {
        Targets::Classes {
            labels,
            class_names,
        } => Report::Classification(lepton_eval::classification(labels, &outputs, class_names)?),
        Targets::Regression { values } => {
            let truth: Vec<f32> = values
                .iter()
                .map(|&v| photon.manifest().preprocessor.decode_target(v))
                .collect();
            Report::Regression(lepton_eval::regression(&truth, &outputs)?)
        }
    })
}

/// Learning curves from the run's `metrics.jsonl`, when the photon sits in a run directory.
fn curves_from_run(photon: &Path, out: &Path) -> anyhow::Result<()> {
    let Some(metrics) = photon
        .parent()
        .map(|d| d.join("metrics.jsonl"))
        .filter(|p| p.exists())
    else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&metrics)?;
    let (mut tl, mut vl) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v.get("kind").and_then(|k| k.as_str()) != Some("epoch") {
            continue;
        }
        let e = v["epoch"].as_f64().unwrap_or(0.0) + 1.0;
        if let Some(x) = v["train_loss"].as_f64() {
            tl.push((e, x));
        }
        if let Some(x) = v["val_loss"].as_f64() {
            vl.push((e, x));
        }
    }
    if !tl.is_empty() {
        learning_curves(
            &out.join("loss.png"),
            "loss",
            "loss",
            &[
                Series {
                    name: "train".into(),
                    points: tl,
                },
                Series {
                    name: "validation".into(),
                    points: vl,
                },
            ],
        )?;
    }
    Ok(())
}
