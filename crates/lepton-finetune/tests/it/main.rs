//! The integration tests of lepton-finetune.

mod bad_input;
mod examples;
mod golden;
mod gradients;
mod quantized;
mod support;
mod tiny_gguf;
mod training;
