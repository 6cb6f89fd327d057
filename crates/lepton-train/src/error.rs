//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading a spec, training, checkpointing or evaluating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written (the path is in the message, the cause in `source`).
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The spec file is not valid TOML or has an unknown key / a wrong type.
    #[error("spec {path}: {message}")]
    SpecParse { path: PathBuf, message: String },
    /// A value in the spec is out of range or inconsistent; `field` is the dotted key.
    #[error("spec: {field}: {message}")]
    Spec { field: String, message: String },
    /// A checkpoint or run directory file is missing, truncated or altered.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    /// JSON (de)serialisation of a run-directory file.
    #[error("{op} {path}")]
    Json {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The data could not be loaded or prepared.
    #[error("preparing the data")]
    Data(#[from] lepton_data::Error),
    /// The model could not be built or run.
    #[error("model")]
    Nn(#[from] lepton_nn::Error),
    /// Metrics, reports or plots.
    #[error("evaluation report")]
    Eval(#[from] lepton_eval::Error),
    /// A tensor operation failed; `op` names what the trainer was doing.
    #[error("{op}")]
    Tensor {
        op: String,
        #[source]
        source: candle_core::Error,
    },
    /// The loss became NaN or infinite.
    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged { step: u64, loss: f32 },
    /// A collective operation of a data-parallel group failed (a peer left, MPI reported an
    /// error); `op` names what the trainer was synchronising.
    #[error("data-parallel {op}")]
    Collective {
        op: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A caller passed an inconsistent argument (e.g. optimizer state for another model).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
    pub(crate) fn spec(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Spec {
            field: field.into(),
            message: message.into(),
        }
    }
    pub(crate) fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Attach the operation name to a candle error.
pub(crate) trait TensorContext<T> {
    fn op(self, op: impl Into<String>) -> Result<T>;
}

impl<T> TensorContext<T> for std::result::Result<T, candle_core::Error> {
    fn op(self, op: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Tensor {
            op: op.into(),
            source,
        })
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
