//! k-fold cross-validation: trains one fresh [`Session`] per fold and scores it with
//! [`crate::evaluate`].

use lepton_data::Dataset;
use lepton_eval::CrossValidationReport;

use crate::error::Result;
use crate::evaluate::{predict, report};
use crate::observer::{Event, Observer};
use crate::spec::Spec;
use crate::trainer::Session;

/// k-fold cross-validation of `spec` (lepton_data::prepare_folds: stratified, the preprocessor
/// fitted per fold): each fold trains a fresh model for `train.epochs` epochs (no early stopping:
/// the held-out fold is only used for the final evaluation) and is scored on its held-out part.
pub fn cross_validate(
    spec: &Spec,
    k: usize,
    observer: &mut dyn Observer,
) -> Result<CrossValidationReport> {
    let folds =
        lepton_data::prepare_folds(&spec.data, &spec.preprocess, &spec.base_dir, k, spec.seed)
            .map_err(|e| spec.data_error(e))?;
    let mut spec = spec.clone();
    spec.train.early_stopping = None;
    let mut scores = Vec::with_capacity(folds.len());
    for (i, fold) in folds.iter().enumerate() {
        observer.event(Event::Fold {
            fold: i as u64,
            folds: folds.len() as u64,
        });
        // The trainer's own validation split is not used: train on the whole training part.
        let data = lepton_data::Prepared {
            validation: empty_like(&fold.train),
            ..fold.clone()
        };
        let mut session = Session::new(&spec, &data)?;
        session.fit(&data, None, observer)?;
        let preds = predict(
            &session.model,
            &session.loss,
            &fold.validation,
            spec.train.eval_batch_size,
        )?;
        scores.push(report(&preds, &fold.validation, &fold.preprocessor)?.metrics());
    }
    Ok(CrossValidationReport::new(scores))
}

fn empty_like(d: &Dataset) -> Dataset {
    d.select(&[])
}
