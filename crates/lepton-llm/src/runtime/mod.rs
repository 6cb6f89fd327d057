//! Running a decoder: the generation [`engine`] (scheduler, prefix cache), the per-sequence
//! [`kv_cache`], token [`sampling`], the thread `pool` the matmuls and attention share, and giving a load's freed
//! [`memory`] back.

pub mod engine;
pub mod kv_cache;
pub mod memory;
pub(crate) mod pool;
pub mod sampling;
