//! The one error type of `lepton-finetune`: each variant names the operation and what it was
//! working on (file, line, key, tensor); causes stay in `#[source]`.

use std::path::PathBuf;

/// Errors from loading a base, preparing data, training, saving and merging adapters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the base model {path}")]
    Base {
        path: PathBuf,
        #[source]
        source: Box<lepton_llm::Error>,
    },
    #[error("tensor operation failed while {op}")]
    Candle {
        op: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("invalid fine-tuning setting {field}: {message}")]
    Config { field: String, message: String },
    #[error("{path}:{line}: {message}")]
    Data {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Dataset { path: PathBuf, message: String },
    #[error("target module {name:?} does not exist in this model (existing modules: {existing})")]
    UnknownTarget { name: String, existing: String },
    #[error("adapter {path}: {message}")]
    Adapter { path: PathBuf, message: String },
    #[error("tokenizing {what}: {message}")]
    Tokenizer { what: String, message: String },
    #[error("{op} {path}")]
    Json {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("reading the spec {path}")]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{op} {path}")]
    Safetensors {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    #[error("keeping {what} quantized")]
    Quantize {
        what: String,
        #[source]
        source: lepton_quant::Error,
    },
    #[error("optimizer or schedule")]
    Train(#[source] Box<lepton_train::Error>),
}

impl From<lepton_train::Error> for Error {
    fn from(e: lepton_train::Error) -> Self {
        Error::Train(Box::new(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A closure turning a candle error into [`Error::Candle`] for operation `op`.
    pub fn candle(op: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Error {
        let op = op.into();
        move |source| Error::Candle { op, source }
    }
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

/// `?` on candle results inside tensor code: the operation is named by the caller's context.
pub(crate) trait CandleContext<T> {
    fn ctx(self, op: &str) -> Result<T>;
}

impl<T> CandleContext<T> for candle_core::Result<T> {
    fn ctx(self, op: &str) -> Result<T> {
        self.map_err(|source| Error::Candle {
            op: op.to_owned(),
            source,
        })
    }
}
