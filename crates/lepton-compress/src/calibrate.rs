//! Static int8 calibration: the input scale of each quantized layer from the activations the f32
//! model computes on calibration samples.
//!
//! An activation `x` becomes the code `clamp(round(x / d), -127, 127)` with `d = c / 127` for a
//! clipping range `c`. Two ways to choose `c` ([`Calibration`]):
//! - `minmax`: `c = max |x|`, no value clipped but one outlier stretches the step `d` for all.
//! - `mse` (the default): the `c` that minimises the expected squared quantization error over a
//!   histogram of `|x|` (2,048 bins over `(0, max |x|]`, exact zeros counted apart since they stay
//!   exact), as PyTorch's `HistogramObserver` (the default activation observer of its x86
//!   qconfig) does: for a candidate `c`, a value `v ≤ c` costs `v²` if it rounds to zero
//!   (`v < d / 2`) and the uniform rounding noise `d² / 12` otherwise; a value `v > c` costs the
//!   clipping error `(v - c)²`; values are taken at their bin's centre. Every bin edge is a
//!   candidate.
//!
//! With `zero-point-codes`, an input never negative on the calibration samples (after a ReLU,
//! or an image in `[0, 1]`) gets codes with zero point 0 instead ([`InputRange`]): `clamp(round(x / d), 0, 255)` with
//! `d = c / 255`, twice the resolution of the symmetric codes, which would leave the negative
//! half unused; the `mse` range is then chosen for 255 steps over `[0, c]`.

use lepton_data::Dataset;
use lepton_nn::ModelSpec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::net::{logits, Net};

/// How static int8 calibration picks each activation range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Calibration {
    /// The range minimising the expected squared quantization error (histogram). The default.
    #[default]
    Mse,
    /// The largest `|x|` seen.
    Minmax,
    /// Per layer, `mse` or `minmax`, whichever gives the better accuracy on the held-out samples
    /// (the compression's gate data, never the test set), chosen greedily in layer order from
    /// all-`mse` ([`crate::quantize_per_layer`]). Without held-out data (`quantize` alone): `mse`.
    PerLayer,
}

/// Bins of the `|x|` histogram.
const BINS: usize = 2048;

/// Most calibration samples per forward pass.
const CALIBRATION_BATCH: usize = 256;

/// A layer's calibrated input range and the codes it gets.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InputRange {
    /// The clipping range `c`.
    pub max: f32,
    /// No value below 0 on the calibration samples: codes over `[0, c]` with zero point 0.
    pub never_negative: bool,
}

impl InputRange {
    /// The input `(scale, zero point)`: `(c / 255, 0)` when never negative, else `(c / 127,
    /// 128)` (symmetric); the scale at least the smallest positive f32.
    pub fn codes(&self) -> (f32, u8) {
        let (levels, zero) = if self.never_negative {
            (255.0, 0)
        } else {
            (127.0, 128)
        };
        ((self.max / levels).max(f32::MIN_POSITIVE), zero)
    }

    /// The steps of the codes over `[0, c]`: 255 or 127.
    fn levels(&self) -> u32 {
        if self.never_negative {
            255
        } else {
            127
        }
    }
}

/// A histogram of `|x|` over `(0, amax]` in [`BINS`] equal bins, exact zeros apart.
#[derive(Debug, Clone)]
pub struct Histogram {
    amax: f32,
    zeros: u64,
    counts: Vec<u64>,
}

impl Histogram {
    /// An empty histogram over `(0, amax]` (`amax` finite, ≥ 0).
    pub fn new(amax: f32) -> Self {
        Self {
            amax,
            zeros: 0,
            counts: vec![0; BINS],
        }
    }

    /// Count the values of `xs` (those above `amax` go to the last bin).
    pub fn add(&mut self, xs: &[f32]) {
        let per = if self.amax > 0.0 {
            BINS as f32 / self.amax
        } else {
            0.0
        };
        for &x in xs {
            let a = x.abs();
            if a == 0.0 || a.is_nan() {
                self.zeros += 1;
            } else {
                self.counts[((a * per) as usize).min(BINS - 1)] += 1;
            }
        }
    }

    /// The expected squared error (summed over the counted values) of quantizing with range `c`
    /// in `levels` steps.
    fn error(&self, c: f64, levels: u32) -> f64 {
        let w = self.amax as f64 / BINS as f64;
        let d = c / f64::from(levels);
        let noise = d * d / 12.0;
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(j, &n)| {
                let v = (j as f64 + 0.5) * w;
                let e = if v > c {
                    (v - c) * (v - c)
                } else if v < d / 2.0 {
                    v * v
                } else {
                    noise
                };
                n as f64 * e
            })
            .sum()
    }

    /// The clipping range with the least expected squared error (see the module docs); `amax`
    /// itself when nothing beats it, 0 for an all-zero histogram.
    pub fn mse_range(&self) -> f32 {
        self.mse_range_in(127)
    }

    /// [`Histogram::mse_range`] for codes of `levels` steps over `[0, c]` (127 for symmetric
    /// codes, 255 with zero point 0).
    pub fn mse_range_in(&self, levels: u32) -> f32 {
        let w = self.amax as f64 / BINS as f64;
        let mut best = (self.error(self.amax as f64, levels), self.amax as f64);
        for i in 1..BINS {
            let c = i as f64 * w;
            let e = self.error(c, levels);
            if e < best.0 {
                best = (e, c);
            }
        }
        best.1 as f32
    }
}

