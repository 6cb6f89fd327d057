//! The model inside a photon, ready for inference.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder};
use lepton_data::Preprocessor;
use lepton_explain::Explainer;
use lepton_nn::{activate, Model, ModelSpec, OutputActivation};
use serde::Serialize;

use crate::error::{Error, Result};

pub(crate) fn build(spec: &ModelSpec, input: &[usize], blob: &[u8], path: &Path) -> Result<Model> {
    let tensors =
        candle_core::safetensors::load_buffer(blob, &Device::Cpu).map_err(|e| Error::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    Model::new(spec, input, vb).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        message: format!("the weights do not fit the model spec: {e}"),
    })
}

/// The prediction for one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Prediction {
    /// Class probabilities in class order, and the most probable labels.
    Classes {
        probabilities: Vec<f32>,
        top: Vec<(String, f32)>,
    },
    /// A regression value in target units.
    Value { value: f32 },
}

/// A model loaded from a photon: eval mode, CPU, f32. `Send + Sync`. Its weights are plain
/// tensors, so the explanations' compiled net ([`LoadedModel::explainer`]) is built once, on
/// the first gradient explanation, and kept; reloading a photon loads a new `LoadedModel`.
pub struct LoadedModel {
    model: Explainer,
    act: OutputActivation,
    pre: Preprocessor,
}

impl LoadedModel {
    pub(crate) fn new(model: Model, act: OutputActivation, pre: Preprocessor) -> Self {
        Self {
            model: Explainer::new(model),
            act,
            pre,
        }
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }

    /// The network itself (logits, no output activation).
    pub fn model(&self) -> &Model {
        self.model.model()
    }

    /// The network as the attribution methods take it (a [`lepton_explain::Scorer`]), its
    /// piecewise net compiled on first use and kept with this model.
    pub fn explainer(&self) -> &Explainer {
        &self.model
    }

    /// A language model: text in, next-token logits `[T, vocab]` out (no classes).
    pub fn is_language_model(&self) -> bool {
        matches!(&self.pre, Preprocessor::Text { class_names, .. } if class_names.is_empty())
    }

    /// A text classifier's input row for token ids: 1 to `max-len` ids of the vocabulary
    /// (checked), left-padded to `max-len` with the vocabulary's padding id, as lepton-data pads
    /// the training texts (`text_classification`: left padding, so the last position holds the
    /// last real token; the pad id is NUL's id in a character vocabulary, `[PAD]`/`<pad>` in a
    /// tokenizer, else 0).
    pub fn text_row(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let Preprocessor::Text {
            vocab,
            max_len,
            class_names,
        } = &self.pre
        else {
            return Err(Error::Generate {
                field: "model".into(),
                message: "does not take text".into(),
            });
        };
        if class_names.is_empty() {
            return Err(Error::Generate {
                field: "model".into(),
                message: "is a language model, not a text classifier: generate with it".into(),
            });
        }
        let f = self.pre.token_features(ids).map_err(|e| Error::Generate {
            field: "input".into(),
            message: e.to_string(),
        })?;
        let mut row = vec![vocab.pad_id() as f32; max_len - f.len()];
        row.extend(f);
        Ok(row)
    }

    /// Predictions of a text classifier for token sequences (1 to `max-len` ids each), padded as
    /// [`LoadedModel::text_row`] says and run as one batch; the error names the sequence
    /// (`inputs[i]`).
    pub fn predict_tokens(&self, seqs: &[Vec<u32>], k: usize) -> Result<Vec<Prediction>> {
        let rows = seqs
            .iter()
            .enumerate()
            .map(|(i, ids)| {
                self.text_row(ids).map_err(|e| match e {
                    Error::Generate { field, message } if field == "input" => Error::Generate {
                        field: format!("inputs[{i}]"),
                        message,
                    },
                    other => other,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.predict_features(&rows, k)
    }

    /// Predictions of a text classifier for texts; the error names the text (`inputs[i]`) and
    /// the character outside the vocabulary.
    pub fn predict_texts(&self, texts: &[String], k: usize) -> Result<Vec<Prediction>> {
        let Some(vocab) = self.pre.vocab() else {
            return Err(Error::Generate {
                field: "model".into(),
                message: "does not take text".into(),
            });
        };
        let seqs = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                vocab.encode(t).map_err(|e| Error::Generate {
                    field: format!("inputs[{i}]"),
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.predict_tokens(&seqs, k)
    }

    /// Outputs for a batch of features `[B, ...sample_shape]`: class probabilities `[B, classes]`
    /// (a sigmoid output becomes `[1 - p, p]`), or regression values `[B, 1]` in target units.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        let p = |e: candle_core::Error| Error::Predict(e.to_string());
        let logits = self.model().forward_t(x, false).map_err(p)?;
        let y = activate(self.act, &logits).map_err(|e| Error::Predict(e.to_string()))?;
        match self.act {
            OutputActivation::Softmax => Ok(y),
            OutputActivation::Sigmoid => {
                let q = y.reshape((y.dim(0).map_err(p)?, 1)).map_err(p)?;
                Tensor::cat(&[&q.affine(-1.0, 1.0).map_err(p)?, &q], 1).map_err(p)
            }
            OutputActivation::Identity => {
                let v: Vec<f32> = y.flatten_all().and_then(|t| t.to_vec1()).map_err(p)?;
                let n = v.len();
                Tensor::from_vec(
                    v.into_iter()
                        .map(|x| self.pre.decode_target(x))
                        .collect::<Vec<_>>(),
                    (n, 1),
                    &Device::Cpu,
                )
                .map_err(p)
            }
        }
    }

    /// Predictions for preprocessed feature rows.
    pub fn predict_features(&self, rows: &[Vec<f32>], k: usize) -> Result<Vec<Prediction>> {
        let mut shape = vec![rows.len()];
        shape.extend(self.pre.sample_shape());
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let x = Tensor::from_vec(flat, shape, &Device::Cpu)
            .map_err(|e| Error::Predict(format!("inputs do not fit the model: {e}")))?;
        let y = self
            .predict(&x)?
            .to_vec2::<f32>()
            .map_err(|e| Error::Predict(e.to_string()))?;
        let classes = self.pre.class_names();
        Ok(y.into_iter()
            .map(|r| {
                if classes.is_empty() {
                    Prediction::Value { value: r[0] }
                } else {
                    Prediction::Classes {
                        top: top_k(&r, classes, k),
                        probabilities: r,
                    }
                }
            })
            .collect())
    }

    /// Predictions for decoded images.
    pub fn predict_images(
        &self,
        images: &[image::DynamicImage],
        k: usize,
    ) -> Result<Vec<Prediction>> {
        let rows = images
            .iter()
            .map(|i| {
                self.pre
                    .image_features(i)
                    .map_err(|e| Error::Predict(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        self.predict_features(&rows, k)
    }

    /// Predictions for table rows of (column, value) pairs.
    pub fn predict_rows(
        &self,
        rows: &[Vec<(String, String)>],
        k: usize,
    ) -> Result<Vec<Prediction>> {
        let feats = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let pairs: Vec<(&str, &str)> =
                    r.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                self.pre
                    .row_features(&pairs)
                    .map_err(|e| Error::Predict(format!("row {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<_>>>()?;
        self.predict_features(&feats, k)
    }
}

/// The `k` most probable labels, best first.
pub fn top_k(probs: &[f32], classes: &[String], k: usize) -> Vec<(String, f32)> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    idx.into_iter()
        .take(k.max(1))
        .map(|i| {
            (
                classes.get(i).cloned().unwrap_or_else(|| i.to_string()),
                probs[i],
            )
        })
        .collect()
}
