//! [`Attribution`]: one method's answer for one input, as written to `<stem>.<method>.json` and
//! returned by `POST /v1/models/{name}/explain`.

use serde::{Deserialize, Serialize};

/// The attribution methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `|∂y_target/∂x|` ([`crate::saliency()`]).
    Saliency,
    /// `x ⊙ ∂y_target/∂x` ([`crate::saliency()`]).
    GradientXInput,
    /// [`crate::integrated_gradients()`].
    IntegratedGradients,
    /// [`crate::occlusion()`].
    Occlusion,
    /// [`crate::kernel_shap()`].
    KernelShap,
    /// [`crate::permutation_importance()`] (a dataset, not one input).
    Permutation,
}

impl Method {
    /// The kebab-case name (`integrated-gradients`), as in file names and requests.
    pub fn name(self) -> &'static str {
        match self {
            Method::Saliency => "saliency",
            Method::GradientXInput => "gradient-x-input",
            Method::IntegratedGradients => "integrated-gradients",
            Method::Occlusion => "occlusion",
            Method::KernelShap => "kernel-shap",
            Method::Permutation => "permutation",
        }
    }

    /// Every method, in documentation order.
    pub const ALL: [Method; 6] = [
        Method::Saliency,
        Method::GradientXInput,
        Method::IntegratedGradients,
        Method::Occlusion,
        Method::KernelShap,
        Method::Permutation,
    ];
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                crate::Error::invalid(
                    "method",
                    format!("unknown method '{s}' (one of: {})", names.join(", ")),
                )
            })
    }
}

/// One method's attribution for one input: a value per input element (`shape` is the sample
/// shape), the method's parameters and its self-checks (integrated gradients' completeness
/// error, kernel SHAP's efficiency error).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    pub method: Method,
    /// The explained output (class index; 0 for a regression).
    pub target: usize,
    /// The per-sample input shape; `attributions` holds its elements in row-major order.
    pub shape: Vec<usize>,
    pub attributions: Vec<f32>,
    /// The model's score for `target` at the input.
    pub score: f32,
    pub params: serde_json::Value,
    pub checks: serde_json::Value,
}
