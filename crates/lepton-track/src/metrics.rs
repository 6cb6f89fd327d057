//! Reading `metrics.jsonl`, the trainer's log: one JSON object a line, `{"kind": "step", ...}` every
//! `log-every` steps and `{"kind": "epoch", ...}` after each epoch.
//!
//! The file may be in the middle of being written (a line without its newline yet) or damaged (a
//! truncated or garbled line): the reader keeps every good line, skips a bad one with a warning
//! naming the file and line, and stops before an unterminated last line, whose bytes it leaves for
//! the next read. [`read_from`] tails the file from a byte offset, so the dashboard can follow a
//! run while it trains; each read takes at most a byte budget, so one request stays bounded.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

/// Largest single read of `metrics.jsonl` (bytes); a larger file is read in several chunks.
pub const CHUNK_BUDGET: u64 = 8 << 20;
/// Longest line accepted (bytes): a longer "line" is not the trainer's and is skipped.
const MAX_LINE: usize = 64 << 10;

/// One line of `metrics.jsonl`: its numeric fields (`loss`, `val_accuracy`, `lr`, ...).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub step: u64,
    pub epoch: u64,
    /// `best` of an epoch line: this epoch's weights became `best.safetensors`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub best: bool,
    pub values: BTreeMap<String, f64>,
}

/// What one read of `metrics.jsonl` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Metrics {
    /// `"kind": "step"` lines, in file order.
    pub steps: Vec<Record>,
    /// `"kind": "epoch"` lines, in file order.
    pub epochs: Vec<Record>,
    /// Skipped lines, each naming the file and line.
    pub warnings: Vec<String>,
    /// Byte offset just past the last complete line read: where the next read starts.
    pub offset: u64,
    /// Line number (1-based) of the next line, for warnings of later reads.
    pub next_line: u64,
    /// The file shrank below the requested offset (a resumed run truncates it): this read restarted
    /// from the beginning, and a client must drop what it had.
    pub reset: bool,
    /// More complete lines follow past `offset` (the read stopped at its byte budget).
    pub more: bool,
}

/// Read all of `path` (in chunks of [`CHUNK_BUDGET`]). A missing file reads as empty.
pub fn read_all(path: &Path) -> Result<Metrics> {
    let mut all = read_from(path, 0, 1, CHUNK_BUDGET)?;
    while all.more {
        let next = read_from(path, all.offset, all.next_line, CHUNK_BUDGET)?;
        if next.reset {
            return read_all(path);
        }
        all.steps.extend(next.steps);
        all.epochs.extend(next.epochs);
        all.warnings.extend(next.warnings);
        all.offset = next.offset;
        all.next_line = next.next_line;
        all.more = next.more;
    }
    Ok(all)
}

/// Read the complete lines of `path` from byte `offset` (numbered from `line`), at most `budget`
/// bytes. A missing file reads as empty; an offset past the end restarts at 0 with `reset` set.
pub fn read_from(path: &Path, offset: u64, line: u64, budget: u64) -> Result<Metrics> {
    let io = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Metrics {
                next_line: 1,
                ..Metrics::default()
            })
        }
        Err(e) => return Err(io(e)),
    };
    let len = file.metadata().map_err(io)?.len();
    let (offset, line, reset) = if offset > len {
        (0, 1, true)
    } else {
        (offset, line.max(1), false)
    };
    let want = (len - offset).min(budget);
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = Vec::with_capacity(want as usize);
    file.take(want).read_to_end(&mut buf).map_err(io)?;
    // Only complete lines: the bytes after the last newline may still be being written.
    let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut out = Metrics {
        offset: offset + complete as u64,
        reset,
        ..Metrics::default()
    };
    out.more = want == budget && out.offset < len;
    let mut number = line;
    // The complete lines, without their final newline (none at all when `complete` is 0).
    let lines = buf[..complete]
        .strip_suffix(b"\n")
        .map(|body| body.split(|&b| b == b'\n'));
    for raw in lines.into_iter().flatten() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            number += 1;
            continue;
        }
        match parse_line(raw) {
            Ok(Some((kind, record))) => match kind {
                Kind::Step => out.steps.push(record),
                Kind::Epoch => out.epochs.push(record),
            },
            Ok(None) => {}
            Err(reason) => out.warnings.push(format!(
                "{} line {number}: skipped, {reason}",
                path.display()
            )),
        }
        number += 1;
    }
    out.next_line = number;
    if complete == 0 && want == budget && want > 0 {
        // A budget-sized read without one newline: not a trainer line; skip past it.
        out.warnings.push(format!(
            "{} line {line}: skipped, longer than {budget} bytes",
            path.display()
        ));
        out.offset = offset + want;
        out.more = out.offset < len;
    }
    Ok(out)
}

enum Kind {
    Step,
    Epoch,
}

