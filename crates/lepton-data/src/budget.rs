//! Size budgets, checked before a byte of data is read or a buffer is allocated.
//!
//! Every loader opens its files through [`open_file`] / [`read_file`]: the path must be a regular
//! file (not `/dev/zero`, a FIFO or a socket, which are endless or block) no larger than
//! [`MAX_FILE_BYTES`], and the read itself is bounded by the size seen, so a file that grows while
//! it is read cannot make it endless either. Sizes declared inside files (IDX dimensions, CIFAR
//! records, image headers) are checked against the file's length and [`MAX_DECODED_BYTES`]
//! before allocation. Errors name the file.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Largest data file read (on disk): 4 GiB.
pub const MAX_FILE_BYTES: u64 = 4 << 30;
/// Largest decoded data set part (after gunzip, image decoding and resizing): 4 GiB.
pub const MAX_DECODED_BYTES: u64 = 4 << 30;
/// Largest image side accepted from an image header or `data.size`: 8192 pixels.
pub const MAX_IMAGE_SIDE: usize = 8192;
/// The longest `block-size` (text windows) or `max-len` (texts to classify): 65,536 tokens.
pub const MAX_BLOCK_SIZE: usize = 1 << 16;

/// Check that `path` is a regular file within `max` bytes; returns its length.
pub fn check_file(path: &Path, max: u64) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a folder"
        } else {
            kind_of_special(&ft)
        };
        return Err(Error::format(
            path,
            format!("is {kind}, not a regular file (data files must have a known size)"),
        ));
    }
    if meta.len() > max {
        return Err(Error::format(
            path,
            format!(
                "is {} bytes, over the {max}-byte limit for a data file",
                meta.len()
            ),
        ));
    }
    Ok(meta.len())
}

#[cfg(unix)]
fn kind_of_special(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn kind_of_special(_: &std::fs::FileType) -> &'static str {
    "a special file"
}

/// Open a checked file (see [`check_file`]); the reader stops at the length seen by the check.
pub fn open_file(path: &Path, max: u64) -> Result<(std::io::Take<std::fs::File>, u64)> {
    let len = check_file(path, max)?;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    Ok((f.take(len), len))
}

/// Read a whole checked file (see [`check_file`]).
pub fn read_file(path: &Path, max: u64) -> Result<Vec<u8>> {
    let (mut f, len) = open_file(path, max)?;
    let mut out = Vec::with_capacity(len as usize);
    f.read_to_end(&mut out).map_err(|e| Error::io(path, e))?;
    Ok(out)
}

/// Check a size declared by a file (`what`) against `max` bytes.
pub fn check_declared(path: &Path, what: &str, bytes: u64, max: u64) -> Result<()> {
    if bytes > max {
        return Err(Error::format(
            path,
            format!("{what} declares {bytes} bytes, over the {max}-byte limit"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn endless_and_special_files_are_refused_by_name() {
        let err = read_file(Path::new("/dev/zero"), MAX_FILE_BYTES)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/dev/zero") && err.contains("character device"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = read_file(dir.path(), MAX_FILE_BYTES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a folder"), "{err}");
        // A symlink to an endless file is judged by its target.
        let link = dir.path().join("zero.csv");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let err = check_file(&link, MAX_FILE_BYTES).unwrap_err().to_string();
        assert!(
            err.contains("zero.csv") && err.contains("character device"),
            "{err}"
        );
    }

    #[test]
    fn files_over_the_budget_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.bin");
        std::fs::write(&p, vec![7u8; 100]).unwrap();
        assert_eq!(read_file(&p, 100).unwrap().len(), 100);
        let err = read_file(&p, 99).unwrap_err().to_string();
        assert!(
            err.contains("big.bin") && err.contains("100 bytes"),
            "{err}"
        );
        let err = check_declared(&p, "the header", 1 << 40, 1 << 30)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("big.bin") && err.contains("the header"),
            "{err}"
        );
    }
}
