//! Running the built binary and reading what it printed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What one run of `lepton` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Each stdout line parsed as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}\n{self:?}"))
            })
            .collect()
    }

    /// The only stdout line, parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        let mut lines = self.json_lines();
        assert_eq!(lines.len(), 1, "one JSON line expected: {self:?}");
        lines.pop().unwrap()
    }

    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "lepton failed: {self:?}");
        self
    }
}

/// Run `lepton ARGS` in `cwd` with a clean logging environment and one compute thread.
pub fn lepton_in(cwd: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_lepton"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env_remove("LEPTON_LISTEN")
        .env_remove("LEPTON_TOKEN")
        .env("LEPTON_THREADS", "1")
        .env("NO_COLOR", "1")
        .output()
        .expect("the lepton binary runs");
    Run {
        code: out
            .status
            .code()
            .expect("lepton exited, not killed by a signal"),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

pub fn lepton(args: &[&str]) -> Run {
    lepton_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// The repository's root (data and examples live there).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An iris spec writing nowhere by itself, with absolute data path and a short schedule.
pub fn iris_spec(dir: &Path, epochs: usize) -> PathBuf {
    let data = repo().join("data/tabular/iris.csv");
    let spec = format!(
        r#"name = "iris-it"
seed = 0

[data]
format = "csv"
path = "{}"
label = "species"
validation-split = 0.2

[model]
layers = [{{ type = "linear", out-features = 16 }}, {{ type = "relu" }}, {{ type = "linear", out-features = 3 }}]

[optimizer]
kind = "adam"
lr = 1e-2

[train]
epochs = {epochs}
batch-size = 16
log-every = 1000
"#,
        data.canonicalize()
            .expect("data/tabular/iris.csv exists")
            .display()
    );
    let path = dir.join("iris.toml");
    std::fs::write(&path, spec).unwrap();
    path
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
