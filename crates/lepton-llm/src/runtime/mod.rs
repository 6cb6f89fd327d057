//! Running a decoder: the generation [`engine`] (scheduler, prefix cache), the per-sequence
//! [`kv_cache`], token [`sampling`], and the thread `pool` the matmuls and attention share.

pub mod engine;
pub mod kv_cache;
pub(crate) mod pool;
pub mod sampling;
