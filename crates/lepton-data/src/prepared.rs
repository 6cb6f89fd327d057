//! [`Prepared`]: what [`crate::prepare()`] returns.

use crate::data_report::DataReport;
use crate::dataset::Dataset;
use crate::preprocess::Preprocessor;
use crate::text::LanguageModelData;

/// Train, validation and optional test data, preprocessed, with the fitted preprocessor.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub train: Dataset,
    pub validation: Dataset,
    pub test: Option<Dataset>,
    pub preprocessor: Preprocessor,
    pub report: DataReport,
    /// `format = "text"`: the token parts a language model trains on. `train`, `validation` and
    /// `test` are then empty datasets of sample shape `[block-size]` (the windows are drawn from
    /// here, see [`crate::text`]).
    pub lm: Option<LanguageModelData>,
}
