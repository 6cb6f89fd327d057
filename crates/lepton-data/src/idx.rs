//! MNIST-style IDX files (raw or gzipped), with SHA-256 pins for the real MNIST files.
//!
//! Layout: two zero bytes, a type byte (`0x08` = unsigned byte, the only type MNIST uses), the
//! number of dimensions, then one big-endian `u32` per dimension and the data in row-major order.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A parsed IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// The SHA-256 pins of the uncompressed MNIST files (see `data/mnist/NOTICE`).
pub const MNIST_PINS: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

/// Parse IDX bytes. The error message says what is wrong; callers add the path.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<Idx, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "file is {} bytes, too short for an IDX header",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "bad magic 0x{:02x}{:02x}{:02x}{:02x}, expected 0x0000080N",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "element type 0x{:02x} is not supported (only 0x08, unsigned byte)",
            bytes[2]
        ));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err("IDX header declares 0 dimensions".into());
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(format!(
            "truncated header: {} dimensions need {header} bytes, file has {}",
            ndim,
            bytes.len()
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    let have = bytes.len() - header;
    if have != count {
        return Err(format!(
            "dimensions {dims:?} need {count} data bytes, file has {have}"
        ));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Read a file, gunzipping it when its name ends in `.gz`.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("not a valid gzip file: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// The result of checking a file against its pin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PinCheck {
    pub file: PathBuf,
    pub sha256: String,
    /// `Some(true)` matches the pin, `Some(false)` differs, `None` when the file has no pin.
    pub matches_pin: Option<bool>,
}

fn check_pin(path: &Path, bytes: &[u8]) -> PinCheck {
    let sha256 = hex::encode(Sha256::digest(bytes));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = name.strip_suffix(".gz").unwrap_or(name);
    let matches_pin = MNIST_PINS
        .iter()
        .find(|(n, _)| *n == stem)
        .map(|(_, pin)| *pin == sha256);
    if matches_pin == Some(false) {
        tracing::warn!(file = %path.display(), %sha256, "differs from the MNIST pin: not the original MNIST file");
    }
    PinCheck {
        file: path.to_path_buf(),
        sha256,
        matches_pin,
    }
}

/// Find `stem` or `stem.gz` in `dir`.
fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [stem.to_string(), format!("{stem}.gz")] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::format(dir, format!("missing {stem} (or {stem}.gz)")))
}

/// Images (`[N, rows, cols]` bytes) and labels of one MNIST split.
#[derive(Debug, Clone)]
pub struct IdxImages {
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    pub pins: Vec<PinCheck>,
}

/// Load `{prefix}-images-idx3-ubyte[.gz]` and `{prefix}-labels-idx1-ubyte[.gz]` from `dir`.
pub fn load_idx_pair(dir: &Path, prefix: &str) -> Result<IdxImages> {
    let ipath = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let lpath = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let ibytes = read_maybe_gz(&ipath)?;
    let lbytes = read_maybe_gz(&lpath)?;
    let pins = vec![check_pin(&ipath, &ibytes), check_pin(&lpath, &lbytes)];
    let images = parse_idx(&ibytes).map_err(|m| Error::format(&ipath, m))?;
    let labels = parse_idx(&lbytes).map_err(|m| Error::format(&lpath, m))?;
    if images.dims.len() != 3 {
        return Err(Error::format(
            &ipath,
            format!(
                "expected 3 dimensions [N, rows, cols], got {:?}",
                images.dims
            ),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(Error::format(
            &lpath,
            format!("expected 1 dimension [N], got {:?}", labels.dims),
        ));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(Error::format(
            &lpath,
            format!(
                "{} labels but {} has {} images",
                labels.dims[0],
                ipath.display(),
                images.dims[0]
            ),
        ));
    }
    Ok(IdxImages {
        rows: images.dims[1],
        cols: images.dims[2],
        pixels: images.data,
        labels: labels.data.iter().map(|&l| l as u32).collect(),
        pins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn parses_a_small_array() {
        let parsed = parse_idx(&idx(&[2, 3], &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(parsed.dims, vec![2, 3]);
        assert_eq!(parsed.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rejects_bad_files_with_a_reason() {
        assert!(parse_idx(&[0, 0]).unwrap_err().contains("too short"));
        assert!(parse_idx(&[1, 2, 8, 1, 0, 0, 0, 0])
            .unwrap_err()
            .contains("bad magic"));
        assert!(parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 0])
            .unwrap_err()
            .contains("not supported"));
        assert!(parse_idx(&idx(&[2, 3], &[1, 2]))
            .unwrap_err()
            .contains("need 6 data bytes"));
        assert!(parse_idx(&[0, 0, 8, 3, 0, 0])
            .unwrap_err()
            .contains("truncated header"));
        let huge = idx(&[u32::MAX, u32::MAX, u32::MAX], &[]);
        assert!(parse_idx(&huge).is_err());
    }
}
