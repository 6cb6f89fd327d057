//! `lepton export RUN_DIR -o FILE`: package a run's best model into one `.photon` file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use lepton_data::{Preprocessor, Task};
use lepton_nn::LossSpec;
use lepton_photon::{Photon, PhotonContents};
use lepton_train::{RunDir, Spec};

use crate::cli::ExportArgs;
use crate::output::{print_json, Mode};

pub fn run(args: ExportArgs, mode: Mode) -> anyhow::Result<()> {
    let out = export_run(&args.run_dir, &args.output)?;
    match mode {
        Mode::Json => print_json(&serde_json::json!({"photon": out})),
        Mode::Human => {
            println!("wrote {}", out.display());
            Ok(())
        }
        Mode::Quiet => Ok(()),
    }
}

/// Write `out` from the run directory's spec, preprocessor, best weights and report.
pub fn export_run(run_dir: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let dir = RunDir::new(run_dir);
    let spec = Spec::from_file(&dir.spec())
        .with_context(|| format!("{} is not a run directory", run_dir.display()))?;
    let pre: Preprocessor = serde_json::from_str(
        &std::fs::read_to_string(dir.preprocessor())
            .with_context(|| format!("reading {}", dir.preprocessor().display()))?,
    )
    .with_context(|| format!("parsing {}", dir.preprocessor().display()))?;
    let loss = spec.loss.clone().unwrap_or(match pre.task() {
        Task::Classification => LossSpec::CrossEntropy {
            label_smoothing: 0.0,
        },
        Task::Regression => LossSpec::Mse,
    });
    let report = run_dir.join("report.json");
    let metrics = match std::fs::read_to_string(&report) {
        Ok(text) => serde_json::from_str::<serde_json::Value>(&text)
            .with_context(|| format!("parsing {}", report.display()))?,
        Err(_) => serde_json::Value::Null,
    };
    let contents = PhotonContents {
        name: spec.name.clone(),
        model: spec.model.clone(),
        input_shape: pre.sample_shape(),
        loss,
        preprocessor: pre,
        metrics,
    };
    let weights = dir.best_weights();
    anyhow::ensure!(
        weights.exists(),
        "{} has no best model yet ({} is missing)",
        run_dir.display(),
        weights.display()
    );
    Photon::write_from_safetensors(out, &contents, &weights)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(out.to_path_buf())
}
