//! The crate's one error type.

use std::path::PathBuf;

/// Errors from loading and running pretrained transformers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a model file failed.
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A tensor operation failed.
    #[error("{op}")]
    Candle {
        op: String,
        #[source]
        source: candle_core::Error,
    },
    /// A file a model folder needs is not there.
    #[error("model folder {dir}: missing {file}")]
    MissingFile { dir: PathBuf, file: String },
    /// A JSON file of a model folder does not parse or lacks a field.
    #[error("parsing {path}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A model's configuration is inconsistent or unsupported.
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    /// `config.json` names an architecture this crate cannot run.
    #[error("{path}: unknown architecture {found} (supported: {supported})")]
    UnknownArchitecture {
        path: PathBuf,
        found: String,
        supported: &'static str,
    },
    /// A tensor's type has no kernel and its f32 expansion exceeds the budget.
    #[error("{path}: tensor {name} has type {found}, which would be expanded to {f32_bytes} bytes of f32 (budget {budget}); types kept quantized: {supported}")]
    UnsupportedTensorType {
        path: PathBuf,
        name: String,
        found: &'static str,
        f32_bytes: usize,
        budget: usize,
        supported: &'static str,
    },
    /// A weights file lacks a tensor the architecture needs.
    #[error("{path}: missing tensor {name} (expected shape {expected:?})")]
    MissingTensor {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
    },
    /// A weights file has a tensor of the wrong shape.
    #[error("{path}: tensor {name} has shape {found:?}, expected {expected:?}")]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// Loading or running a tokenizer failed.
    #[error("{op}")]
    Tokenizer {
        op: String,
        #[source]
        source: tokenizers::Error,
    },
    /// An input text is longer than the model takes.
    #[error("input {index} has {tokens} tokens; this model takes at most {max}")]
    InputTooLong {
        index: usize,
        tokens: usize,
        max: usize,
    },
    /// A chat template does not compile or render.
    #[error("{op}")]
    Template {
        op: String,
        #[source]
        source: minijinja::Error,
    },
    /// A generation request has a bad field (named).
    #[error("invalid {field}: {message}")]
    InvalidRequest {
        field: &'static str,
        message: String,
    },
    /// The prompt plus the tokens to generate do not fit the model's context.
    #[error("the prompt has {prompt_tokens} tokens and max_tokens is {max_tokens}, but the context holds {context_length} tokens")]
    ContextOverflow {
        prompt_tokens: usize,
        max_tokens: usize,
        context_length: usize,
    },
    /// The generation engine's queue is full; try again later.
    #[error("the generation queue is full ({capacity} requests waiting)")]
    QueueFull { capacity: usize },
    /// A request names a LoRA adapter the engine does not have.
    #[error("no adapter named '{name}' (loaded: {loaded})")]
    UnknownAdapter { name: String, loaded: String },
    /// The generation engine has stopped.
    #[error("the generation engine has stopped")]
    EngineStopped,
    /// A request refused by the inference contract's checks ([`SamplingParams::validate`]).
    ///
    /// [`SamplingParams::validate`]: lepton_infer::SamplingParams::validate
    #[error(transparent)]
    Request(#[from] lepton_infer::InferError),
}

impl Error {
    /// Wrap a candle error with the operation that failed.
    pub fn candle(op: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Error {
        let op = op.into();
        move |source| Error::Candle { op, source }
    }

    /// Wrap a tokenizers error with the operation that failed.
    pub fn tokenizer(op: impl Into<String>) -> impl FnOnce(tokenizers::Error) -> Error {
        let op = op.into();
        move |source| Error::Tokenizer { op, source }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// The contract's error for a model error: request problems are
/// [`lepton_infer::InferError::BadRequest`] naming the field, a full queue or a stopped engine
/// [`lepton_infer::InferError::Overloaded`], anything else [`lepton_infer::InferError::Internal`]
/// with this error as the cause.
impl From<Error> for lepton_infer::InferError {
    fn from(e: Error) -> Self {
        use lepton_infer::InferError as I;
        match e {
            Error::Request(inner) => inner,
            Error::InvalidRequest { field, message } => I::BadRequest { field, message },
            Error::ContextOverflow { .. } => I::bad_request("max_tokens", e.to_string()),
            Error::InputTooLong { .. } => I::bad_request("input", e.to_string()),
            Error::QueueFull { .. } | Error::EngineStopped => I::Overloaded(e.to_string()),
            Error::UnknownAdapter { .. } => I::NotFound(e.to_string()),
            other => I::internal("language model", other),
        }
    }
}
