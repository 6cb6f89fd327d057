//! The crate's error type.

/// What went wrong building a quantized matrix or layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The column count is not a whole number of blocks.
    #[error("{cols} columns is not a multiple of the {qtype} block size {block}")]
    Columns {
        qtype: &'static str,
        cols: usize,
        block: usize,
    },
    /// The byte length does not match the shape.
    #[error("{qtype} {rows}x{cols} needs {want} bytes, got {got}")]
    Bytes {
        qtype: &'static str,
        rows: usize,
        cols: usize,
        want: usize,
        got: usize,
    },
    /// A per-channel int8 weight whose parts disagree (codes, scales, shape).
    #[error("int8 weight {what}: {message}")]
    Int8 { what: String, message: String },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
