//! The inference contract's [`LanguageModel`] for language-model photons (`Preprocessor::Text` with no classes): the
//! OpenAI routes (`/v1/completions` with `model` = the photon's name) and
//! `POST /v1/models/{name}/generate` reach them through the same validation, slots, streaming,
//! timeouts and metrics as lepton-llm's engines.
//!
//! A generation runs on a bounded pool of blocking threads, never on the async runtime: it waits
//! for one of the `llm.generation-concurrency` permits (a pool of its own, so long generations
//! never starve the request parsing bounded by `limits.cpu-concurrency`), then runs
//! [`crate::Generator`] on a blocking thread, sending one event per token. A client that
//! goes away drops the receiver; the next send fails and the loop stops.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use lepton_infer::{
    FinishReason, GenerationEvent, InferError, LanguageModel, LlmInfo, LlmTask, SamplingParams,
    Timings, Usage,
};
use tokio::sync::Semaphore;

use crate::{Finish, GenerateConfig, Generator, LoadedModel};

/// A language-model photon served for generation.
pub struct PhotonLanguageModel {
    model: Arc<LoadedModel>,
    info: LlmInfo,
    permits: Arc<Semaphore>,
    runtime: tokio::runtime::Handle,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InferError {
    InferError::bad_request(field, message)
}

impl PhotonLanguageModel {
    /// Serve `model` (a language model) with generations of at most `max_tokens` tokens, each
    /// run while it holds one of the `permits`, on the current Tokio runtime. `None` when `model` does not
    /// generate (a classifier, an image or table model).
    pub fn new(
        model: Arc<LoadedModel>,
        max_tokens: usize,
        permits: Arc<Semaphore>,
    ) -> Option<Self> {
        if !model.is_language_model() {
            return None;
        }
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Some(PhotonLanguageModel {
            model,
            info: LlmInfo {
                task: LlmTask::Generation,
                // The model reads the last `max_len` tokens; the prompt may be longer, so the
                // bound on one request is the generation length.
                context_length: max_tokens.clamp(1, crate::MAX_NEW_TOKENS),
                dimensions: 0,
                created,
                max_prompt_bytes: usize::MAX,
                precision: "f32".into(),
            },
            permits,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    fn config(&self, params: &SamplingParams) -> Result<GenerateConfig, InferError> {
        if params.top_p != 1.0 {
            return Err(invalid(
                "top_p",
                "not supported by photon language models (use top_k)",
            ));
        }
        if params.repetition_penalty != 1.0 {
            return Err(invalid(
                "repetition_penalty",
                "not supported by photon language models",
            ));
        }
        let cfg = GenerateConfig::new(params.max_tokens)
            .with_temperature(params.temperature)
            .with_top_k(params.top_k)
            .with_seed(params.seed.unwrap_or_else(crate::random_seed))
            .with_stop(params.stop.clone());
        cfg.validate().map_err(request_error)?;
        Ok(cfg)
    }
}

/// A refused generation as a request error naming the request's field.
fn request_error(e: crate::Error) -> InferError {
    match e {
        crate::Error::Generate { field, message } => {
            let field = match field.as_str() {
                "max-tokens" => "max_tokens",
                "temperature" => "temperature",
                "model" => "model",
                f if f.starts_with("stop") => "stop",
                _ => "prompt",
            };
            invalid(field, message)
        }
        other => invalid("prompt", other.to_string()),
    }
}

impl LanguageModel for PhotonLanguageModel {
    fn info(&self) -> &LlmInfo {
        &self.info
    }

    fn count_tokens(&self, text: &str) -> Result<usize, InferError> {
        let g = Generator::new(&self.model).map_err(request_error)?;
        Ok(g.vocab()
            .encode(text)
            .map_err(|e| invalid("prompt", e.to_string()))?
            .len())
    }

    /// Checks the request (settings, then the prompt against the vocabulary) on the calling
    /// thread, then queues the generation behind a CPU permit.
    fn generate(
        &self,
        prompt: String,
        params: SamplingParams,
    ) -> Result<flume::Receiver<GenerationEvent>, InferError> {
        let cfg = self.config(&params)?;
        let g = Generator::new(&self.model).map_err(request_error)?;
        g.encode_prompt(&prompt).map_err(request_error)?;
        let (tx, rx) = flume::bounded(64);
        let (model, permits) = (Arc::clone(&self.model), Arc::clone(&self.permits));
        let submitted = Instant::now();
        self.runtime.spawn(async move {
            let Ok(permit) = permits.acquire_owned().await else {
                let _ = tx.send(GenerationEvent::Error("the server is shutting down".into()));
                return;
            };
            if tx.is_disconnected() {
                return;
            }
            let queued = submitted.elapsed();
            let _ = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                run(&model, &prompt, &cfg, &tx, submitted, queued);
            })
            .await;
        });
        Ok(rx)
    }
}

/// One generation on a blocking thread, its events sent to `tx`.
fn run(
    model: &LoadedModel,
    prompt: &str,
    cfg: &GenerateConfig,
    tx: &flume::Sender<GenerationEvent>,
    submitted: Instant,
    queued: std::time::Duration,
) {
    let mut first = None;
    let result = Generator::new(model).and_then(|g| {
        g.generate(prompt, cfg, |piece| {
            first.get_or_insert_with(|| submitted.elapsed());
            // A piece may complete several tokens (a split character): no single id to give.
            match tx.send(GenerationEvent::Token {
                id: 0,
                text: piece.to_string(),
            }) {
                Ok(()) => ControlFlow::Continue(()),
                // The receiver is gone (the client disconnected): stop generating.
                Err(_) => ControlFlow::Break(()),
            }
        })
    });
    let event = match result {
        Ok(out) if out.finish == Finish::Cancelled => return,
        Ok(out) => GenerationEvent::Done {
            finish_reason: match out.finish {
                Finish::Stop => FinishReason::Stop,
                _ => FinishReason::Length,
            },
            usage: Usage {
                prompt_tokens: out.prompt_tokens,
                completion_tokens: out.ids.len(),
            },
            timings: Timings {
                queued,
                time_to_first_token: first.unwrap_or_else(|| submitted.elapsed()),
                total: submitted.elapsed(),
            },
        },
        Err(e) => GenerationEvent::Error(e.to_string()),
    };
    let _ = tx.send(event);
}
