//! [`ExplainRequest`]: a method and its parameters as the CLI and `POST
//! /v1/models/{name}/explain` take them, checked against [`Limits`] before any model call (each
//! request costs at most the forward/backward passes the limits allow), then run by
//! [`ExplainRequest::run`].

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::attribution::{Attribution, Method};
use crate::error::{during, Error, Result};
use crate::integrated_gradients::{integrated_gradients, Baseline, IgConfig, Rule};
use crate::kernel_shap::{kernel_shap, KernelShapConfig};
use crate::occlusion::{occlusion, OcclusionConfig};
use crate::saliency::saliency;
use crate::scorer::{values, Scorer};

/// The most work one explanation may ask for (the `[explain]` section of the serve config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Limits {
    /// Most integrated-gradients steps. Default 1024.
    pub max_steps: usize,
    /// Most occlusion windows (positions). Default 4096.
    pub max_positions: usize,
    /// Most kernel-SHAP model rows (coalitions × background rows). Default 2,000,000.
    pub max_shap_rows: usize,
    /// Most background rows for kernel SHAP. Default 1000.
    pub max_background: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_steps: 1024,
            max_positions: 4096,
            max_shap_rows: 2_000_000,
            max_background: 1000,
        }
    }
}

/// The IG baseline by name (a given tensor comes separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaselineKind {
    #[default]
    Zeros,
    Mean,
    Blur,
}

/// One explanation request. Unset parameters take the method's documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ExplainRequest {
    pub method: Method,
    /// The output to explain. Default: the predicted class (the largest score).
    #[serde(default)]
    pub target: Option<usize>,
    /// Integrated gradients: integration steps (default 50).
    #[serde(default)]
    pub steps: Option<usize>,
    /// Integrated gradients: `gauss-legendre` (default) or `trapezoid`.
    #[serde(default)]
    pub rule: Option<Rule>,
    /// Integrated gradients: `zeros` (default), `mean` or `blur`.
    #[serde(default)]
    pub baseline: Option<BaselineKind>,
    /// Integrated gradients with a `blur` baseline: the Gaussian's sigma in pixels (default 3).
    #[serde(default)]
    pub sigma: Option<f32>,
    /// Occlusion: patch side (default 4).
    #[serde(default)]
    pub window: Option<usize>,
    /// Occlusion: patch stride (default 1).
    #[serde(default)]
    pub stride: Option<usize>,
    /// Occlusion: patch value (default 0).
    #[serde(default)]
    pub fill: Option<f32>,
    /// Kernel SHAP: sampled coalitions above 12 features (default 2048).
    #[serde(default)]
    pub samples: Option<usize>,
    /// Kernel SHAP: sampler seed (default 0).
    #[serde(default)]
    pub seed: Option<u64>,
}

impl ExplainRequest {
    /// A request for `method` with every parameter at its default.
    pub fn new(method: Method) -> Self {
        Self {
            method,
            target: None,
            steps: None,
            rule: None,
            baseline: None,
            sigma: None,
            window: None,
            stride: None,
            fill: None,
            samples: None,
            seed: None,
        }
    }

    fn ig(&self) -> IgConfig {
        IgConfig {
            steps: self.steps.unwrap_or(IgConfig::default().steps),
            rule: self.rule.unwrap_or_default(),
            ..IgConfig::default()
        }
    }

    fn occlusion(&self) -> OcclusionConfig {
        let d = OcclusionConfig::default();
        OcclusionConfig {
            window: self.window.unwrap_or(d.window),
            stride: self.stride.unwrap_or(d.stride),
            baseline: self.fill.unwrap_or(d.baseline),
            batch: d.batch,
        }
    }

    fn shap(&self) -> KernelShapConfig {
        let d = KernelShapConfig::default();
        KernelShapConfig {
            samples: self.samples.unwrap_or(d.samples),
            seed: self.seed.unwrap_or(d.seed),
            ..d
        }
    }

