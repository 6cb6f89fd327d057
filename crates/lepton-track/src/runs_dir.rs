//! A runs directory: finding the runs inside it and resolving run ids without leaving it.
//!
//! A run is a directory holding `spec.toml`. The runs directory itself may be one run; otherwise
//! runs are searched up to [`MAX_DEPTH`] levels below it (`runs/NAME-TIME`, `runs/GROUP/NAME`),
//! looking at most at [`MAX_ENTRIES`] directory entries so a huge tree cannot stall a listing.
//! Listings keep each run's summary with the sizes and modification times of the files it came
//! from, and read a run again only when one of them changed: the dashboard polls the list, and a
//! finished run's `metrics.jsonl` need not be parsed every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::run::{Run, RunInfo, Status};

/// How deep below the runs directory runs are searched.
pub const MAX_DEPTH: usize = 2;
/// Directory entries examined per listing at most.
pub const MAX_ENTRIES: usize = 20_000;
/// Longest run id accepted.
const MAX_ID: usize = 512;

/// The runs directory the CLI and the dashboard read.
#[derive(Debug, Clone)]
pub struct RunsDir {
    root: PathBuf,
    cache: Arc<Mutex<HashMap<String, (Fingerprint, RunInfo)>>>,
}

/// Size and modification time of the files a run summary is made of.
type Fingerprint = Vec<Option<(u64, SystemTime)>>;

const SUMMARY_FILES: [&str; 7] = [
    "spec.toml",
    "metrics.jsonl",
    "best.json",
    "report.json",
    "model.photon",
    "best.safetensors",
    "status.json",
];

fn fingerprint(dir: &Path) -> Fingerprint {
    SUMMARY_FILES
        .iter()
        .map(|f| {
            let m = std::fs::metadata(dir.join(f)).ok()?;
            Some((m.len(), m.modified().ok()?))
        })
        .collect()
}

