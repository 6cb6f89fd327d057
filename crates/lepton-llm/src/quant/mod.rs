//! Quantized weight matrices and their matmul: the kernels live in `lepton-quant` (shared with
//! `lepton-nn`'s int8 layers); these re-exports keep the `lepton_llm::quant::*` paths.

pub use lepton_quant::{blocks, layout, BlockType, QMatrix, QType, QK};
