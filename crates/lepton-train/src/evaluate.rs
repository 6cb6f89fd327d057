//! Evaluation: predictions of a model on a dataset and the final report. Depends on the model
//! and the data only, never on the trainer (cross-validation, which trains, is in
//! `cross_validate.rs`).

use candle_core::{DType, Device, Tensor, D};
use candle_nn::ModuleT;
use lepton_data::{Dataset, Preprocessor, Targets};
use lepton_nn::{LossSpec, Model, OutputActivation};

use std::path::Path;

use lepton_eval::{plots, plots::Series, Report};

use crate::error::{Error, Result, TensorContext};
use crate::run_dir::RunDir;
use crate::spec::Spec;
use crate::summary::EpochMetrics;

/// The loss used when the spec has no `[loss]`: cross-entropy for classification, MSE for regression.
pub fn default_loss(data: &Dataset) -> LossSpec {
    match data.targets {
        Targets::Classes { .. } => LossSpec::CrossEntropy {
            label_smoothing: 0.0,
        },
        Targets::Regression { .. } => LossSpec::Mse,
    }
}

/// Check the model's output shape against the loss and the data's classes; errors name the last
/// layer and the shapes.
pub fn check_output(spec: &Spec, loss: &LossSpec, data: &Dataset, output: &[usize]) -> Result<()> {
    let classes = data.class_names().len();
    loss.validate(output, classes).map_err(|e| {
        let last = spec.model.layers.len().saturating_sub(1);
        Error::spec(
            format!("model.layers[{last}]"),
            format!("output does not fit the loss: {e}"),
        )
    })
}

/// Model outputs on a dataset.
#[derive(Debug, Clone)]
pub struct Predictions {
    /// Mean loss (sample weights ignored).
    pub loss: f64,
    /// Classification: class probabilities `[N, classes]` row-major (binary sigmoid outputs are
    /// expanded to `[1 - p, p]`); regression: the model's (standardised) outputs `[N]`.
    pub outputs: Vec<f32>,
    /// Values per sample in `outputs`.
    pub width: usize,
}

impl Predictions {
    /// The most probable class of each sample.
    pub fn argmax(&self) -> Vec<u32> {
        self.outputs
            .chunks(self.width.max(1))
            .map(|row| {
                row.iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                    )
                    .0 as u32
            })
            .collect()
    }

    /// Top-1 accuracy against the dataset's labels (0 for regression).
    pub fn accuracy(&self, data: &Dataset) -> f64 {
        match &data.targets {
            Targets::Classes { labels, .. } if !labels.is_empty() => {
                self.argmax()
                    .iter()
                    .zip(labels)
                    .filter(|(a, b)| a == b)
                    .count() as f64
                    / labels.len() as f64
            }
            _ => 0.0,
        }
    }
}

/// Run the model in evaluation mode over `data` in batches of `batch_size`.
pub fn predict(
    model: &Model,
    loss: &LossSpec,
    data: &Dataset,
    batch_size: usize,
) -> Result<Predictions> {
    let n = data.len();
    let per = data.sample_len();
    let act = loss.output_activation();
    let mut outputs = Vec::new();
    let mut loss_sum = 0.0f64;
    let mut width = 1;
    for start in (0..n).step_by(batch_size.max(1)) {
        let end = (start + batch_size).min(n);
        let mut shape = vec![end - start];
        shape.extend_from_slice(&data.sample_shape);
        let x = Tensor::from_slice(&data.features[start * per..end * per], shape, &Device::Cpu)
            .op("evaluation batch")?;
        let y = match &data.targets {
            Targets::Classes { labels, .. } => {
                Tensor::from_slice(&labels[start..end], end - start, &Device::Cpu)
            }
            Targets::Regression { values } => {
                Tensor::from_slice(&values[start..end], end - start, &Device::Cpu)
            }
        }
        .op("evaluation targets")?;
        let logits = model.forward_t(&x, false).op("evaluation forward pass")?;
        let l = lepton_nn::loss(loss, &logits, &y, None)?;
        loss_sum += l
            .to_dtype(DType::F64)
            .and_then(|t| t.to_scalar::<f64>())
            .op("reading the loss")?
            * (end - start) as f64;
        let out = lepton_nn::activate(act, &logits)?
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .op("reading predictions")?;
        match act {
            OutputActivation::Softmax => {
                width = logits.dim(D::Minus1).op("output width")?;
                outputs.extend(out);
            }
            OutputActivation::Sigmoid => {
                width = 2;
                outputs.extend(out.iter().flat_map(|&p| [1.0 - p, p]));
            }
            OutputActivation::Identity => outputs.extend(out),
        }
    }
    Ok(Predictions {
        loss: loss_sum / n.max(1) as f64,
        outputs,
        width,
    })
}

