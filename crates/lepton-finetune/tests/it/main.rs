//! The integration tests of lepton-finetune.

mod bad_input;
mod examples;
mod golden;
mod gradients;
mod support;
mod training;