    /// Checks the request against `limits` and the sample shape, cheaply, before any model
    /// call; the error names the field over its limit or not fitting the input.
    pub fn check(&self, sample: &[usize], background_rows: usize, limits: &Limits) -> Result<()> {
        let over = |field: &'static str, got: usize, max: usize| {
            Error::invalid(field, format!("{got} is above the limit of {max}"))
        };
        match self.method {
            Method::IntegratedGradients => {
                let steps = self.ig().steps;
                if steps > limits.max_steps {
                    return Err(over("steps", steps, limits.max_steps));
                }
                if steps < 2 {
                    return Err(Error::invalid("steps", "at least 2 integration steps"));
                }
            }
            Method::Occlusion => {
                let (h, w) = match sample {
                    [.., h, w] if (2..=3).contains(&sample.len()) => (*h, *w),
                    _ => {
                        return Err(Error::invalid(
                            "method",
                            format!("occlusion needs an image input, the model takes {sample:?}"),
                        ))
                    }
                };
                let n = self.occlusion().positions(h, w)?;
                if n > limits.max_positions {
                    return Err(over("window", n, limits.max_positions));
                }
            }
            Method::KernelShap => {
                let &[f] = sample else {
                    return Err(Error::invalid(
                        "method",
                        format!("kernel SHAP needs tabular input, the model takes {sample:?}"),
                    ));
                };
                if background_rows == 0 {
                    return Err(Error::invalid(
                        "background",
                        "kernel SHAP needs background rows",
                    ));
                }
                if background_rows > limits.max_background {
                    return Err(over("background", background_rows, limits.max_background));
                }
                let rows = self.shap().coalitions(f).saturating_mul(background_rows);
                if rows > limits.max_shap_rows {
                    return Err(over("samples", rows, limits.max_shap_rows));
                }
            }
            Method::Permutation => {
                return Err(Error::invalid(
                    "method",
                    "permutation importance explains a dataset, not one input",
                ))
            }
            Method::Saliency | Method::GradientXInput => {}
        }
        Ok(())
    }

    /// Runs the request on the sample `x` (kernel SHAP against `background`, `[M, F]`); the
    /// target defaults to the predicted class. Call [`ExplainRequest::check`] first.
    pub fn run(
        &self,
        model: &dyn Scorer,
        x: &Tensor,
        background: Option<&Tensor>,
    ) -> Result<Attribution> {
        let target = match self.target {
            Some(t) => t,
            None => predicted(model, x)?,
        };
        match self.method {
            Method::Saliency => saliency(model, x, target, false),
            Method::GradientXInput => saliency(model, x, target, true),
            Method::IntegratedGradients => {
                let baseline = match self.baseline.unwrap_or_default() {
                    BaselineKind::Zeros => Baseline::Zeros,
                    BaselineKind::Mean => Baseline::Mean,
                    BaselineKind::Blur => Baseline::Blur {
                        sigma: self.sigma.unwrap_or(3.0),
                    },
                };
                integrated_gradients(model, x, &baseline, target, &self.ig())
            }
            Method::Occlusion => occlusion(model, x, target, &self.occlusion()),
            Method::KernelShap => {
                let bg = background.ok_or_else(|| {
                    Error::invalid("background", "kernel SHAP needs background rows")
                })?;
                kernel_shap(model, x, bg, target, &self.shap())
            }
            Method::Permutation => Err(Error::invalid(
                "method",
                "permutation importance explains a dataset, not one input",
            )),
        }
    }
}

/// The index of the largest score of the sample `x` (0 for a one-output model).
pub fn predicted(model: &dyn Scorer, x: &Tensor) -> Result<usize> {
    let y = x
        .unsqueeze(0)
        .and_then(|b| model.scores(&b.detach()))
        .map_err(during("forward pass"))?;
    let v = values(&y)?;
    Ok(v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_over_the_limits_name_the_field_before_any_model_call() {
        let l = Limits::default();
        let mut r = ExplainRequest::new(Method::IntegratedGradients);
        r.steps = Some(5000);
        let e = r.check(&[1, 28, 28], 0, &l).unwrap_err().to_string();
        assert!(e.starts_with("invalid steps") && e.contains("1024"), "{e}");
        let mut r = ExplainRequest::new(Method::Occlusion);
        r.window = Some(1);
        assert!(r.check(&[1, 28, 28], 0, &l).is_ok());
        let e = r.check(&[1, 100, 100], 0, &l).unwrap_err().to_string();
        assert!(e.starts_with("invalid window"), "{e}");
        let e = ExplainRequest::new(Method::KernelShap)
            .check(&[4], 5000, &l)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid background"), "{e}");
        let e = ExplainRequest::new(Method::KernelShap)
            .check(&[1, 28, 28], 10, &l)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid method"), "{e}");
        let bad: std::result::Result<ExplainRequest, _> =
            serde_json::from_str(r#"{"method": "saliency", "stepz": 3}"#);
        assert!(bad.unwrap_err().to_string().contains("stepz"));
    }
}
