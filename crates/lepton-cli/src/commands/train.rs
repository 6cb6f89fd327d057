//! `lepton train SPEC` and `lepton train --resume RUN_DIR`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use lepton_train::{RunSummary, Spec};

use crate::cli::TrainArgs;
use crate::output::{print_json, Mode};
use crate::progress::Progress;

pub fn run(args: TrainArgs, mode: Mode) -> anyhow::Result<()> {
    crate::tuning::for_compute();
    let mut progress = Progress::new(mode);
    let summary = if let Some(dir) = &args.resume {
        lepton_train::resume(dir, &mut progress)
            .with_context(|| format!("resuming {}", dir.display()))?
    } else {
        let path = args
            .spec
            .as_ref()
            .expect("clap requires SPEC without --resume");
        let spec = load_spec(path, &args)?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| default_run_dir(&spec.name));
        if mode == Mode::Human {
            eprintln!("training {} -> {}", spec.name, out.display());
        }
        lepton_train::train(&spec, &out, &mut progress)
            .with_context(|| format!("training {}", path.display()))?
    };
    finish(&summary, &args, mode)
}

/// Export the package (unless --no-export) and print the summary.
pub(super) fn finish(summary: &RunSummary, args: &TrainArgs, mode: Mode) -> anyhow::Result<()> {
    let photon = if args.no_export {
        None
    } else {
        Some(super::export::export_run(
            &summary.run_dir,
            &summary.run_dir.join("model.photon"),
        )?)
    };
    report(summary, photon.as_deref(), mode)
}

/// The spec with the command line's overrides.
pub(super) fn load_spec(path: &Path, args: &TrainArgs) -> anyhow::Result<Spec> {
    let mut spec = Spec::from_file(path)?;
    if let Some(e) = args.epochs {
        anyhow::ensure!(e > 0, "--epochs must be at least 1");
        spec.train.epochs = e as u64;
    }
    if let Some(s) = args.seed {
        spec.seed = s;
    }
    Ok(spec)
}

fn default_run_dir(name: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{name}-{secs}"))
}

fn report(s: &RunSummary, photon: Option<&Path>, mode: Mode) -> anyhow::Result<()> {
    match mode {
        Mode::Json => print_json(&serde_json::json!({"summary": s, "photon": photon})),
        Mode::Quiet => Ok(()),
        Mode::Human => {
            println!("run        {}", s.run_dir.display());
            println!(
                "epochs     {} ({} steps){}",
                s.epochs,
                s.steps,
                if s.stopped_early {
                    ", stopped early"
                } else {
                    ""
                }
            );
            if let (Some(m), Some(e)) = (s.best_metric, s.best_epoch) {
                println!("best       {} {m:.4} at epoch {}", s.metric, e + 1);
            }
            for (k, v) in &s.final_metrics {
                println!("{:<10} {v:.4} ({} split)", k, s.eval_split);
            }
            println!("time       {:.1}s", s.train_seconds);
            println!("report     {}", s.report.display());
            if let Some(p) = photon {
                println!("package    {}", p.display());
            }
            Ok(())
        }
    }
}
