//! Integration tests of lepton-train: one binary, one module per topic.

mod common;
mod language_model;
mod layout;
mod parity;
mod reliability;
mod reports;
mod resume;
mod series;
mod spec_errors;
mod text_classification;
