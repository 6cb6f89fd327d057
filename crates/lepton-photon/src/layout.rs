//! The byte layout: the preamble, the header and the weights, written and split apart with every
//! length checked against the file and the [`Limits`] before it is used.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::{FORMAT_VERSION, MAGIC};

/// Magic, version, header length and header SHA-256.
pub(crate) const PREAMBLE: usize = 8 + 4 + 8 + 32;

/// Zero bytes after `n` bytes to reach a multiple of 64.
pub(crate) fn pad(n: usize) -> usize {
    (64 - n % 64) % 64
}

/// The bytes of a photon with this header (the JSON manifest) and weights (a safetensors blob).
/// The header's own checksum is computed here; the weights' length and checksum are fields of
/// the header.
pub fn assemble(header: &[u8], weights: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREAMBLE + header.len() + 64 + weights.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(header));
    out.extend_from_slice(header);
    out.extend(std::iter::repeat_n(0u8, pad(out.len())));
    out.extend_from_slice(weights);
    out
}

/// Check the preamble and the header checksum; the header's byte range.
pub(crate) fn header(bytes: &[u8], path: &Path, limits: &Limits) -> Result<std::ops::Range<usize>> {
    let bad = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(bad("not a photon file (bad magic bytes)".into()));
    }
    if bytes.len() < PREAMBLE {
        return Err(bad(format!(
            "truncated: {} bytes, the preamble alone is {PREAMBLE}",
            bytes.len()
        )));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {version}; this build of lepton reads version {FORMAT_VERSION}"
        )));
    }
    let hlen = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    if hlen > limits.max_header_bytes {
        return Err(Error::Invalid {
            path: path.to_path_buf(),
            field: "header length".into(),
            message: format!(
                "{hlen} bytes, more than the {} allowed",
                limits.max_header_bytes
            ),
        });
    }
    let available = (bytes.len() - PREAMBLE) as u64;
    if hlen > available {
        return Err(bad(format!(
            "truncated: the header needs {hlen} bytes, the file has {available} after the preamble"
        )));
    }
    let range = PREAMBLE..PREAMBLE + hlen as usize;
    if Sha256::digest(&bytes[range.clone()]).as_slice() != &bytes[20..52] {
        return Err(Error::Checksum {
            path: path.to_path_buf(),
            section: "header",
        });
    }
    Ok(range)
}

/// The weights' byte range after a header ending at `header_end`, which must run to the end of
/// the file; checks the padding and the weights' checksum.
pub(crate) fn weights(
    bytes: &[u8],
    header_end: usize,
    weights_len: u64,
    weights_sha256: &str,
    path: &Path,
) -> Result<std::ops::Range<usize>> {
    let bad = |message: String| Error::Format {
        path: path.to_path_buf(),
        message,
    };
    let start = header_end + pad(header_end);
    let available = bytes.len().saturating_sub(start) as u64;
    if weights_len > available {
        return Err(bad(format!(
            "truncated: the header's weights_len is {weights_len} bytes, the file has {available} after the header"
        )));
    }
    if weights_len < available {
        return Err(bad(format!(
            "{} unexpected bytes after the weights",
            available - weights_len
        )));
    }
    if bytes[header_end..start].iter().any(|&b| b != 0) {
        return Err(bad("the padding after the header is not zero".into()));
    }
    let range = start..bytes.len();
    if hex::encode(Sha256::digest(&bytes[range.clone()])) != weights_sha256 {
        return Err(Error::Checksum {
            path: path.to_path_buf(),
            section: "weights",
        });
    }
    Ok(range)
}

/// Check the safetensors header inside the weights against the limits before it is parsed, then
/// parse it (which checks every tensor's offsets against the blob) and bound the tensor count
/// and ranks.
pub(crate) fn tensors(blob: &[u8], path: &Path, limits: &Limits) -> Result<()> {
    let bad = |field: &str, message: String| Error::Invalid {
        path: path.to_path_buf(),
        field: field.to_string(),
        message,
    };
    let n = blob
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or_else(|| {
            bad(
                "weights",
                format!("{} bytes, too short for safetensors", blob.len()),
            )
        })?;
    let room = (blob.len() - 8) as u64;
    if n > room || n > limits.max_weights_header_bytes {
        return Err(bad(
            "weights header length",
            format!(
                "{n} bytes; the weights have {room} after it and the limit is {}",
                limits.max_weights_header_bytes
            ),
        ));
    }
    let st = safetensors::SafeTensors::deserialize(blob).map_err(|e| Error::Weights {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if st.len() > limits.max_tensors {
        return Err(bad(
            "weights",
            format!("{} tensors, more than {}", st.len(), limits.max_tensors),
        ));
    }
    for (name, view) in st.iter() {
        if view.shape().len() > limits.max_rank {
            return Err(bad(
                &format!("weights tensor {name}"),
                format!(
                    "has {} dimensions, more than {}",
                    view.shape().len(),
                    limits.max_rank
                ),
            ));
        }
    }
    Ok(())
}