/// Correctly classified samples in a batch, as an `f32` scalar tensor (no host sync).
pub fn correct_count(logits: &Tensor, y: &Tensor, loss: &LossSpec) -> Result<Tensor> {
    let pred = match loss {
        LossSpec::BinaryCrossEntropy => logits
            .flatten_all()
            .and_then(|z| z.gt(0.0))
            .and_then(|p| p.to_dtype(DType::U32)),
        _ => logits.argmax(D::Minus1),
    }
    .op("predicted classes")?;
    pred.eq(&y.to_dtype(DType::U32).op("labels")?)
        .and_then(|m| m.to_dtype(DType::F32))
        .and_then(|m| m.sum_all())
        .op("counting correct predictions")
}

/// Map standardised regression outputs back to target units.
pub fn decode_regression(pre: &Preprocessor, values: &[f32]) -> Vec<f32> {
    values.iter().map(|&v| pre.decode_target(v)).collect()
}

/// The lepton-eval report of predictions on a labelled dataset; regression values are compared in
/// the target's original units.
pub fn report(preds: &Predictions, data: &Dataset, pre: &Preprocessor) -> Result<Report> {
    Ok(match &data.targets {
        Targets::Classes {
            labels,
            class_names,
        } => Report::Classification(lepton_eval::classification(
            labels,
            &preds.outputs,
            class_names,
        )?),
        Targets::Regression { values } => Report::Regression(lepton_eval::regression(
            &decode_regression(pre, values),
            &decode_regression(pre, &preds.outputs),
        )?),
    })
}

/// Evaluate and write `report.json`, `report.md` and (when `eval.plots`) `learning-curves.png`,
/// `accuracy-curves.png` and `confusion-matrix.png` into `dir`; returns the headline metrics.
pub fn write_report(
    spec: &Spec,
    preds: &Predictions,
    data: &Dataset,
    pre: &Preprocessor,
    split: &str,
    history: &[EpochMetrics],
    dir: &Path,
) -> Result<Vec<(String, f64)>> {
    let report = report(preds, data, pre)?;
    report.write(dir, &format!("{}: {split} set", spec.name))?;
    write_curves(spec, &report, history, dir, |m| (m.epoch + 1) as f64)?;
    Ok(report.metrics().into_iter().collect())
}

/// Write a language model's `report.json` / `report.md` (loss, perplexity, bits) and its
/// learning curves (by step); returns the headline metrics.
pub fn write_lm_report(
    spec: &Spec,
    lm: lepton_eval::LanguageModelReport,
    split: &str,
    history: &[EpochMetrics],
    dir: &Path,
) -> Result<Vec<(String, f64)>> {
    let report = Report::LanguageModel(lm);
    report.write(dir, &format!("{}: {split} text", spec.name))?;
    write_curves(spec, &report, history, dir, |m| m.step as f64)?;
    Ok(report.metrics().into_iter().collect())
}

/// The learning-curve (and confusion-matrix) PNGs, when `eval.plots`; `x` places an entry of the
/// history on the horizontal axis.
fn write_curves(
    spec: &Spec,
    report: &Report,
    history: &[EpochMetrics],
    dir: &Path,
    x: fn(&EpochMetrics) -> f64,
) -> Result<()> {
    if spec.eval.plots && !history.is_empty() {
        let series = |name: &str, f: &dyn Fn(&EpochMetrics) -> Option<f64>| Series {
            name: name.into(),
            points: history
                .iter()
                .filter_map(|m| f(m).map(|v| (x(m), v)))
                .collect(),
        };
        let mut losses = vec![series("train loss", &|m| Some(m.train_loss))];
        if history.iter().any(|m| m.val_loss.is_some()) {
            losses.push(series("validation loss", &|m| m.val_loss));
        }
        plots::learning_curves(
            &dir.join("learning-curves.png"),
            &spec.name,
            "loss",
            &losses,
        )?;
        if history.iter().any(|m| m.train_accuracy.is_some()) {
            let acc = vec![
                series("train accuracy", &|m| m.train_accuracy),
                series("validation accuracy", &|m| m.val_accuracy),
            ];
            plots::learning_curves(
                &dir.join("accuracy-curves.png"),
                &spec.name,
                "accuracy",
                &acc,
            )?;
        }
        if let Report::Classification(c) = report {
            plots::confusion_matrix(&dir.join("confusion-matrix.png"), c)?;
        }
    }
    Ok(())
}

/// Evaluate the best model of a finished run directory on `data` (already preprocessed with the
/// run's `preprocessor.json`), for `lepton eval`.
pub fn evaluate_run(run_dir: &Path, data: &Dataset) -> Result<Report> {
    let dir = RunDir::new(run_dir);
    let spec = Spec::from_file(&dir.spec())?;
    let pre: Preprocessor = dir.read_json(&dir.preprocessor())?;
    let (_, tensors) = dir.load_best()?;
    let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = Model::new(&spec.model, &data.sample_shape, vb)?;
    let loss = spec.loss.clone().unwrap_or_else(|| default_loss(data));
    let preds = predict(&model, &loss, data, spec.train.eval_batch_size)?;
    report(&preds, data, &pre)
}
