//! Integer kernels shared by every Lepton model: quantized weight matrices (GGML types and the
//! per-channel int8 weights of compressed packages) multiplied with quantized activations, i8 × i8
//! (or i4 × i8) products accumulated exactly in i32 with AVX-512 VNNI or AVX2 where the CPU has
//! them, and a portable scalar definition every SIMD kernel matches bit for bit.
//!
//! # Map
//! - `matrix/`: [`QMatrix`], a weight matrix and its matmul `Y = X Wᵀ` (`q8.rs`: the Q4_1/Q8_0
//!   column paths, tiles or the training-shape GEMM).
//! - `int8.rs`: [`Int8Matrix`], per-output-channel symmetric int8 weights run on the Q8_0 kernels,
//!   with activations quantized at run time (dynamic) or with a calibrated scale (static).
//! - `packed_i8.rs`: [`PackedI8`], per-channel int8 weights packed for u8 × i8 → i32 products
//!   over activation codes read in place (static int8 convolutions and linear layers).
//! - `layout.rs`: where every code and scale sits in the kernels' rows.
//! - `blocks.rs`: GGML blocks kept as stored (Q5_0, Q5_1, K-quants).
//! - `kernels/`: the dot products (scalar definition, AVX2, AVX-512 VNNI).
//! - `pool.rs`: the fixed thread team the matmuls split their columns over.

pub mod blocks;
mod error;
mod int8;
mod kernels;
pub mod layout;
mod matrix;
mod packed_i8;
pub mod pool;

pub use blocks::BlockType;
pub use error::{Error, Result};
pub use int8::{quantize_act_row, quantize_per_channel, ActScale, Int8Matrix};
pub use layout::QK;
pub use matrix::{QMatrix, QType};
pub use packed_i8::{code_u8, PackedI8, CHANNEL_TILE};
