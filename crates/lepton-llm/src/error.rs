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
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
