//! [`quantize_per_layer`]: static int8 with each layer's calibration method chosen on the
//! held-out samples ([`Calibration::PerLayer`]).
//!
//! The least-error range (`mse`) minimises each layer's own input error, which is not always
//! what the model's accuracy needs (a clipped activation can matter more downstream than the
//! rounding it saves). Starting from `mse` everywhere, each quantized layer in turn takes the
//! `minmax` range instead if that strictly raises the held-out accuracy of the whole int8 model
//! (bias-corrected as configured); one quantization and one held-out evaluation per layer.
//! Then each layer whose input is never negative on the calibration samples in turn takes the
//! codes with zero point 0 (255 steps over `[0, c]`, its range recalibrated for them) if that
//! strictly raises the held-out accuracy.

use lepton_data::Dataset;

use crate::calibrate::{input_ranges_with, Calibration};
use crate::error::{Error, Result};
use crate::fold::fold_batch_norms;
use crate::net::{accuracy, check_shape, Net};
use crate::quantize::{quantizable_layers, quantize_ranges};

/// The outcome of [`quantize_per_layer`].
#[derive(Debug, Clone, PartialEq)]
pub struct PerLayerChoice {
    /// Layers that became int8.
    pub layers: usize,
    /// The method chosen for each int8 layer, in layer order.
    pub methods: Vec<Calibration>,
    /// The input zero point chosen for each int8 layer (128 symmetric, 0), in layer order.
    pub zero_points: Vec<u8>,
    /// Held-out accuracy (percent) of the chosen int8 model.
    pub held_out_accuracy: f64,
}

/// Quantize `net` in place to static int8 with ranges from the first `samples` of
/// `calibration`, each layer's method chosen on `held_out` (see the module docs), biases
/// corrected when `bias_correction`.
pub fn quantize_per_layer(
    net: &mut Net,
    calibration: &Dataset,
    samples: usize,
    held_out: &Dataset,
    bias_correction: bool,
) -> Result<PerLayerChoice> {
    if net.is_int8() {
        return Err(Error::Model {
            step: "quantize",
            message: "the model is already int8; quantize the f32 model instead".into(),
        });
    }
    check_shape(net, calibration, "calibration data")?;
    check_shape(net, held_out, "held-out data")?;
    if samples == 0 {
        return Err(Error::Setting {
            field: "calibration-samples",
            message: "must be at least 1 for static int8".into(),
        });
    }
    fold_batch_norms(net)?;
    let wanted = quantizable_layers(net);
    let ranges = |method, zero_point| {
        input_ranges_with(net, calibration, samples, &wanted, method, zero_point)
    };
    let (mse, minmax) = (
        ranges(Calibration::Mse, false)?,
        ranges(Calibration::Minmax, false)?,
    );
    let (zp_mse, zp_minmax) = (
        ranges(Calibration::Mse, true)?,
        ranges(Calibration::Minmax, true)?,
    );
    let correction = bias_correction.then_some((calibration, samples));
    let mut zp = vec![false; wanted.len()];
    let build = |choice: &[Calibration], zp: &[bool]| -> Result<(f64, Net, usize)> {
        let ranges = choice
            .iter()
            .zip(zp)
            .enumerate()
            .map(|(i, (m, &z))| match (m, z) {
                (Calibration::Minmax, false) => minmax[i],
                (Calibration::Minmax, true) => zp_minmax[i],
                (_, false) => mse[i],
                (_, true) => zp_mse[i],
            })
            .collect();
        let mut q = net.clone();
        let n = quantize_ranges(&mut q, Some(ranges), correction)?;
        Ok((accuracy(&q, held_out, "per-layer calibration")?, q, n))
    };
    let mut choice = vec![Calibration::Mse; wanted.len()];
    let mut best = build(&choice, &zp)?;
    for i in (0..wanted.len()).filter(|&i| wanted[i]) {
        if mse[i] == minmax[i] {
            continue;
        }
        choice[i] = Calibration::Minmax;
        let candidate = build(&choice, &zp)?;
        if candidate.0 > best.0 {
            best = candidate;
        } else {
            choice[i] = Calibration::Mse;
        }
    }
    for i in (0..wanted.len()).filter(|&i| wanted[i] && zp_mse[i].never_negative) {
        zp[i] = true;
        let candidate = build(&choice, &zp)?;
        if candidate.0 > best.0 {
            best = candidate;
        } else {
            zp[i] = false;
        }
    }
    let (held_out_accuracy, q, layers) = best;
    *net = q;
    Ok(PerLayerChoice {
        layers,
        methods: (0..wanted.len())
            .filter(|&i| wanted[i])
            .map(|i| choice[i])
            .collect(),
        zero_points: (0..wanted.len())
            .filter(|&i| wanted[i])
            .map(|i| if zp[i] { 0 } else { 128 })
            .collect(),
        held_out_accuracy,
    })
}
