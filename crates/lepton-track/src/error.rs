//! The crate's error type: each variant names the operation and the file or request part it was
//! working on; the cause sits in `#[source]`.

use std::path::PathBuf;

/// Errors of run reading, export and the dashboard server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}")]
    Toml {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("parsing {path}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} is {size} bytes, over the {budget}-byte budget for this file")]
    TooLarge {
        path: PathBuf,
        size: u64,
        budget: u64,
    },
    #[error("{path} is not a run directory (it has no spec.toml)")]
    NotARun { path: PathBuf },
    #[error("no runs found in {path}")]
    NoRuns { path: PathBuf },
    #[error("run id {id:?} is invalid: {reason}")]
    InvalidRunId { id: String, reason: &'static str },
    #[error("run {id:?} not found under {root}")]
    RunNotFound { id: String, root: PathBuf },
    #[error("file {name:?} of run {id:?} is not served: {reason}")]
    FileNotServed {
        id: String,
        name: String,
        reason: &'static str,
    },
    #[error("{path} has no scalar metrics to export")]
    NothingToExport { path: PathBuf },
    #[error("binding the dashboard to {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving the dashboard")]
    Serve(#[source] std::io::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Read a whole file after checking its size against `budget` (bytes).
pub(crate) fn read_with_budget(path: &std::path::Path, budget: u64) -> Result<Vec<u8>> {
    let read = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > budget {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            size,
            budget,
        });
    }
    std::fs::read(path).map_err(read)
}
