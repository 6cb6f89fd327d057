//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong while setting up or running a search.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The space file is not valid TOML or a range has an unknown field or a wrong type.
    #[error("space {path}: {message}")]
    SpaceParse { path: PathBuf, message: String },
    /// A range is empty or invalid; `key` is its dotted spec key.
    #[error("space: `{key}`: {message}")]
    Range { key: String, message: String },
    /// A space key names no value of the spec.
    #[error("space: `{key}` is not in the spec {spec} (write the key in the spec, with any value, to search over it)")]
    UnknownKey { key: String, spec: PathBuf },
    /// The spec file is not valid TOML.
    #[error("spec {path}: {message}")]
    SpecParse { path: PathBuf, message: String },
    /// A trial's spec does not validate (a sampled value has the wrong type or range).
    #[error("trial {trial}: the sampled spec is invalid")]
    TrialSpec {
        trial: usize,
        #[source]
        source: lepton_train::Error,
    },
    /// A command-line setting is out of range (`--parallel`, `--trials`).
    #[error("{option}: {message}")]
    Option {
        option: &'static str,
        message: String,
    },
    /// The state directory belongs to another search (other spec, space or settings).
    #[error("state directory {path}: {message}")]
    State { path: PathBuf, message: String },
    /// JSON state could not be read or written.
    #[error("{op} {path}")]
    Json {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The trial process could not be started.
    #[error("starting trial {trial} ({program})")]
    Spawn {
        trial: usize,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The curves plot could not be drawn.
    #[error("drawing {path}: {message}")]
    Plot { path: PathBuf, message: String },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
