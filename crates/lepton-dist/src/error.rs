//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong in a collective operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// MPI could not be initialised (a second initialisation, or no MPI runtime).
    #[error("initialising MPI: {0}")]
    Init(String),
    /// A peer of the in-process group left (its thread ended or panicked).
    #[error("{op}: a peer rank of the in-process group left")]
    PeerGone { op: &'static str },
    /// A buffer is longer than an MPI count (`i32`) can describe.
    #[error("{op}: {len} elements exceed MPI's count limit")]
    TooLarge { op: &'static str, len: usize },
    /// Ranks disagree on the gradients to reduce (another model or parameter order).
    #[error("gradient bucket {bucket}: {message}")]
    Mismatch { bucket: usize, message: String },
    /// A tensor could not be flattened or rebuilt.
    #[error("{op}")]
    Tensor {
        op: String,
        #[source]
        source: candle_core::Error,
    },
    /// The timeline file could not be written.
    #[error("writing the timeline {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// As the trainer's error, naming what was being synchronised.
    pub fn into_train(self, op: &str) -> lepton_train::Error {
        lepton_train::Error::Collective {
            op: op.into(),
            source: Box::new(self),
        }
    }
}
