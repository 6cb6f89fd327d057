//! Metrics, cross-validation reports and plots for Lepton.
//!
//! | module | what |
//! |---|---|
//! | [`classification`](mod@classification) | accuracy, top-k, per-class P/R/F1, macro/weighted averages, confusion matrix, ROC-AUC, log-loss |
//! | [`regression`](mod@regression) | MSE, RMSE, MAE, R² |
//! | [`language_model`] | next-token loss, perplexity, bits per token / character |
//! | [`report`] | [`Report`] (JSON, Markdown, terminal table), [`CrossValidationReport`] (mean ± sample std) |
//! | [`plots`] | learning curves and confusion-matrix PNGs |

pub mod classification;
pub mod error;
pub mod language_model;
pub mod plots;
pub mod regression;
pub mod report;

pub use classification::{classification, roc_auc, ClassMetrics, ClassificationReport};
pub use error::{Error, Result};
pub use language_model::LanguageModelReport;
pub use regression::{regression, RegressionReport};
pub use report::{write_atomic, CrossValidationReport, Report};