/// Parse one line; `Ok(None)` for a well-formed line of a kind this reader does not chart.
fn parse_line(raw: &[u8]) -> Result<Option<(Kind, Record)>, String> {
    if raw.len() > MAX_LINE {
        return Err(format!("longer than {MAX_LINE} bytes"));
    }
    let value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| format!("not JSON ({e})"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("not a JSON object".into());
    };
    let kind = match map.get("kind").and_then(|k| k.as_str()) {
        Some("step") => Kind::Step,
        Some("epoch") => Kind::Epoch,
        Some(_) => return Ok(None),
        None => return Err("no \"kind\" field".into()),
    };
    let int = |key: &str| -> Result<u64, String> {
        map.get(key)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| format!("no integer \"{key}\" field"))
    };
    let mut record = Record {
        step: int("step")?,
        epoch: int("epoch")?,
        best: map.get("best").and_then(|b| b.as_bool()).unwrap_or(false),
        values: BTreeMap::new(),
    };
    for (key, v) in &map {
        if matches!(key.as_str(), "kind" | "step" | "epoch" | "best") {
            continue;
        }
        if let Some(x) = v.as_f64().filter(|x| x.is_finite()) {
            record.values.insert(key.clone(), x);
        }
    }
    Ok(Some((kind, record)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: &str = r#"{"kind":"step","epoch":0,"step":10,"loss":0.5,"lr":0.01}"#;
    const EPOCH: &str =
        r#"{"kind":"epoch","epoch":0,"step":10,"best":true,"val_loss":0.4,"train_loss":0.6}"#;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_steps_and_epochs() {
        let (_d, path) = write(&format!("{STEP}\n{EPOCH}\n"));
        let m = read_all(&path).unwrap();
        assert_eq!(m.steps.len(), 1);
        assert_eq!(m.steps[0].values["loss"], 0.5);
        assert_eq!(m.epochs[0].values["val_loss"], 0.4);
        assert!(m.epochs[0].best);
        assert!(m.warnings.is_empty());
        assert_eq!(m.next_line, 3);
    }

    #[test]
    fn malformed_line_is_skipped_with_file_and_line_in_the_warning() {
        let (_d, path) = write(&format!("{STEP}\n{{\"kind\":\"step\",\"ep\n[1]\n{EPOCH}\n"));
        let m = read_all(&path).unwrap();
        assert_eq!((m.steps.len(), m.epochs.len()), (1, 1));
        assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
        assert!(
            m.warnings[0].contains("metrics.jsonl line 2"),
            "{:?}",
            m.warnings
        );
        assert!(
            m.warnings[1].contains("metrics.jsonl line 3"),
            "{:?}",
            m.warnings
        );
    }

    #[test]
    fn blank_lines_count_in_the_line_numbers() {
        let (_d, path) = write(&format!("{STEP}\n\n   \nnot json\n{EPOCH}\n"));
        let m = read_all(&path).unwrap();
        assert_eq!((m.steps.len(), m.epochs.len()), (1, 1));
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        assert!(m.warnings[0].contains("line 4"), "{:?}", m.warnings);
        assert_eq!(m.next_line, 6);
    }

    #[test]
    fn unterminated_last_line_is_left_for_the_next_read() {
        let half = &EPOCH[..20];
        let (_d, path) = write(&format!("{STEP}\n{half}"));
        let first = read_from(&path, 0, 1, CHUNK_BUDGET).unwrap();
        assert_eq!(first.steps.len(), 1);
        assert!(first.epochs.is_empty() && first.warnings.is_empty());
        assert_eq!(first.offset, STEP.len() as u64 + 1);
        // The trainer finishes the line: the tail read picks up exactly the new record.
        std::fs::write(&path, format!("{STEP}\n{EPOCH}\n")).unwrap();
        let next = read_from(&path, first.offset, first.next_line, CHUNK_BUDGET).unwrap();
        assert!(next.steps.is_empty() && !next.reset);
        assert_eq!(next.epochs.len(), 1);
        assert_eq!(next.next_line, 3);
    }

    #[test]
    fn truncated_file_resets_the_tail() {
        let (_d, path) = write(&format!("{STEP}\n"));
        let m = read_from(&path, 10_000, 50, CHUNK_BUDGET).unwrap();
        assert!(m.reset);
        assert_eq!(m.steps.len(), 1);
    }

    #[test]
    fn budget_splits_reads_without_losing_lines() {
        let text: String = (0..50)
            .map(|i| format!("{{\"kind\":\"step\",\"epoch\":0,\"step\":{i},\"loss\":{i}}}\n"))
            .collect();
        let (_d, path) = write(&text);
        let mut offset = 0;
        let mut line = 1;
        let mut steps = Vec::new();
        for _ in 0..1000 {
            let m = read_from(&path, offset, line, 100).unwrap();
            steps.extend(m.steps.iter().map(|r| r.step));
            offset = m.offset;
            line = m.next_line;
            if !m.more {
                break;
            }
        }
        assert_eq!(steps, (0..50).collect::<Vec<_>>());
        assert_eq!(line, 51);
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let m = read_all(&dir.path().join("metrics.jsonl")).unwrap();
        assert!(m.steps.is_empty() && m.epochs.is_empty());
    }
}
