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
