//! [`compress`]: the steps in order (fold batch norms, prune, fine-tune, quantize), each followed
//! by the gate: the model is re-evaluated on the held-out samples and a step that loses more than
//! `max-drop` points of accuracy stops the compression; the report says why, and the caller
//! writes nothing unless `force` is set.

use std::collections::HashMap;

use lepton_data::Dataset;
use lepton_nn::LossSpec;

use crate::calibrate::Calibration;
use crate::error::{Error, Result};
use crate::finetune::{finetune, Finetune};
use crate::fold::fold_batch_norms;
use crate::net::{accuracy, check_shape, speeds, Net};
use crate::per_layer::quantize_per_layer;
use crate::prune::{prune_magnitude, prune_structured};
use crate::quantize::{quantize_with_codes, Quantize};
use crate::report::{Measure, Report, StepReport};
use crate::CompressConfig;

/// The data a compression uses.
#[derive(Debug, Clone, Copy)]
pub struct CompressData<'a> {
    /// Held-out samples the gate evaluates on (the run's validation split).
    pub held_out: &'a Dataset,
    /// Training samples for the fine-tune and the calibration (the run's training split).
    pub train: Option<&'a Dataset>,
    /// The model's loss (for the fine-tune).
    pub loss: &'a LossSpec,
}

/// Timed passes per batch size in the report's speed measurements.
const SPEED_REPS: usize = 20;

/// The compressed model and the report. `report.written` says whether the caller should write
/// `net` (accepted, or refused with `force`).
#[derive(Debug)]
pub struct Compressed {
    pub net: Net,
    pub report: Report,
}

/// Run the steps of `cfg` on `net` (see the module docs); `name` names the model in the report.
pub fn compress(
    name: &str,
    net: Net,
    cfg: &CompressConfig,
    data: CompressData,
) -> Result<Compressed> {
    cfg.validate()?;
    // Cheap checks before any work: precision, shapes, the data each step needs.
    if net.is_int8() {
        return Err(Error::Model {
            step: "compress",
            message:
                "the model is already int8 (linear-int8/conv2d-int8 layers): compress the f32 model"
                    .into(),
        });
    }
    check_shape(&net, data.held_out, "held-out data")?;
    let needs_train = cfg.finetune_epochs > 0 || cfg.quantize == Some(crate::Quantize::Int8);
    match data.train {
        Some(t) => check_shape(&net, t, "training data")?,
        None if needs_train => {
            return Err(Error::Data {
                what: "training data",
                message:
                    "the fine-tune and static int8 calibration need the run's training samples"
                        .into(),
            })
        }
        None => {}
    }
    let base = accuracy(&net, data.held_out, "evaluating the original model")?;
    let original = net.clone();
    let mut net = net;
    let mut steps = Vec::new();
    let mut refusal = None;
    let mut gate = |net: &Net,
                    step: &str,
                    detail: String,
                    steps: &mut Vec<StepReport>|
     -> Result<bool> {
        let acc = accuracy(net, data.held_out, step)?;
        let drop = base - acc;
        let ok = drop <= cfg.max_drop;
        steps.push(StepReport {
            step: step.into(),
            detail,
            accuracy: acc,
            drop,
            decision: if ok { "accepted" } else { "refused" }.into(),
        });
        if !ok && refusal.is_none() {
            refusal = Some(format!(
                "after {step}, held-out accuracy is {acc:.2} % against {base:.2} %: {drop:.2} points lost, more than max-drop = {}",
                cfg.max_drop
            ));
        }
        Ok(ok || cfg.force)
    };
    let folded = fold_batch_norms(&mut net)?;
    let mut go = gate(
        &net,
        "fold-batch-norm",
        format!("{folded} batch norms folded"),
        &mut steps,
    )?;
    if go {
        if let Some(ratio) = cfg.prune {
            let (detail, masks) = if cfg.structured {
                let n = prune_structured(&mut net, ratio)?;
                (
                    format!("{n} channels/neurons removed (L1, ratio {ratio})"),
                    HashMap::new(),
                )
            } else {
                let masks = prune_magnitude(&mut net, ratio)?;
                (
                    format!(
                        "{:.1} % of the weights set to zero",
                        100.0 * net.sparsity()?
                    ),
                    masks,
                )
            };
            if cfg.finetune_epochs > 0 {
                let train = data.train.expect("checked above");
                finetune(
                    &mut net,
                    train,
                    data.loss,
                    &masks,
                    Finetune {
                        epochs: cfg.finetune_epochs,
                        lr: cfg.finetune_lr,
                        batch_size: cfg.finetune_batch_size,
                        seed: cfg.seed,
                    },
                )?;
            }
            let detail = if cfg.finetune_epochs > 0 {
                format!("{detail}, then {} fine-tune epoch(s)", cfg.finetune_epochs)
            } else {
                detail
            };
            go = gate(&net, "prune", detail, &mut steps)?;
        }
    }
    if go {
        if let Some(mode) = cfg.quantize {
            let calibration = data
                .train
                .map(|t| (t, cfg.calibration_samples, cfg.calibration));
            let detail = match calibration {
                Some((train, samples, Calibration::PerLayer)) if mode == Quantize::Int8 => {
                    let c = quantize_per_layer(
                        &mut net,
                        train,
                        samples,
                        data.held_out,
                        cfg.bias_correction,
                    )?;
                    let methods: Vec<&str> = c
                        .methods
                        .iter()
                        .map(|m| match m {
                            Calibration::Minmax => "minmax",
                            _ => "mse",
                        })
                        .collect();
                    format!(
                        "{} layers to int8 (calibration per layer on the held-out samples: {}; input zero points {:?})",
                        c.layers,
                        methods.join(", "),
                        c.zero_points
                    )
                }
                _ => {
                    let n = quantize_with_codes(
                        &mut net,
                        mode,
                        calibration,
                        cfg.bias_correction,
                        cfg.zero_point_codes,
                    )?;
                    format!("{n} layers to {}", mode.name())
                }
            };
            go = gate(&net, "quantize", detail, &mut steps)?;
        }
    }
    let _ = go;
    let after_acc = steps.last().map_or(base, |s| s.accuracy);
    // Both models timed at the end, in turn (see `speeds`).
    let [speed_before, speed_after] = speeds([&original, &net], data.held_out, SPEED_REPS)?;
    let before = Measure::new(&original, base, speed_before)?;
    let after = Measure::new(&net, after_acc, speed_after)?;
    let accepted = refusal.is_none();
    let report = Report {
        name: name.to_string(),
        config: cfg.clone(),
        held_out_samples: data.held_out.len(),
        before,
        after,
        steps,
        accepted,
        written: accepted || cfg.force,
        refusal,
    };
    Ok(Compressed { net, report })
}
