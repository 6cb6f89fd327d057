//! The crate's error type: each variant names the step and what it was working on.

use std::path::PathBuf;

/// What went wrong in a compression.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting out of range (`--prune`, `--max-drop`, ...), named by its key.
    #[error("{field}: {message}")]
    Setting {
        field: &'static str,
        message: String,
    },
    /// The model cannot go through the step (already int8, an unsupported layer, ...).
    #[error("{step}: {message}")]
    Model { step: &'static str, message: String },
    /// Data that does not fit the model (calibration or evaluation samples of the wrong shape).
    #[error("{what}: {message}")]
    Data { what: &'static str, message: String },
    /// A tensor operation failed during a step.
    #[error("{step}")]
    Tensor {
        step: String,
        #[source]
        source: candle_core::Error,
    },
    /// The model could not be built from the (rewritten) spec.
    #[error("{step}: the model does not build")]
    Build {
        step: String,
        #[source]
        source: lepton_nn::Error,
    },
    /// A Hugging Face encoder folder could not be read, written or run.
    #[error("{step}")]
    Encoder {
        step: String,
        #[source]
        source: Box<lepton_llm::Error>,
    },
    /// A report could not be written.
    #[error("writing {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A report could not be serialised.
    #[error("serialising the report")]
    Json(#[source] serde_json::Error),
}

impl Error {
    /// A closure mapping a candle error to [`Error::Tensor`] for `step`.
    pub(crate) fn tensor(step: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Error {
        let step = step.into();
        move |source| Error::Tensor { step, source }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
