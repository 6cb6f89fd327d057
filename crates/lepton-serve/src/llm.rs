//! The served language models: the inference contract's [`LanguageModel`] (implemented in
//! `lepton-llm` and `lepton-photon`, fakes in the tests), each with its in-flight bound, in a
//! registry by name; [`api_error`] maps the contract's [`InferError`] to the API's errors.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

pub use lepton_infer::{
    ChatMessage, Embedded, EngineStats, FinishReason, GenerationEvent, InferError, LanguageModel,
    LlmInfo, LlmTask, SamplingParams, Timings, Usage,
};

use crate::error::ApiError;

/// One served language model with its in-flight bound (for blocking work such as embeddings).
pub struct ServedLlm {
    pub model: Arc<dyn LanguageModel>,
    in_flight: AtomicUsize,
    /// Most requests running or waiting at once; more get 503.
    pub capacity: usize,
    /// The embedding batcher's queue, started by the first `/v1/embeddings` request
    /// ([`crate::embed_batcher`]); dropping it (the model removed) ends the worker.
    embed_queue: std::sync::OnceLock<tokio::sync::mpsc::Sender<crate::embed_batcher::EmbedJob>>,
}

/// Held while a request occupies a slot of a [`ServedLlm`].
pub struct Slot(Arc<ServedLlm>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ServedLlm {
    /// Take a slot, or 503 when `capacity` requests are already in flight.
    pub fn slot(self: &Arc<Self>, name: &str) -> Result<Slot, ApiError> {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::Overloaded(format!(
                "model '{name}' has {} requests in flight",
                self.capacity
            )));
        }
        Ok(Slot(Arc::clone(self)))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Embed `texts` in a batch with the other requests waiting for this model (the batcher
    /// starts with the first call; it needs a Tokio runtime). `on_batch` sees the texts of each
    /// forward call (a metric); it must not hold the server state (the worker would keep it alive).
    pub async fn embed_batched(
        &self,
        texts: Vec<String>,
        max_texts: usize,
        on_batch: impl Fn(usize) + Send + 'static,
    ) -> Result<Embedded, ApiError> {
        let queue = self.embed_queue.get_or_init(|| {
            crate::embed_batcher::start(self.model.clone(), max_texts, self.capacity, on_batch)
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        queue
            .send(crate::embed_batcher::EmbedJob { texts, reply })
            .await
            .map_err(|_| ApiError::Overloaded("the model is shutting down".into()))?;
        answer
            .await
            .map_err(|_| ApiError::Internal("the embedding worker stopped".into()))?
            .map_err(api_error)
    }
}

/// What a request's `model` names: a served model, or one of its LoRA adapters.
pub struct Target {
    pub served: Arc<ServedLlm>,
    /// The adapter, when the name was `base:adapter` or a bare adapter name.
    pub adapter: Option<String>,
    /// The metrics label: the model's name, or `base:adapter` (bounded by what is loaded).
    pub label: String,
}

/// The served language models, by name.
#[derive(Default)]
pub struct LlmRegistry {
    models: RwLock<BTreeMap<String, Arc<ServedLlm>>>,
}

impl LlmRegistry {
    /// Serve `model` as `name` with at most `capacity` requests in flight.
    pub fn insert(&self, name: &str, model: Arc<dyn LanguageModel>, capacity: usize) {
        let served = Arc::new(ServedLlm {
            model,
            in_flight: AtomicUsize::new(0),
            capacity: capacity.max(1),
            embed_queue: std::sync::OnceLock::new(),
        });
        self.models
            .write()
            .expect("llm lock")
            .insert(name.to_string(), served);
    }

    pub fn remove(&self, name: &str) -> bool {
        self.models
            .write()
            .expect("llm lock")
            .remove(name)
            .is_some()
    }

    /// The model named `name`, or 404 listing what is served.
    pub fn get(&self, name: &str) -> Result<Arc<ServedLlm>, ApiError> {
        let models = self.models.read().expect("llm lock");
        models.get(name).cloned().ok_or_else(|| {
            let names: Vec<&str> = models.keys().map(String::as_str).collect();
            ApiError::NotFound(format!(
                "model: no language model named '{name}' (served: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })
    }

    /// Resolve a request's `model`: a served model's name; `base:adapter` (an adapter loaded on
    /// `base`); or a bare adapter name, when exactly one model has an adapter of that name. An
    /// unknown name is 404 listing the served models and adapters, an ambiguous one 400.
    pub fn resolve(&self, model: &str) -> Result<Target, ApiError> {
        let models = self.models.read().expect("llm lock");
        if let Some(served) = models.get(model) {
            return Ok(Target {
                served: served.clone(),
                adapter: None,
                label: model.to_owned(),
            });
        }
        let has = |s: &ServedLlm, name: &str| s.model.adapters().iter().any(|a| a.name == name);
        let found: Vec<(&String, &Arc<ServedLlm>, &str)> = match model.split_once(':') {
            Some((base, adapter)) => models
                .get_key_value(base)
                .filter(|(_, s)| has(s, adapter))
                .map(|(k, s)| (k, s, adapter))
                .into_iter()
                .collect(),
            None => models
                .iter()
                .filter(|(_, s)| has(s, model))
                .map(|(k, s)| (k, s, model))
                .collect(),
        };
        match found.as_slice() {
            [(base, served, adapter)] => Ok(Target {
                served: Arc::clone(served),
                adapter: Some((*adapter).to_owned()),
                label: format!("{base}:{adapter}"),
            }),
            [] => {
                let mut names = Vec::new();
                for (k, s) in models.iter() {
                    names.push(k.clone());
                    names.extend(s.model.adapters().iter().map(|a| format!("{k}:{}", a.name)));
                }
                Err(ApiError::NotFound(format!(
                    "model: no language model named '{model}' (served: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )))
            }
            several => Err(ApiError::field(
                "model",
                format!(
                    "adapter '{model}' is loaded on several models ({}); name one as base:{model}",
                    several
                        .iter()
                        .map(|(k, _, _)| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    pub fn all(&self) -> Vec<(String, Arc<ServedLlm>)> {
        self.models
            .read()
            .expect("llm lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.models.read().expect("llm lock").is_empty()
    }
}

/// The API error for a model error: request problems are 400 naming the field, a full queue
/// or a stopping model 503, a missing thing 404, anything else a 500 with the detail logged.
pub fn api_error(e: InferError) -> ApiError {
    match e {
        InferError::BadRequest { field, message } => ApiError::field(field, message),
        InferError::NotFound(m) => ApiError::NotFound(m),
        InferError::Overloaded(m) => ApiError::Overloaded(m),
        InferError::Cancelled => ApiError::Overloaded(InferError::Cancelled.to_string()),
        e @ InferError::Internal { .. } => ApiError::Internal(e.chain()),
    }
}

/// The API error for a refused input at `path` (`inputs[2]`, `request body`): the model's
/// message after the path (422), or [`api_error`] when the model failed rather than refused.
pub fn input_error(path: &str, e: InferError) -> ApiError {
    match e {
        InferError::BadRequest { message, .. } => {
            ApiError::Unprocessable(format!("{path}: {message}"))
        }
        InferError::NotFound(message) => ApiError::Unprocessable(format!("{path}: {message}")),
        other => api_error(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_errors_map_to_status_codes() {
        use axum::http::StatusCode;
        let cases = [
            (
                InferError::bad_request("top_p", "2 is not in (0, 1]"),
                StatusCode::BAD_REQUEST,
            ),
            (
                InferError::NotFound("no such thing".into()),
                StatusCode::NOT_FOUND,
            ),
            (
                InferError::Overloaded("queue full".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (InferError::Cancelled, StatusCode::SERVICE_UNAVAILABLE),
            (
                InferError::internal("forward pass", std::io::Error::other("oom")),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(api_error(e).status(), status);
        }
        let e = api_error(InferError::bad_request("top_p", "2 is not in (0, 1]"));
        assert_eq!(e.to_string(), "top_p: 2 is not in (0, 1]");
        let ApiError::Internal(detail) = api_error(InferError::internal(
            "forward pass",
            std::io::Error::other("oom"),
        )) else {
            panic!("not internal")
        };
        assert_eq!(detail, "forward pass: oom");
        let e = input_error(
            "inputs[1]",
            InferError::bad_request("inputs", "expected 4 values"),
        );
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.to_string(), "inputs[1]: expected 4 values");
    }
}