/// The input of a layer (the output of `upto`, the model cut before it; the samples when it is
/// the first) for samples `range`.
fn layer_inputs(
    upto: Option<&lepton_nn::Model>,
    data: &Dataset,
    range: std::ops::Range<usize>,
) -> Result<Vec<f32>> {
    let x = match upto {
        Some(m) => logits(m, data, range)?,
        None => {
            let per = data.sample_len();
            return Ok(data.features[range.start * per..range.end * per].to_vec());
        }
    };
    x.flatten_all()
        .and_then(|t| t.to_vec1())
        .map_err(Error::tensor("calibration"))
}

/// The clipping range `c` of the input of each layer `i` with `wanted[i]` (0 elsewhere), over
/// the first `samples` of `data`, chosen by `method`, for symmetric codes.
pub fn input_ranges(
    net: &Net,
    data: &Dataset,
    samples: usize,
    wanted: &[bool],
    method: Calibration,
) -> Result<Vec<InputRange>> {
    input_ranges_with(net, data, samples, wanted, method, false)
}

/// [`input_ranges`]; when `zero_point_codes`, an input never negative on the samples gets the
/// codes with zero point 0 (and its `mse` range chosen for their 255 steps).
pub fn input_ranges_with(
    net: &Net,
    data: &Dataset,
    samples: usize,
    wanted: &[bool],
    method: Calibration,
    zero_point_codes: bool,
) -> Result<Vec<InputRange>> {
    let n = samples.min(data.len());
    let mut ranges = vec![InputRange::default(); net.spec.layers.len()];
    for (i, r) in ranges.iter_mut().enumerate() {
        if !wanted.get(i).copied().unwrap_or(false) {
            continue;
        }
        let upto = if i == 0 {
            None
        } else {
            let spec = ModelSpec {
                input: net.spec.input.clone(),
                layers: net.spec.layers[..i].to_vec(),
            };
            Some(Net::new(spec, net.input.clone(), net.tensors.clone()).model("calibration")?)
        };
        // One pass for the largest |x|, a second (minimum-error ranges only) for the histogram:
        // the activations are recomputed rather than held (conv inputs of 1,024 images would be
        // hundreds of MB).
        let (mut amax, mut amin) = (0f32, 0f32);
        for start in (0..n).step_by(CALIBRATION_BATCH) {
            let xs = layer_inputs(
                upto.as_ref(),
                data,
                start..(start + CALIBRATION_BATCH).min(n),
            )?;
            amax = xs.iter().fold(amax, |a, v| a.max(v.abs()));
            amin = xs.iter().fold(amin, |a, &v| a.min(v));
        }
        if !amax.is_finite() {
            return Err(Error::Data {
                what: "calibration data",
                message: format!("the input of layer {i} is not finite on the calibration samples"),
            });
        }
        r.never_negative = zero_point_codes && amin >= 0.0;
        let levels = r.levels();
        r.max = match method {
            Calibration::Minmax => amax,
            Calibration::Mse | Calibration::PerLayer => {
                let mut h = Histogram::new(amax);
                for start in (0..n).step_by(CALIBRATION_BATCH) {
                    let end = (start + CALIBRATION_BATCH).min(n);
                    h.add(&layer_inputs(upto.as_ref(), data, start..end)?);
                }
                h.mse_range_in(levels)
            }
        };
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean squared error of quantizing `xs` with range `c` (symmetric, ±127 codes).
    fn mse(xs: &[f32], c: f32) -> f64 {
        let d = c / 127.0;
        xs.iter()
            .map(|&x| {
                let q = (x / d).round().clamp(-127.0, 127.0) * d;
                ((x - q) as f64).powi(2)
            })
            .sum::<f64>()
            / xs.len() as f64
    }

    /// 200,000 standard normal values and one outlier at 10: min-max spreads the 255 codes over
    /// ±10, the least-error range clips the outlier near 4 and the real quantization error
    /// (computed on the values, not the histogram) is about half.
    #[test]
    fn mse_range_beats_minmax_on_outliers() {
        let mut state = 7u64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut xs: Vec<f32> = (0..200_000)
            .map(|_| {
                let (u, v) = (uniform(), uniform());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect();
        xs.push(10.0);
        let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert_eq!(amax, 10.0);
        let mut h = Histogram::new(amax);
        h.add(&xs);
        let c = h.mse_range();
        assert!(c > 3.0 && c < 7.0, "range {c}");
        let (ours, minmax) = (mse(&xs, c), mse(&xs, amax));
        assert!(ours * 1.5 < minmax, "mse {ours} vs minmax {minmax}");
    }

    /// Without outliers (uniform values) clipping only hurts: the range stays near the maximum.
    #[test]
    fn mse_range_keeps_the_maximum_without_outliers() {
        let xs: Vec<f32> = (0..20_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        let mut h = Histogram::new(0.999);
        h.add(&xs);
        let c = h.mse_range();
        assert!(c > 0.95 && c <= 0.999, "range {c}");
        assert!(mse(&xs, c) <= mse(&xs, 0.999) * 1.05);
    }

    #[test]
    fn an_all_zero_histogram_has_range_zero() {
        let mut h = Histogram::new(0.0);
        h.add(&[0.0, -0.0, 0.0]);
        assert_eq!(h.mse_range(), 0.0);
    }
}
