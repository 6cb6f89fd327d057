//! `lepton cv SPEC --folds K`: stratified k-fold cross-validation; each fold fits its own
//! preprocessor on its training part and trains a fresh model.

use anyhow::Context;
use lepton_train::Spec;

use crate::cli::CvArgs;
use crate::output::{print_json, Mode};
use crate::progress::Progress;

pub fn run(args: CvArgs, mode: Mode) -> anyhow::Result<()> {
    crate::tuning::for_compute();
    let spec = Spec::from_file(&args.spec)?;
    let mut progress = Progress::new(mode);
    let cv = lepton_train::cross_validate(&spec, args.folds, &mut progress)
        .with_context(|| format!("cross-validating {}", args.spec.display()))?;
    if let Some(out) = &args.out {
        // The held-out rows of each fold, so other tools can be scored on the same folds.
        let held = lepton_data::fold_indices(&spec.data, &spec.base_dir, args.folds, spec.seed)?;
        lepton_eval::write_atomic(
            &out.join("folds.json"),
            serde_json::to_string(&held)?.as_bytes(),
        )?;
        lepton_eval::write_atomic(
            &out.join("cv.json"),
            serde_json::to_string_pretty(&cv)?.as_bytes(),
        )?;
        lepton_eval::write_atomic(
            &out.join("cv.md"),
            cv.to_markdown(&format!("{}: cross-validation", spec.name))
                .as_bytes(),
        )?;
    }
    match mode {
        Mode::Json => print_json(&cv),
        Mode::Human => {
            print!("{}", cv.to_table());
            Ok(())
        }
        Mode::Quiet => Ok(()),
    }
}
