//! The crate's error type: a bad request part (named), a failed model call (the operation named,
//! candle's error as the source), or a failed write (the path named).

use std::path::PathBuf;

/// An error of an explanation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad value of the request part `field` (`target`, `steps`, `baseline`, `window`, ...).
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The model (or a tensor operation around it) failed during `op`.
    #[error("{op}")]
    Model {
        op: &'static str,
        #[source]
        source: candle_core::Error,
    },
    /// Writing an output file failed.
    #[error("writing {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Encoding a PNG failed.
    #[error("encoding the image {path}")]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A bad value of the request part `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// Maps a candle error to [`Error::Model`] naming `op`.
pub(crate) fn during(op: &'static str) -> impl Fn(candle_core::Error) -> Error {
    move |source| Error::Model { op, source }
}
