//! Model compression: smaller and faster models without silently losing accuracy.
//!
//! # Map
//! - `config.rs`: [`CompressConfig`], the `[compress]` section and `lepton compress` options.
//! - `pipeline.rs`: [`compress`], the steps in order and the gate after each.
//! - `net.rs`: [`Net`] (spec, input shape, tensors), accuracy and speed measurements.
//! - `fold.rs`: batch-norm folding into the conv/linear layer before it.
//! - `prune.rs`: structured L1 channel pruning and global magnitude pruning.
//! - `finetune.rs`: the masked fine-tune after pruning.
//! - `calibrate.rs`: [`Calibration`], the static int8 activation ranges (least-error histogram
//!   or min-max).
//! - `quantize.rs`: int8 (static, calibrated) and dynamic int8 (`lepton-quant` kernels).
//! - `report.rs`: [`Report`], JSON + Markdown.
//! - `encoder.rs`: [`compress_encoder`], dynamic int8 for Hugging Face encoder folders, gated by
//!   the cosine of int8 to f32 embeddings.
//!
//! The crate works on specs, tensors and datasets; reading and writing packages is the caller's
//! (`lepton-photon`, `lepton compress`).

mod bias_correction;
mod calibrate;
mod config;
mod encoder;
mod error;
mod finetune;
mod fold;
mod net;
mod per_layer;
mod pipeline;
mod prune;
mod quantize;
mod report;

pub use calibrate::{input_ranges, input_ranges_with, Calibration, Histogram, InputRange};
pub use config::CompressConfig;
pub use encoder::{compress_encoder, is_hf_folder, EncoderReport, DEFAULT_SENTENCES};
pub use error::{Error, Result};
pub use finetune::{finetune, Finetune};
pub use fold::fold_batch_norms;
pub use net::{accuracy, speeds, Net, Speed};
pub use per_layer::{quantize_per_layer, PerLayerChoice};
pub use pipeline::{compress, CompressData, Compressed};
pub use prune::{check_ratio, prune_magnitude, prune_structured};
pub use quantize::{quantize, quantize_with, quantize_with_codes, Quantize};
pub use report::{Measure, Report, StepReport};
