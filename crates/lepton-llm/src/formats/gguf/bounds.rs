//! Checks of a GGUF header that must hold before anything is allocated or read from its numbers.
//!
//! candle's `gguf_file::Content::read` parses the header with bounded strings and arrays, but
//! divides by `general.alignment` (0 panics) and leaves the tensor directory unchecked. So:
//! - [`declared_alignment`] walks the metadata once, before candle does, and returns
//!   `general.alignment` if the file sets it (it must be a power of two);
//! - [`check_tensor_infos`] checks every tensor's element count, byte size and byte range against
//!   the file length with checked arithmetic (an offset that wraps past 2^64 is an error, not a
//!   read of the wrong bytes).
//!
//! Errors name the file, and the key or tensor.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::quantized::gguf_file::Content;

use crate::{Error, Result};

/// The most nested arrays a metadata value may hold (candle's limit is the same order).
const MAX_DEPTH: usize = 8;

fn bad(path: &Path, message: String) -> Error {
    Error::Config {
        path: path.into(),
        message,
    }
}

struct Walker<R> {
    r: R,
    /// Length prefixes are u32 in GGUF v1, u64 later.
    wide: bool,
    file_len: u64,
}

impl<R: Read + Seek> Walker<R> {
    fn bytes<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        Ok(b)
    }
    fn u32(&mut self) -> std::io::Result<u32> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> std::io::Result<u64> {
        self.bytes::<8>().map(u64::from_le_bytes)
    }
    fn len(&mut self) -> std::io::Result<u64> {
        if self.wide {
            self.u64()
        } else {
            self.u32().map(u64::from)
        }
    }
    /// Skip `n` bytes, failing if that goes past the end of the file.
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        let pos = self.r.stream_position()?;
        match pos.checked_add(n) {
            Some(end) if end <= self.file_len => {
                self.r.seek(SeekFrom::Start(end))?;
                Ok(())
            }
            _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
    fn string(&mut self) -> std::io::Result<Vec<u8>> {
        let n = self.len()?;
        let pos = self.r.stream_position()?;
        if n > self.file_len.saturating_sub(pos) {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let mut s = vec![0u8; n as usize];
        self.r.read_exact(&mut s)?;
        Ok(s)
    }
    /// Skip a value of GGUF type `ty`; returns it when it is an integer (for `general.alignment`).
    fn value(&mut self, ty: u32, depth: usize) -> std::io::Result<Option<i128>> {
        let fixed = |ty: u32| match ty {
            0 | 1 | 7 => Some(1u64),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        Ok(match ty {
            0 => Some(self.bytes::<1>()?[0].into()),
            1 => Some((self.bytes::<1>()?[0] as i8).into()),
            2 => Some(u16::from_le_bytes(self.bytes()?).into()),
            3 => Some(i16::from_le_bytes(self.bytes()?).into()),
            4 => Some(self.u32()?.into()),
            5 => Some(i32::from_le_bytes(self.bytes()?).into()),
            10 => Some(self.u64()?.into()),
            11 => Some(i64::from_le_bytes(self.bytes()?).into()),
            6 | 7 | 12 => {
                self.skip(fixed(ty).unwrap_or(1))?;
                None
            }
            8 => {
                let n = self.len()?;
                self.skip(n)?;
                None
            }
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(std::io::Error::other("arrays nested too deep"));
                }
                let elem = self.u32()?;
                let n = self.len()?;
                match fixed(elem) {
                    Some(size) => self.skip(n.checked_mul(size).ok_or_else(|| {
                        std::io::Error::from(std::io::ErrorKind::UnexpectedEof)
                    })?)?,
                    None => {
                        for _ in 0..n {
                            // Each element takes at least one byte: a count past the end of the
                            // file fails within `file_len` iterations.
                            self.value(elem, depth + 1)?;
                        }
                    }
                }
                None
            }
            other => {
                return Err(std::io::Error::other(format!(
                    "unknown metadata value type {other}"
                )))
            }
        })
    }
}

/// `general.alignment` if the file sets it; an error if it is not a power of two. Reads the
/// metadata section once (bounded by the file length), before candle parses the header.
pub(crate) fn declared_alignment(file: &mut fs_err::File, path: &Path) -> Result<Option<u64>> {
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    let file_len = file.metadata().map_err(io)?.len();
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut w = Walker {
        r: BufReader::new(&mut *file),
        wide: true,
        file_len,
    };
    let header = |e: std::io::Error| bad(path, format!("reading the GGUF header: {e}"));
    let magic = w.bytes::<4>().map_err(header)?;
    if &magic != b"GGUF" {
        return Err(bad(path, "not a GGUF file (no GGUF magic)".into()));
    }
    let version = w.u32().map_err(header)?;
    w.wide = version >= 2;
    let _tensors = w.len().map_err(header)?;
    let kvs = w.len().map_err(header)?;
    let mut alignment = None;
    for i in 0..kvs {
        let at = |e: std::io::Error| bad(path, format!("reading GGUF metadata entry {i}: {e}"));
        let key = w.string().map_err(at)?;
        let ty = w.u32().map_err(at)?;
        let value = w.value(ty, 0).map_err(at)?;
        if key == b"general.alignment" {
            let ok = value
                .filter(|&v| v > 0 && v <= u32::MAX as i128 && (v as u64).is_power_of_two())
                .map(|v| v as u64);
            alignment = Some(ok.ok_or_else(|| {
                bad(
                    path,
                    format!(
                        "general.alignment is {}, expected a power of two",
                        value.map_or("not an integer".to_string(), |v| v.to_string())
                    ),
                )
            })?);
        }
    }
    drop(w);
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(alignment)
}

/// Check every tensor of the directory: element count and byte size without overflow, a whole
/// number of blocks, data inside the file, offsets aligned.
pub(crate) fn check_tensor_infos(
    content: &Content,
    alignment: u64,
    file_len: u64,
    path: &Path,
) -> Result<()> {
    if content.tensor_data_offset > file_len {
        return Err(bad(
            path,
            format!(
                "the tensor data would start at byte {}, past the end of the {file_len}-byte file",
                content.tensor_data_offset
            ),
        ));
    }
    for (name, info) in &content.tensor_infos {
        let fail = |m: String| bad(path, format!("tensor {name}: {m}"));
        let dims = info.shape.dims();
        let elems = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| fail(format!("dimensions {dims:?} overflow")))?;
        let block = info.ggml_dtype.block_size() as u64;
        if elems % block != 0 {
            return Err(fail(format!(
                "{elems} elements are not a whole number of {:?} blocks of {block}",
                info.ggml_dtype
            )));
        }
        let bytes = (elems / block)
            .checked_mul(info.ggml_dtype.type_size() as u64)
            .ok_or_else(|| fail(format!("dimensions {dims:?} overflow")))?;
        if info.offset % alignment != 0 {
            return Err(fail(format!(
                "offset {} is not a multiple of the alignment {alignment}",
                info.offset
            )));
        }
        let start = content.tensor_data_offset.checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(bytes));
        match end {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(fail(format!(
                    "{bytes} bytes at offset {} (data section at {}) do not fit the {file_len}-byte file",
                    info.offset, content.tensor_data_offset
                )))
            }
        }
    }
    Ok(())
}
