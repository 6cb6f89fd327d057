//! The library's error for everything outside a request: reading `serve.toml` and the tokens,
//! loading models, binding the socket. Each variant names the operation and what it worked on;
//! the cause is in `#[source]`. (Request errors are [`crate::ApiError`].)

use std::path::PathBuf;

/// An error of setting up or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `serve.toml` is not valid TOML or has an unknown key.
    #[error("{}: invalid server configuration", path.display())]
    ConfigSyntax {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// A configuration value is out of range or inconsistent; `field` is the dotted key.
    #[error("config {field}: {message}")]
    Config { field: String, message: String },
    /// A malformed token line in a tokens file (`at` = `FILE line N`) or entry of
    /// `LEPTON_TOKENS` (`LEPTON_TOKENS entry N`).
    #[error("{at}: {message}")]
    Token { at: String, message: String },
    /// A model could not be loaded.
    #[error("cannot load model '{name}' from {}", path.display())]
    Load {
        name: String,
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// This server has no loader (models can only be inserted programmatically).
    #[error("this server cannot load models")]
    NoLoader,
    /// A public address without tokens.
    #[error("refusing to serve on {0} without API tokens: set LEPTON_TOKENS or auth.tokens-file, or pass --insecure")]
    Unauthenticated(std::net::SocketAddr),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with [`ServeError`].
pub type Result<T, E = ServeError> = std::result::Result<T, E>;

impl ServeError {
    /// This error and its causes on one line (`a: b: c`), for logs and API messages.
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            s.push_str(": ");
            s.push_str(&e.to_string());
            cur = e.source();
        }
        s
    }

    /// A configuration error naming `field`.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServeError::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}
