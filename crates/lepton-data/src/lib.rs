//! Datasets, preprocessing, splits and batching for Lepton.
//!
//! | module | what |
//! |---|---|
//! | [`spec`] | the `[data]` / `[preprocess]` spec sections |
//! | [`budget`] | file type and size checks every loader runs before reading or allocating |
//! | [`idx`], [`images`], [`table`] | loaders: MNIST IDX, image folders, CIFAR-10 binary, CSV |
//! | [`preprocess`] | the fitted [`Preprocessor`] stored with models |
//! | [`split`] | seeded stratified splits and k-fold |
//! | [`augment`] | seeded image augmentation |
//! | [`series`] | time-series CSV: sliding windows split by time |
//! | [`text`] | text for language models: contiguous split, seeded windows |
//! | [`text_classification`] | (text, label) CSVs: token ids padded to `max-len` |
//! | [`batcher`] | batches prepared on a background thread |
//! | [`prepare`](mod@prepare) | spec -> train / validation / test datasets + [`DataReport`] |

pub mod augment;
pub mod batcher;
pub mod budget;
pub mod data_report;
pub mod dataset;
pub mod error;
pub mod idx;
pub mod images;
pub mod prepare;
pub mod prepared;
pub mod preprocess;
pub mod series;
pub mod spec;
pub mod split;
pub mod table;
pub mod text;
pub mod text_classification;
pub mod vocab;

pub use batcher::{batches_per_epoch, epoch_order, Batch, Batcher, BatcherConfig};
pub use dataset::{Dataset, Targets};
pub use error::{Error, Result};
pub use images::open_image;
pub use prepare::{
    fold_indices, inspect, load_for_eval, prepare, prepare_folds, spec_for_path, DataReport,
    Prepared,
};
pub use preprocess::{ColumnSchema, InputSchema, Preprocessor};
pub use spec::{
    AugmentSpec, Balance, DataSpec, Format, MissingPolicy, PreprocessSpec, SequenceSpec, Task,
    VocabKind,
};
pub use text::LanguageModelData;
pub use vocab::Vocab;
