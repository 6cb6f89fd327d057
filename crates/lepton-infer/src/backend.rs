//! [`Backend`]: what the server needs from a predictive model — turning inputs into features,
//! and a batched forward pass. The server never sees the trainer; `lepton-photon` implements it
//! for `.photon` packages.

use std::sync::Arc;

use serde::Serialize;

use crate::language_model::LanguageModel;
use crate::InferError;

/// A model's output for one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// Class probabilities, in class order.
    Probabilities(Vec<f32>),
    /// A regression value in target units.
    Value(f32),
}

/// Static facts about a served model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    /// Per-sample feature shape the forward pass takes.
    pub sample_shape: Vec<usize>,
    /// Empty for regression.
    pub class_names: Vec<String>,
    /// The input schema (image size or table columns), as JSON.
    pub input_schema: serde_json::Value,
    pub task: String,
    /// Evaluation metrics stored with the model.
    pub metrics: serde_json::Value,
    pub version: String,
    /// The weights' precision: `f32`, or `int8` for a compressed package.
    pub precision: String,
}

/// The most work one explanation may ask for (the serve config's `[explain]` section); requests
/// above a limit are refused with the field named before any model call.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ExplainLimits {
    /// Most integrated-gradients steps. Default 1024.
    pub max_steps: usize,
    /// Most occlusion windows (patch positions). Default 4096.
    pub max_positions: usize,
    /// Most kernel-SHAP model rows (coalitions × background rows). Default 2,000,000.
    pub max_shap_rows: usize,
    /// Most kernel-SHAP background rows. Default 1000.
    pub max_background: usize,
}

impl Default for ExplainLimits {
    fn default() -> Self {
        Self {
            max_steps: 1024,
            max_positions: 4096,
            max_shap_rows: 2_000_000,
            max_background: 1000,
        }
    }
}

/// A servable model. Implementations must be cheap to call from several threads at once.
/// Bad inputs are [`InferError::BadRequest`] naming the input part; a failed forward pass is
/// [`InferError::Internal`].
pub trait Backend: Send + Sync + 'static {
    fn info(&self) -> &ModelInfo;
    /// Features for a decoded image.
    fn image_features(&self, img: &image::DynamicImage) -> Result<Vec<f32>, InferError>;
    /// Features for raw numbers (pixels 0-255, or numeric columns in order).
    fn raw_features(&self, raw: &[f32]) -> Result<Vec<f32>, InferError>;
    /// Features for named column values.
    fn row_features(&self, row: &[(String, String)]) -> Result<Vec<f32>, InferError>;
    /// Forward pass over `n` samples of preprocessed features, concatenated.
    fn predict(&self, features: &[f32], n: usize) -> Result<Vec<Output>, InferError>;
    /// Features for a text (text models; others refuse).
    fn text_features(&self, _text: &str) -> Result<Vec<f32>, InferError> {
        Err(InferError::bad_request(
            "text",
            "this model does not take text",
        ))
    }
    /// An attribution for one sample of preprocessed features (`sample_shape`): `request` is the
    /// explanation request (`{"method": "integrated-gradients", "steps": 64, ...}`, see
    /// `lepton_explain::ExplainRequest`), `background` holds kernel SHAP's background rows as
    /// features, concatenated. Returns the attribution as JSON. CPU-heavy: call it off the async
    /// runtime. Models that cannot explain refuse (the default).
    fn explain(
        &self,
        _features: &[f32],
        _background: &[f32],
        _request: &serde_json::Value,
        _limits: &ExplainLimits,
    ) -> Result<serde_json::Value, InferError> {
        Err(InferError::NotFound(
            "this model does not support explanations".into(),
        ))
    }
    /// The model as a [`LanguageModel`] for the generation routes, when it is one: generations
    /// of at most `max_tokens` tokens, each run while it holds one of the `permits`.
    fn language_model(
        &self,
        _max_tokens: usize,
        _permits: Arc<tokio::sync::Semaphore>,
    ) -> Option<Arc<dyn LanguageModel>> {
        None
    }
}