impl RunsDir {
    /// `root` must be a directory; it is canonicalised so containment checks compare real paths.
    pub fn open(root: &Path) -> Result<Self> {
        let root = std::fs::canonicalize(root).map_err(|source| Error::Read {
            path: root.to_path_buf(),
            source,
        })?;
        if !root.is_dir() {
            return Err(Error::Read {
                path: root,
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        Ok(Self {
            root,
            cache: Arc::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Ids of the runs found, sorted.
    pub fn run_ids(&self) -> Vec<String> {
        if self.root.join("spec.toml").is_file() {
            return vec![".".into()];
        }
        let mut ids = Vec::new();
        let mut budget = MAX_ENTRIES;
        walk(&self.root, "", 1, &mut budget, &mut ids);
        ids.sort();
        ids
    }

    /// Read every run's summary; unreadable runs are reported as warnings, never a failure.
    /// Runs whose files have not changed since the last listing are not read again.
    pub fn list(&self) -> (Vec<RunInfo>, Vec<String>) {
        let mut runs = Vec::new();
        let mut warnings = Vec::new();
        let ids = self.run_ids();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|id, _| ids.contains(id));
        for id in ids {
            let Ok(path) = self.resolve(&id) else {
                continue;
            };
            let print = fingerprint(&path);
            if let Some((old, info)) = cache.get(&id) {
                if *old == print {
                    let mut info = info.clone();
                    // Time alone turns a quiet "running" run into "failed".
                    let updated = print[1].or(print[0]).map(|(_, t)| t);
                    info.status = Status::infer(print[3].is_some(), updated, info.marker);
                    runs.push(info);
                    continue;
                }
            }
            match Run::read(&path, &id) {
                Ok(run) => {
                    cache.insert(id, (print, run.info.clone()));
                    runs.push(run.info);
                }
                Err(e) => warnings.push(crate::error_chain(&e)),
            }
        }
        (runs, warnings)
    }

    /// Read one run by id.
    pub fn read(&self, id: &str) -> Result<Run> {
        let path = self.resolve(id)?;
        Run::read(&path, id)
    }

    /// The directory of run `id`, checked to lie inside the runs directory (after resolving
    /// symbolic links) and to be a run.
    pub fn resolve(&self, id: &str) -> Result<PathBuf> {
        let invalid = |reason| Error::InvalidRunId {
            id: id.to_owned(),
            reason,
        };
        if id.is_empty() || id.len() > MAX_ID {
            return Err(invalid("empty or longer than 512 bytes"));
        }
        if id != "." {
            if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
            {
                return Err(invalid(
                    "only ASCII letters, digits, '.', '_', '-' and '/' are allowed",
                ));
            }
            if id
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
            {
                return Err(invalid(
                    "it must be a relative path without '.' or '..' parts",
                ));
            }
        }
        let joined = self.root.join(id);
        let not_found = || Error::RunNotFound {
            id: id.to_owned(),
            root: self.root.clone(),
        };
        let real = std::fs::canonicalize(&joined).map_err(|_| not_found())?;
        if !real.starts_with(&self.root) {
            return Err(invalid("it leads outside the runs directory"));
        }
        if !real.join("spec.toml").is_file() {
            return Err(Error::NotARun { path: real });
        }
        Ok(real)
    }
}

fn walk(dir: &Path, prefix: &str, depth: usize, budget: &mut usize, ids: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Hidden folders (and names an id cannot carry) are skipped.
        if name.starts_with('.')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let path = entry.path();
        let id = format!("{prefix}{name}");
        if path.join("spec.toml").is_file() {
            ids.push(id);
        } else if depth < MAX_DEPTH {
            walk(&path, &format!("{id}/"), depth + 1, budget, ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for run in ["a", "group/b", "group/deeper/c", "not-a-run/x"] {
            let p = dir.path().join(run);
            std::fs::create_dir_all(&p).unwrap();
            if run != "not-a-run/x" {
                std::fs::write(p.join("spec.toml"), "name = \"n\"\n").unwrap();
            }
        }
        dir
    }

    #[test]
    fn finds_runs_two_levels_deep() {
        let dir = tree();
        let runs = RunsDir::open(dir.path()).unwrap();
        assert_eq!(runs.run_ids(), ["a", "group/b"]);
    }

    #[test]
    fn listing_rereads_only_changed_runs() {
        let dir = tree();
        let runs = RunsDir::open(dir.path()).unwrap();
        let (first, _) = runs.list();
        assert_eq!(first[0].epochs, 0);
        let line = "{\"kind\":\"epoch\",\"epoch\":0,\"step\":1,\"seconds\":2.0}\n";
        std::fs::write(dir.path().join("a/metrics.jsonl"), line).unwrap();
        let (second, _) = runs.list();
        assert_eq!((second[0].epochs, second[0].train_seconds), (1, 2.0));
        // A cached run with an unchanged fingerprint keeps its summary.
        let cached = runs.cache.lock().unwrap()["a"].1.epochs;
        assert_eq!(cached, 1);
        assert_eq!(runs.list().0[0].epochs, 1);
    }

    #[test]
    fn run_dir_itself_is_a_runs_dir_of_one() {
        let dir = tree();
        let runs = RunsDir::open(&dir.path().join("a")).unwrap();
        assert_eq!(runs.run_ids(), ["."]);
        assert!(runs.read(".").is_ok());
    }

    #[test]
    fn path_traversal_ids_are_rejected() {
        let dir = tree();
        let runs = RunsDir::open(&dir.path().join("group")).unwrap();
        for id in [
            "..",
            "../a",
            "b/../../a",
            "/etc",
            "b/./",
            "b\\..\\..",
            "b%2F..",
            "",
        ] {
            let err = runs.resolve(id).unwrap_err();
            assert!(matches!(err, Error::InvalidRunId { .. }), "{id}: {err}");
        }
        assert!(runs.resolve("b").is_ok());
        assert!(matches!(
            runs.resolve("nope").unwrap_err(),
            Error::RunNotFound { .. }
        ));
        std::fs::create_dir_all(dir.path().join("group/plain")).unwrap();
        assert!(matches!(
            runs.resolve("plain").unwrap_err(),
            Error::NotARun { .. }
        ));
    }

    #[cfg(unix)]
    #[test]
    fn symlink_out_of_the_runs_dir_is_rejected() {
        let dir = tree();
        let runs = RunsDir::open(&dir.path().join("group")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("group/escape")).unwrap();
        let err = runs.resolve("escape").unwrap_err();
        assert!(matches!(err, Error::InvalidRunId { .. }), "{err}");
    }
}
