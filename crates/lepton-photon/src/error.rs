//! The crate's error type; every variant names the file.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: I/O error")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: the {section} checksum does not match: the file is damaged or was altered")]
    Checksum {
        path: PathBuf,
        section: &'static str,
    },
    /// A field of the header is out of its budget or disagrees with another part of the file.
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{path}: bad header: {message}")]
    Header { path: PathBuf, message: String },
    #[error("{path}: bad weights: {message}")]
    Weights { path: PathBuf, message: String },
    #[error("predicting: {0}")]
    Predict(String),
    /// A generation request or the text given to a text model is refused; names the field.
    #[error("generating: {field}: {message}")]
    Generate { field: String, message: String },
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
