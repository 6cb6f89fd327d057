//! Losses on logits, with optional per-sample weights.
//!
//! - cross-entropy: `l_i = (1-ε)·(-log p_{i,y_i}) + ε·mean_c(-log p_{i,c})` with `p = softmax(z)`
//!   (PyTorch's `label_smoothing`); logits `[B, C]`, targets `[B]` (class ids), or per position
//!   (a language model): logits `[B, T, C]`, targets `[B, T]`, where a sample's loss is the mean
//!   over its `T` positions.
//! - binary cross-entropy with logits: `l_i = max(z,0) - z·y + log(1 + e^{-|z|})`; logits `[B]` or
//!   `[B, 1]`, targets 0/1.
//! - MSE: `l_i = (z_i - y_i)²`; logits `[B]` or `[B, 1]` with targets `[B]`, or logits `[B, K]`
//!   with targets `[B, K]` (multi-step forecasting), where a sample's loss is the mean over `K`.
//!
//! The batch loss is `Σ w_i l_i / Σ w_i` (the plain mean without weights), as PyTorch's weighted
//! mean; with per-position losses and no weights this is the mean over all `B·T` positions.

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The `[loss]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LossSpec {
    /// Softmax cross-entropy for classification. `label-smoothing` defaults to 0.
    #[serde(rename_all = "kebab-case")]
    CrossEntropy {
        #[serde(default)]
        label_smoothing: f64,
    },
    /// Sigmoid + binary cross-entropy for two classes with a single output.
    BinaryCrossEntropy,
    /// Mean squared error for regression.
    Mse,
}

impl Default for LossSpec {
    fn default() -> Self {
        LossSpec::CrossEntropy {
            label_smoothing: 0.0,
        }
    }
}

/// How to turn model outputs into predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputActivation {
    Softmax,
    Sigmoid,
    Identity,
}

impl LossSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            LossSpec::CrossEntropy { .. } => "cross-entropy",
            LossSpec::BinaryCrossEntropy => "binary-cross-entropy",
            LossSpec::Mse => "mse",
        }
    }

    pub fn output_activation(&self) -> OutputActivation {
        match self {
            LossSpec::CrossEntropy { .. } => OutputActivation::Softmax,
            LossSpec::BinaryCrossEntropy => OutputActivation::Sigmoid,
            LossSpec::Mse => OutputActivation::Identity,
        }
    }

    /// Check the loss against the model's output shape and the number of classes (0 = regression).
    pub fn validate(&self, output: &[usize], classes: usize) -> Result<()> {
        let err = |message: String| {
            Err(Error::Loss {
                kind: self.kind(),
                message,
            })
        };
        match self {
            LossSpec::CrossEntropy { label_smoothing } => {
                if !(0.0..1.0).contains(label_smoothing) {
                    return err(format!(
                        "label-smoothing = {label_smoothing} must be in [0, 1)"
                    ));
                }
                // One distribution per sample `[C]`, or one per position `[T, C]`.
                let fits = match output {
                    [c] | [_, c] => *c == classes,
                    _ => false,
                };
                if !fits || classes == 0 {
                    return err(format!("the model outputs {output:?} per sample but the data has {classes} classes (needs [{classes}] or [T, {classes}]: the last linear layer needs out-features = {classes})"));
                }
            }
            LossSpec::BinaryCrossEntropy => {
                if classes != 2 || output != [1] {
                    return err(format!("needs 2 classes and one output per sample; the data has {classes} classes and the model outputs {output:?}"));
                }
            }
            LossSpec::Mse => {
                if output.len() != 1 || output[0] == 0 {
                    return err(format!(
                        "needs one output or a vector [K] of outputs per sample, the model outputs {output:?}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Apply the output activation to logits `[B, ...]`.
pub fn activate(act: OutputActivation, logits: &Tensor) -> Result<Tensor> {
    Ok(match act {
        OutputActivation::Softmax => candle_nn::ops::softmax(logits, D::Minus1)?,
        OutputActivation::Sigmoid => candle_nn::ops::sigmoid(logits)?,
        OutputActivation::Identity => logits.clone(),
    })
}

fn weighted_mean(per_sample: &Tensor, weights: Option<&Tensor>) -> Result<Tensor> {
    Ok(match weights {
        Some(w) => {
            let w = w.to_dtype(per_sample.dtype())?;
            (per_sample * &w)?.sum_all()?.broadcast_div(&w.sum_all()?)?
        }
        None => per_sample.mean_all()?,
    })
}

/// The scalar loss for a batch.
pub fn loss(
    spec: &LossSpec,
    logits: &Tensor,
    targets: &Tensor,
    weights: Option<&Tensor>,
) -> Result<Tensor> {
    let b = logits.dim(0)?;
    let dims = logits.dims();
    let expected: &[usize] = match spec {
        // One class id per distribution: logits [B, C] or [B, T, C].
        LossSpec::CrossEntropy { .. } if dims.len() >= 2 => &dims[..dims.len() - 1],
        // One target per output: logits [B, K] with targets [B, K].
        LossSpec::Mse if dims.len() == 2 && dims[1] > 1 => dims,
        _ => &[b],
    };
    if targets.dims() != expected {
        return Err(Error::Loss {
            kind: spec.kind(),
            message: format!(
                "targets have shape {:?}, expected {expected:?} for logits {dims:?}",
                targets.dims()
            ),
        });
    }
    let per_sample = match spec {
        LossSpec::CrossEntropy { label_smoothing } => {
            let classes = logits.dim(D::Minus1)?;
            let logp = candle_nn::ops::log_softmax(&logits.reshape(((), classes))?, D::Minus1)?;
            let idx = targets.flatten_all()?.to_dtype(DType::U32)?.unsqueeze(1)?;
            let nll = logp.gather(&idx, 1)?.squeeze(1)?.neg()?;
            let per_position = if *label_smoothing > 0.0 {
                let smooth = logp.mean(D::Minus1)?.neg()?;
                ((nll * (1.0 - label_smoothing))? + (smooth * *label_smoothing)?)?
            } else {
                nll
            };
            // The mean over each sample's positions ([B, T] -> [B]; [B] stays).
            per_position.reshape((b, ()))?.mean(1)?
        }
        LossSpec::BinaryCrossEntropy => {
            let z = logits.flatten_all()?;
            let y = targets.to_dtype(z.dtype())?;
            let softplus = z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
            ((z.relu()? - (&z * &y)?)? + softplus)?
        }
        LossSpec::Mse => {
            let y = targets.to_dtype(logits.dtype())?.reshape((b, ()))?;
            (logits.reshape((b, ()))? - y)?.sqr()?.mean(1)?
        }
    };
    weighted_mean(&per_sample, weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn cross_entropy_with_label_smoothing_matches_the_formula() {
        let z = t(&[1.0, 2.0, 0.5, -1.0, 0.0, 3.0], &[2, 3]);
        let y = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
        let eps = 0.1;
        let got = loss(
            &LossSpec::CrossEntropy {
                label_smoothing: eps,
            },
            &z,
            &y,
            None,
        )
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
        let row = |r: [f64; 3], k: usize| {
            let lse = r.iter().map(|v| v.exp()).sum::<f64>().ln();
            let logp: Vec<f64> = r.iter().map(|v| v - lse).collect();
            (1.0 - eps) * -logp[k] + eps * -(logp.iter().sum::<f64>() / 3.0)
        };
        let want = (row([1.0, 2.0, 0.5], 1) + row([-1.0, 0.0, 3.0], 2)) / 2.0;
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // Weighted: only the second sample counts.
        let w = t(&[0.0, 2.0], &[2]);
        let got = loss(
            &LossSpec::CrossEntropy {
                label_smoothing: eps,
            },
            &z,
            &y,
            Some(&w),
        )
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
        assert!((got - row([-1.0, 0.0, 3.0], 2)).abs() < 1e-12);
    }

    #[test]
    fn bce_and_mse_match_the_formulas() {
        let z = t(&[0.3, -2.0], &[2, 1]);
        let y = t(&[1.0, 0.0], &[2]);
        let got = loss(&LossSpec::BinaryCrossEntropy, &z, &y, None)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let want = (-(s(0.3)).ln() - (1.0 - s(-2.0)).ln()) / 2.0;
        assert!((got - want).abs() < 1e-12);
        let got = loss(&LossSpec::Mse, &z, &y, None)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((got - ((0.3f64 - 1.0).powi(2) + 4.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn validate_names_the_mismatch() {
        let e = LossSpec::default()
            .validate(&[5], 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("out-features = 10"), "{e}");
        assert!(LossSpec::Mse.validate(&[1], 0).is_ok());
    }
}
