//! Files other crates leave in a run directory for the dashboard to show: the trainer's plots,
//! explanations (`explain/<stem>.<method>.png|json`, feature maps `explain/<stem>.layer-<NAME>.png`)
//! and compression reports (`compress/<name>.json|md`). Absent folders are fine.
//! [`resolve_file`] is the one gate through which the dashboard serves a run's file.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// Largest file the dashboard serves (bytes).
pub const SERVE_BUDGET: u64 = 64 << 20;
/// Largest compression report embedded in a run's detail (bytes).
const REPORT_BUDGET: u64 = 1 << 20;
/// Files listed per folder at most.
const MAX_LISTED: usize = 500;
/// Extensions served, with their content types.
const SERVED: [(&str, &str); 5] = [
    ("png", "image/png"),
    ("json", "application/json"),
    ("jsonl", "application/jsonl"),
    ("md", "text/markdown; charset=utf-8"),
    ("toml", "application/toml"),
];

/// An explanation image or attribution file: `explain/<stem>.<method>.<ext>`.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// Path relative to the run directory (what `/api/runs/{id}/files/...` takes).
    pub file: String,
    pub stem: String,
    /// `saliency`, `integrated-gradients`, ..., or `layer-<NAME>` for a feature map.
    pub method: String,
}

/// A compression report: `compress/<name>.json` (parsed) and its `.md` sibling when present.
#[derive(Debug, Clone, Serialize)]
pub struct CompressReport {
    pub name: String,
    pub report: Option<serde_json::Value>,
    pub markdown: Option<String>,
    pub warning: Option<String>,
}

/// What a run directory holds besides the trainer's core files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Artifacts {
    /// PNG plots at the top of the run (learning curves, confusion matrix).
    pub plots: Vec<String>,
    pub explanations: Vec<Explanation>,
    pub compression: Vec<CompressReport>,
}

/// List the artifacts of the run at `dir`.
pub fn list(dir: &Path) -> Artifacts {
    let mut out = Artifacts {
        plots: files(dir, "png").into_iter().collect(),
        ..Artifacts::default()
    };
    for name in files(&dir.join("explain"), "") {
        let Some((base, ext)) = name.rsplit_once('.') else {
            continue;
        };
        if ext != "png" && ext != "json" {
            continue;
        }
        let (stem, method) = match base.find(".layer-") {
            Some(i) => (&base[..i], &base[i + 1..]),
            None => base.rsplit_once('.').unwrap_or((base, "")),
        };
        out.explanations.push(Explanation {
            file: format!("explain/{name}"),
            stem: stem.to_owned(),
            method: method.to_owned(),
        });
    }
    let compress = dir.join("compress");
    for name in files(&compress, "json") {
        let stem = name.trim_end_matches(".json").to_owned();
        let (report, warning) = match read_small(&compress.join(&name)) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(v) => (Some(v), None),
                Err(e) => (None, Some(format!("compress/{name}: not JSON ({e})"))),
            },
            Err(e) => (None, Some(crate::error_chain(&e))),
        };
        let md = compress.join(format!("{stem}.md"));
        out.compression.push(CompressReport {
            markdown: md
                .is_file()
                .then(|| read_small(&md).ok())
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
            name: stem,
            report,
            warning,
        });
    }
    out
}

fn read_small(path: &Path) -> Result<Vec<u8>> {
    crate::error::read_with_budget(path, REPORT_BUDGET)
}

/// Sorted plain-file names in `dir` ending with `.ext` (any extension when `ext` is empty).
fn files(dir: &Path, ext: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| safe_name(n) && (ext.is_empty() || n.ends_with(&format!(".{ext}"))))
        .take(MAX_LISTED)
        .collect();
    names.sort();
    names
}

fn safe_name(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The path and content type of `name` (relative, `/`-separated) inside the run at `run_dir`, if
/// it may be served: plain relative parts of safe characters, a served extension, no symbolic link
/// out of the run, a regular file within [`SERVE_BUDGET`].
pub fn resolve_file(run_dir: &Path, id: &str, name: &str) -> Result<(PathBuf, &'static str)> {
    let refuse = |reason| Error::FileNotServed {
        id: id.to_owned(),
        name: name.to_owned(),
        reason,
    };
    let rel = Path::new(name);
    if name.is_empty()
        || name.len() > 512
        || !rel.components().all(|c| match c {
            Component::Normal(p) => p.to_str().is_some_and(safe_name),
            _ => false,
        })
    {
        return Err(refuse("the name must be a relative path of plain parts"));
    }
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    let Some(&(_, mime)) = SERVED.iter().find(|(e, _)| *e == ext) else {
        return Err(refuse(
            "only .png, .json, .jsonl, .md and .toml files are served",
        ));
    };
    let real = std::fs::canonicalize(run_dir.join(rel)).map_err(|_| refuse("no such file"))?;
    if !real.starts_with(run_dir) {
        return Err(refuse("it leads outside the run directory"));
    }
    let meta = std::fs::metadata(&real).map_err(|_| refuse("no such file"))?;
    if !meta.is_file() {
        return Err(refuse("not a file"));
    }
    if meta.len() > SERVE_BUDGET {
        return Err(refuse("larger than the 64 MiB serving budget"));
    }
    Ok((real, mime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_explanations_feature_maps_and_compression_reports() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("explain")).unwrap();
        std::fs::create_dir_all(d.join("compress")).unwrap();
        for f in [
            "digit7.saliency.png",
            "digit7.saliency.json",
            "digit7.layer-conv1.png",
            "x.txt",
        ] {
            std::fs::write(d.join("explain").join(f), b"x").unwrap();
        }
        std::fs::write(d.join("compress/int8.json"), r#"{"size": 10}"#).unwrap();
        std::fs::write(d.join("compress/int8.md"), "# int8").unwrap();
        std::fs::write(d.join("compress/bad.json"), "{").unwrap();
        std::fs::write(d.join("learning-curves.png"), b"x").unwrap();
        let a = list(d);
        assert_eq!(a.plots, ["learning-curves.png"]);
        let methods: Vec<_> = a
            .explanations
            .iter()
            .map(|e| (e.stem.as_str(), e.method.as_str()))
            .collect();
        assert_eq!(
            methods,
            [
                ("digit7", "layer-conv1"),
                ("digit7", "saliency"),
                ("digit7", "saliency")
            ]
        );
        assert_eq!(a.compression.len(), 2);
        assert!(a.compression[0]
            .warning
            .as_ref()
            .unwrap()
            .contains("bad.json"));
        assert_eq!(a.compression[1].report.as_ref().unwrap()["size"], 10);
        assert_eq!(a.compression[1].markdown.as_deref(), Some("# int8"));
    }

    #[test]
    fn resolve_file_refuses_traversal_and_unserved_types() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(run.join("explain")).unwrap();
        std::fs::write(run.join("report.json"), "{}").unwrap();
        std::fs::write(run.join("best.safetensors"), "x").unwrap();
        std::fs::write(dir.path().join("secret.json"), "{}").unwrap();
        let run = std::fs::canonicalize(&run).unwrap();
        assert!(resolve_file(&run, "r", "report.json").is_ok());
        for bad in [
            "../secret.json",
            "/etc/passwd",
            "explain/../../secret.json",
            "best.safetensors",
            ".hidden.json",
            "",
        ] {
            assert!(resolve_file(&run, "r", bad).is_err(), "{bad}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.json"), run.join("link.json"))
                .unwrap();
            let err = resolve_file(&run, "r", "link.json").unwrap_err();
            assert!(err.to_string().contains("link.json"), "{err}");
        }
    }
}
