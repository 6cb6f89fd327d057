//! The crate's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("metrics: {0}")]
    Input(String),
    #[error("writing {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("drawing {path}: {message}")]
    Plot { path: PathBuf, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
