//! TensorBoard event files: `lepton runs export --tensorboard`.
//!
//! An event file is a sequence of TFRecords: `u64` length (little-endian), masked CRC32C of those
//! eight bytes, the payload, masked CRC32C of the payload. Each payload is a `tensorflow.Event`
//! protocol buffer; the first carries `file_version = "brain.Event:2"`, the others a `Summary` with
//! one scalar (`simple_value`). The few fields are encoded by hand: a generated `prost` message set
//! would pull TensorFlow's `.proto` files and a build script into the tree for five fields of two
//! messages, and the Rust TensorBoard writer crates are unmaintained.
//!
//! Fields written (tag numbers from `tensorflow/core/util/event.proto` and `summary.proto`):
//! `Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }`,
//! `Summary { repeated Value value = 1; }`, `Summary.Value { string tag = 1; float simple_value = 2; }`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::run::Run;

/// Mask a CRC as TFRecord does, so a CRC of data containing CRCs stays informative.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One TFRecord around `payload`.
pub fn record(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc32c(payload).to_le_bytes());
    out
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Field key: field number and wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
fn key(field: u64, wire: u64, out: &mut Vec<u8>) {
    varint((field << 3) | wire, out);
}

fn bytes_field(field: u64, data: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// An `Event` holding only `wall_time` and `file_version`: the first record of every file.
pub fn version_event(wall_time: f64) -> Vec<u8> {
    let mut e = Vec::new();
    key(1, 1, &mut e);
    e.extend_from_slice(&wall_time.to_le_bytes());
    bytes_field(3, b"brain.Event:2", &mut e);
    e
}

/// An `Event` with one scalar summary value.
pub fn scalar_event(wall_time: f64, step: u64, tag: &str, value: f32) -> Vec<u8> {
    let mut v = Vec::new();
    bytes_field(1, tag.as_bytes(), &mut v);
    key(2, 5, &mut v);
    v.extend_from_slice(&value.to_le_bytes());
    let mut summary = Vec::new();
    bytes_field(1, &v, &mut summary);
    let mut e = Vec::new();
    key(1, 1, &mut e);
    e.extend_from_slice(&wall_time.to_le_bytes());
    key(2, 0, &mut e);
    // int64 is encoded as its two's complement u64; steps are never negative.
    varint(step, &mut e);
    bytes_field(5, &summary, &mut e);
    e
}

/// The scalars of a run as TensorBoard tags: `step/<field>` from the step lines, `epoch/<field>`
/// from the epoch lines (`epoch/val_loss`, ...), each at its global step; wall times count the
/// epochs' `seconds` from `start`.
pub fn scalars(run: &Run, start: f64) -> Vec<(f64, u64, String, f32)> {
    let m = &run.metrics;
    let mut out = Vec::new();
    let mut elapsed = 0.0;
    let mut epochs = m.epochs.iter().peekable();
    for s in &m.steps {
        while let Some(e) = epochs.next_if(|e| e.step < s.step) {
            elapsed += e.values.get("seconds").copied().unwrap_or(0.0);
            push_record(&mut out, start + elapsed, "epoch", e);
        }
        push_record(&mut out, start + elapsed, "step", s);
    }
    for e in epochs {
        elapsed += e.values.get("seconds").copied().unwrap_or(0.0);
        push_record(&mut out, start + elapsed, "epoch", e);
    }
    out
}

fn push_record(
    out: &mut Vec<(f64, u64, String, f32)>,
    wall: f64,
    prefix: &str,
    r: &crate::metrics::Record,
) {
    for (k, v) in &r.values {
        if k == "seconds" {
            continue;
        }
        out.push((wall, r.step, format!("{prefix}/{k}"), *v as f32));
    }
}

/// Write the run's scalars as one event file into `dir` (created); returns its path and the
/// number of scalar events.
pub fn export(run: &Run, dir: &Path) -> Result<(PathBuf, usize)> {
    let metrics_path = run.info.path.join("metrics.jsonl");
    // Wall times end at the last write of metrics.jsonl, so TensorBoard's time axis is real.
    let end = run.info.updated.unwrap_or(0.0);
    let start = end - run.info.train_seconds;
    let events = scalars(run, start);
    if events.is_empty() {
        return Err(Error::NothingToExport { path: metrics_path });
    }
    let write = |path: &Path, source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| write(dir, e))?;
    // A re-export replaces this run's earlier file: two would show every scalar twice.
    let suffix = format!(".lepton.{}", sanitize(&run.info.name));
    let old = std::fs::read_dir(dir).map_err(|e| write(dir, e))?;
    for entry in old.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("events.out.tfevents.") && name.ends_with(&suffix) {
            std::fs::remove_file(entry.path()).map_err(|e| write(&entry.path(), e))?;
        }
    }
    let path = dir.join(format!(
        "events.out.tfevents.{}{suffix}",
        start.max(0.0) as u64,
    ));
    let mut buf = record(&version_event(start));
    for (wall, step, tag, value) in &events {
        buf.extend(record(&scalar_event(*wall, *step, tag, *value)));
    }
    let mut file = std::fs::File::create(&path).map_err(|e| write(&path, e))?;
    file.write_all(&buf).map_err(|e| write(&path, e))?;
    Ok((path, events.len()))
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value_and_mask() {
        // The CRC-32C check value (RFC 3720, "123456789") and TensorFlow's masking.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // ((crc >> 15) | (crc << 17)) + 0xa282ead8, computed by hand (in Python).
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn re_export_replaces_the_earlier_file() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::write(run_dir.join("spec.toml"), "name = \"r\"\n").unwrap();
        let line = |e: u32| {
            format!("{{\"kind\":\"epoch\",\"epoch\":{e},\"step\":{e},\"val_loss\":0.5,\"seconds\":3}}\n")
        };
        std::fs::write(run_dir.join("metrics.jsonl"), line(0)).unwrap();
        let out = dir.path().join("tb");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("events.out.tfevents.1.other-run"), b"keep").unwrap();
        let (first, n) = export(&Run::read(&run_dir, "r").unwrap(), &out).unwrap();
        assert_eq!(n, 1);
        std::fs::write(run_dir.join("metrics.jsonl"), line(0) + &line(1)).unwrap();
        let (second, n) = export(&Run::read(&run_dir, "r").unwrap(), &out).unwrap();
        assert_eq!(n, 2);
        assert_ne!(first, second, "the start time moved with the new epoch");
        let mut names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        assert_eq!(names, [out.join("events.out.tfevents.1.other-run"), second]);
    }

    #[test]
    fn record_framing() {
        let r = record(b"abc");
        assert_eq!(&r[..8], &3u64.to_le_bytes());
        assert_eq!(&r[8..12], &masked_crc32c(&3u64.to_le_bytes()).to_le_bytes());
        assert_eq!(&r[12..15], b"abc");
        assert_eq!(&r[15..], &masked_crc32c(b"abc").to_le_bytes());
    }

    #[test]
    fn scalar_event_bytes() {
        // Hand-decoded: wall_time 1.0, step 300 (varint ac 02), summary { value { tag "a", 0.5 } }.
        let e = scalar_event(1.0, 300, "a", 0.5);
        let mut want = vec![0x09];
        want.extend_from_slice(&1.0f64.to_le_bytes());
        want.extend_from_slice(&[
            0x10, 0xac, 0x02, 0x2a, 0x0a, 0x0a, 0x08, 0x0a, 0x01, b'a', 0x15,
        ]);
        want.extend_from_slice(&0.5f32.to_le_bytes());
        assert_eq!(e, want);
    }
}
