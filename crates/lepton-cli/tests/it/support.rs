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

/// A `lepton serve` or `lepton run` process on a free loopback port, killed when dropped.
pub struct Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    /// Starts `lepton ARGS --listen 127.0.0.1:PORT` in `cwd` (no tokens, one compute thread) and
    /// waits until `/readyz` answers, at most `wait`; panics with the server's stderr if it exits
    /// first.
    pub fn start(cwd: &Path, args: &[&str], wait: std::time::Duration) -> Server {
        use std::io::Read;
        use std::process::Stdio;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_lepton"))
            .args(args)
            .args(["--listen", &listen])
            .current_dir(cwd)
            .env_remove("LEPTON_TOKENS")
            .env("LEPTON_THREADS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            base: format!("http://{listen}"),
        };
        let started = std::time::Instant::now();
        while ureq::get(&format!("{}/readyz", server.base))
            .call()
            .is_err()
        {
            if let Some(status) = server.child.try_wait().unwrap() {
                let mut err = String::new();
                let mut stderr = server.child.stderr.take().unwrap();
                stderr.read_to_string(&mut err).unwrap();
                panic!("lepton {} exited ({status}): {err}", args[0]);
            }
            assert!(started.elapsed() < wait, "the server did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pretrained model from `$LEPTON_MODELS` (default `$LEPTON_ASSETS/models`, i.e.
/// `~/.cache/lepton-assets/models`, filled by `scripts/fetch-assets.sh models`); panics with the
/// command to fetch it.
pub fn model(name: &str) -> PathBuf {
    let root = match (
        std::env::var_os("LEPTON_MODELS"),
        std::env::var_os("LEPTON_ASSETS"),
    ) {
        (Some(m), _) => PathBuf::from(m),
        (None, Some(a)) => PathBuf::from(a).join("models"),
        (None, None) => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/lepton-assets/models"),
    };
    let p = root.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `scripts/fetch-assets.sh models`",
        p.display()
    );
    p
}
