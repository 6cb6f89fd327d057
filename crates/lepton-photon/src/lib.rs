//! The photon: one self-describing, checksummed file holding a trained model: weights, model
//! spec, loss (hence the output activation), fitted preprocessor, class names, input schema and
//! evaluation metrics.
//!
//! # Byte layout (format version 1)
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 8 | magic `LEPTONPH` |
//! | 8 | 4 | format version, u32 little-endian |
//! | 12 | 8 | header length `H`, u64 little-endian |
//! | 20 | 32 | SHA-256 of the header bytes |
//! | 52 | `H` | header: JSON [`Manifest`] (holds the weights' length and SHA-256) |
//! | 52+`H` | 0-63 | zero padding to a multiple of 64 |
//! | aligned | `weights_len` | safetensors blob with the model's tensors (PyTorch `state_dict` names) |
//!
//! Files are written atomically (temporary file, fsync, rename, fsync of the folder) and fully
//! verified on open: magic, version, every length against the file and the [`Limits`], both
//! checksums, then the JSON, the agreement of preprocessor, input shape, model spec and loss
//! (shape inference over the stored spec), and the safetensors header. A
//! file whose checksums were recomputed after an edit is still refused if its parts disagree.
//!
//! # Map
//! - `layout.rs`: the byte layout, [`assemble`] and the length checks.
//! - `check.rs`: the consistency of a manifest and its budgets.
//! - `limits.rs`: [`Limits`], the budgets and their defaults.
//! - `photon.rs`: [`Photon`]: open, write, build the model.
//! - `model.rs`: [`LoadedModel`], predictions.
//! - `generate.rs`: [`Generator`]: text generation from a language-model photon.
//! - `inspect.rs`: [`Inspect`], what `lepton inspect` prints.

mod check;
mod error;
mod generate;
mod inspect;
mod layout;
mod limits;
mod model;
mod photon;
pub mod serving;

use lepton_data::Preprocessor;
use lepton_nn::{LossSpec, ModelSpec};
use serde::{Deserialize, Serialize};

pub use error::{Error, Result};
pub use generate::{
    random_seed, sample, Finish, GenerateConfig, Generated, Generator, MAX_NEW_TOKENS,
    MAX_STOP_BYTES, MAX_STOP_STRINGS,
};
pub use inspect::{Inspect, TensorInfo};
pub use layout::assemble;
pub use limits::Limits;
pub use model::{top_k, LoadedModel, Prediction};
pub use photon::Photon;

/// The magic bytes at the start of every photon.
pub const MAGIC: &[u8; 8] = b"LEPTONPH";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The header of a photon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub lepton_version: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub name: String,
    pub model: ModelSpec,
    pub input_shape: Vec<usize>,
    pub loss: LossSpec,
    pub preprocessor: Preprocessor,
    /// Evaluation metrics (the report), free-form.
    pub metrics: serde_json::Value,
    pub weights_len: u64,
    pub weights_sha256: String,
}

/// What goes into a photon besides the weights.
#[derive(Debug, Clone)]
pub struct PhotonContents {
    pub name: String,
    pub model: ModelSpec,
    pub input_shape: Vec<usize>,
    pub loss: LossSpec,
    pub preprocessor: Preprocessor,
    pub metrics: serde_json::Value,
}
