//! The inference contract's [`Backend`] for `.photon` packages.
//!
//! A text classifier's sample (a text, or 1 to `max-len` token ids) becomes one `max-len` row,
//! left-padded as the training texts were ([`LoadedModel::text_row`]), and is batched like any
//! other. Language models do not predict; they generate ([`Backend::language_model`]).

use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use lepton_data::Preprocessor;
use lepton_infer::{Backend, ExplainLimits, InferError, LanguageModel, ModelInfo, Output};

use super::text_generation::PhotonLanguageModel;
use crate::{LoadedModel, Photon};

/// A loaded photon package.
pub struct PhotonBackend {
    info: ModelInfo,
    model: Arc<LoadedModel>,
    pre: Preprocessor,
}

impl PhotonBackend {
    /// Open, verify and load `path`, served as `name`.
    pub fn open(path: &Path, name: &str) -> crate::Result<Self> {
        let photon = Photon::open(path)?;
        let m = photon.manifest();
        let pre = m.preprocessor.clone();
        let model = photon.model()?;
        let info = ModelInfo {
            name: name.to_string(),
            sample_shape: pre.sample_shape(),
            class_names: pre.class_names().to_vec(),
            input_schema: serde_json::to_value(pre.input_schema()).unwrap_or_default(),
            task: if model.is_language_model() {
                "text-generation".into()
            } else {
                format!("{:?}", pre.task()).to_lowercase()
            },
            metrics: m.metrics.clone(),
            version: format!("{}", m.created_at),
            precision: m.model.precision().to_string(),
        };
        Ok(Self {
            info,
            model: Arc::new(model),
            pre,
        })
    }

    /// A text classifier's batch row for checked token ids (as f32).
    fn text_row(&self, ids: Vec<f32>) -> Result<Vec<f32>, InferError> {
        if self.model.is_language_model() {
            return Err(InferError::bad_request("model", format!(
                "'{}' is a language model: POST /v1/models/{}/generate (or /v1/completions) instead",
                self.info.name, self.info.name
            )));
        }
        let ids: Vec<u32> = ids.into_iter().map(|x| x as u32).collect();
        self.model.text_row(&ids).map_err(|e| match e {
            crate::Error::Generate { message, .. } => InferError::bad_request("text", message),
            other => InferError::bad_request("text", other.to_string()),
        })
    }
}

/// An explanation error as the contract's: a bad request part stays named, the rest is internal.
fn explain_error(e: lepton_explain::Error) -> InferError {
    match e {
        lepton_explain::Error::Invalid { field, message } => {
            InferError::bad_request(field, message)
        }
        other => InferError::internal("explaining the prediction", other),
    }
}

/// An input the preprocessor refuses (wrong size, unknown column, out-of-vocabulary text).
fn refused(e: lepton_data::Error) -> InferError {
    InferError::bad_request("inputs", e.to_string())
}

impl Backend for PhotonBackend {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn image_features(&self, img: &image::DynamicImage) -> Result<Vec<f32>, InferError> {
        self.pre.image_features(img).map_err(refused)
    }

    fn raw_features(&self, raw: &[f32]) -> Result<Vec<f32>, InferError> {
        let f = self.pre.raw_features(raw).map_err(refused)?;
        match self.pre {
            Preprocessor::Text { .. } => self.text_row(f),
            _ => Ok(f),
        }
    }

    fn text_features(&self, text: &str) -> Result<Vec<f32>, InferError> {
        let f = self.pre.text_features(text).map_err(refused)?;
        self.text_row(f)
    }

    fn row_features(&self, row: &[(String, String)]) -> Result<Vec<f32>, InferError> {
        let pairs: Vec<(&str, &str)> = row.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.pre.row_features(&pairs).map_err(refused)
    }

    fn predict(&self, features: &[f32], n: usize) -> Result<Vec<Output>, InferError> {
        let mut shape = vec![n];
        shape.extend_from_slice(&self.info.sample_shape);
        let x = Tensor::from_slice(features, shape, &Device::Cpu)
            .map_err(|e| InferError::internal("building the input batch", e))?;
        let y = self
            .model
            .predict(&x)
            .map_err(|e| InferError::internal("forward pass", e))?;
        let rows = y
            .flatten_from(1)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(|e| InferError::internal("reading the outputs", e))?;
        Ok(if self.info.class_names.is_empty() {
            rows.into_iter().map(|r| Output::Value(r[0])).collect()
        } else {
            rows.into_iter().map(Output::Probabilities).collect()
        })
    }

    fn explain(
        &self,
        features: &[f32],
        background: &[f32],
        request: &serde_json::Value,
        limits: &ExplainLimits,
    ) -> Result<serde_json::Value, InferError> {
        if matches!(self.pre, Preprocessor::Text { .. }) {
            return Err(InferError::bad_request(
                "model",
                "explanations need an image or tabular model (token ids are not differentiable)",
            ));
        }
        let req: lepton_explain::ExplainRequest = serde_json::from_value(request.clone())
            .map_err(|e| InferError::bad_request("explain", e.to_string()))?;
        let shape = &self.info.sample_shape;
        let len: usize = shape.iter().product();
        if features.len() != len || background.len() % len.max(1) != 0 {
            return Err(InferError::bad_request(
                "inputs",
                format!("expected one sample of {len} features"),
            ));
        }
        let rows = background.len() / len.max(1);
        let limits = lepton_explain::Limits {
            max_steps: limits.max_steps,
            max_positions: limits.max_positions,
            max_shap_rows: limits.max_shap_rows,
            max_background: limits.max_background,
        };
        req.check(shape, rows, &limits).map_err(explain_error)?;
        let internal = |e| InferError::internal("building the input tensor", e);
        let x = Tensor::from_slice(features, shape.as_slice(), &Device::Cpu).map_err(internal)?;
        let bg = match rows {
            0 => None,
            _ => Some(Tensor::from_slice(background, (rows, len), &Device::Cpu).map_err(internal)?),
        };
        let a = req
            .run(self.model.explainer(), &x, bg.as_ref())
            .map_err(explain_error)?;
        serde_json::to_value(a).map_err(|e| InferError::internal("encoding the explanation", e))
    }

    fn language_model(
        &self,
        max_tokens: usize,
        permits: Arc<tokio::sync::Semaphore>,
    ) -> Option<Arc<dyn LanguageModel>> {
        PhotonLanguageModel::new(Arc::clone(&self.model), max_tokens, permits)
            .map(|m| Arc::new(m) as Arc<dyn LanguageModel>)
    }
}
