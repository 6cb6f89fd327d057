//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading or preparing data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: cannot decode image")]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("data spec: {field}: {message}")]
    Spec {
        field: &'static str,
        message: String,
    },
    #[error("input: {0}")]
    Input(String),
    #[error("building a batch tensor")]
    Tensor(#[from] candle_core::Error),
}

impl Error {
    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
