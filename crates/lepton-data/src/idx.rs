//! MNIST-style IDX files (raw or gzipped), with SHA-256 pins for the real MNIST files.
//!
//! Layout: two zero bytes, a type byte (`0x08` = unsigned byte, the only type MNIST uses), the
//! number of dimensions, then one big-endian `u32` per dimension and the data in row-major order.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::budget::{open_file, MAX_DECODED_BYTES, MAX_FILE_BYTES};
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

/// An IDX header: the dimensions, the header length and the data bytes the dimensions need.
struct Header {
    dims: Vec<usize>,
    len: usize,
    count: usize,
}

/// Parse the header at the start of `bytes` (which must hold all of it).
fn parse_header(bytes: &[u8]) -> std::result::Result<Header, String> {
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
    let len = 4 + 4 * ndim;
    if bytes.len() < len {
        return Err(format!(
            "truncated header: {} dimensions need {len} bytes, file has {}",
            ndim,
            bytes.len()
        ));
    }
    let dims: Vec<usize> = bytes[4..len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    Ok(Header { dims, len, count })
}

/// Parse IDX bytes. The error message says what is wrong; callers add the path.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<Idx, String> {
    let h = parse_header(bytes)?;
    let have = bytes.len() - h.len;
    if have != h.count {
        return Err(format!(
            "dimensions {:?} need {} data bytes, file has {have}",
            h.dims, h.count
        ));
    }
    Ok(Idx {
        dims: h.dims,
        data: bytes[h.len..].to_vec(),
    })
}

/// Most bytes a gzip stream of `len` bytes can inflate to (deflate's ratio is at most 1032:1).
fn max_inflated(len: u64) -> u64 {
    len.saturating_mul(1032).saturating_add(1024)
}

/// Read an IDX file (gunzipped when its name ends in `.gz`), checking the size its header
/// declares against the file's length and [`MAX_DECODED_BYTES`] before allocating the data; also
/// returns the file's pin check (SHA-256 of the uncompressed bytes).
pub fn read_idx(path: &Path) -> Result<(Idx, PinCheck)> {
    let (file, len) = open_file(path, MAX_FILE_BYTES)?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut r: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(file)
    };
    let read_err = |e: std::io::Error, what: &str| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::format(path, format!("truncated {what}"))
        } else if gz {
            Error::format(path, format!("not a valid gzip file: {e}"))
        } else {
            Error::io(path, e)
        }
    };
    let mut head = vec![0u8; 4];
    if let Err(e) = r.read_exact(&mut head) {
        return Err(match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::format(path, "too short for an IDX header"),
            _ => read_err(e, "header"),
        });
    }
    // The magic and type are checked before the dimensions are read.
    if let Err(m) = parse_header(&head) {
        if !m.contains("truncated header") {
            return Err(Error::format(path, m));
        }
    }
    head.resize(4 + 4 * head[3] as usize, 0);
    r.read_exact(&mut head[4..])
        .map_err(|e| read_err(e, "header"))?;
    let h = parse_header(&head).map_err(|m| Error::format(path, m))?;
    let available = if gz {
        max_inflated(len).min(MAX_DECODED_BYTES)
    } else {
        len - h.len as u64
    };
    if (!gz && h.count as u64 != available) || h.count as u64 > available {
        return Err(Error::format(
            path,
            if gz {
                format!(
                    "dimensions {:?} need {} data bytes, more than this {len}-byte gzip file can \
                     hold or over the {MAX_DECODED_BYTES}-byte limit",
                    h.dims, h.count
                )
            } else {
                format!(
                    "dimensions {:?} need {} data bytes, file has {available}",
                    h.dims, h.count
                )
            },
        ));
    }
    let mut data = vec![0u8; h.count];
    r.read_exact(&mut data).map_err(|e| {
        read_err(
            e,
            &format!("data: dimensions {:?} need {} bytes", h.dims, h.count),
        )
    })?;
    let mut extra = [0u8; 1];
    match r.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => {
            return Err(Error::format(
                path,
                format!(
                    "trailing data after the {} bytes that dimensions {:?} declare",
                    h.count, h.dims
                ),
            ))
        }
        Err(e) => return Err(read_err(e, "data")),
    }
    let mut hasher = Sha256::new();
    hasher.update(&head);
    hasher.update(&data);
    let pin = check_pin(path, hex::encode(hasher.finalize()));
    Ok((Idx { dims: h.dims, data }, pin))
}

/// The result of checking a file against its pin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PinCheck {
    pub file: PathBuf,
    pub sha256: String,
    /// `Some(true)` matches the pin, `Some(false)` differs, `None` when the file has no pin.
    pub matches_pin: Option<bool>,
}

fn check_pin(path: &Path, sha256: String) -> PinCheck {
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
        // Any kind of file: the reader refuses a device or FIFO by name.
        if p.exists() && !p.is_dir() {
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
    let (images, ipin) = read_idx(&ipath)?;
    let (labels, lpin) = read_idx(&lpath)?;
    let pins = vec![ipin, lpin];
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

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Finding 7 (issue 12): a header claiming more than the file holds is refused before the
    /// data buffer is allocated (raw: against the file length; gzip: against what the compressed
    /// size can inflate to), naming the file; trailing bytes are refused too.
    #[test]
    fn declared_sizes_are_checked_against_the_file_before_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok-idx1-ubyte.gz");
        std::fs::write(&ok, gz(&idx(&[3], &[1, 2, 3]))).unwrap();
        let (parsed, pin) = read_idx(&ok).unwrap();
        assert_eq!(parsed.data, vec![1, 2, 3]);
        assert_eq!(
            pin.sha256,
            hex::encode(Sha256::digest(idx(&[3], &[1, 2, 3])))
        );

        // 4 GiB - 1 declared in a 30-byte gzip file, and 16 GiB in a raw one.
        let bomb = dir.path().join("bomb-idx3-ubyte.gz");
        std::fs::write(&bomb, gz(&idx(&[u32::MAX, 1, 1], &[0; 16]))).unwrap();
        let err = read_idx(&bomb).unwrap_err().to_string();
        assert!(
            err.contains("bomb-idx3-ubyte.gz") && err.contains("can hold"),
            "{err}"
        );
        let raw = dir.path().join("raw-idx3-ubyte");
        std::fs::write(&raw, idx(&[65536, 65536, 4], &[0; 16])).unwrap();
        let err = read_idx(&raw).unwrap_err().to_string();
        assert!(
            err.contains("raw-idx3-ubyte") && err.contains("file has 16"),
            "{err}"
        );

        let trailing = dir.path().join("trail-idx1-ubyte.gz");
        std::fs::write(&trailing, gz(&idx(&[2], &[1, 2, 3]))).unwrap();
        let err = read_idx(&trailing).unwrap_err().to_string();
        assert!(err.contains("trailing data"), "{err}");
        let short = dir.path().join("short-idx1-ubyte.gz");
        std::fs::write(&short, gz(&idx(&[9], &[1, 2, 3]))).unwrap();
        let err = read_idx(&short).unwrap_err().to_string();
        assert!(
            err.contains("short-idx1-ubyte.gz") && err.contains("truncated"),
            "{err}"
        );
    }
}
