//! The search loop: trials as `lepton train` child processes, `parallel` at a time with the
//! cores divided between them, stopped at rungs by ASHA / Hyperband / TPE-ASHA, resumable from the state
//! directory.
//!
//! State directory: `tune.json` (the settings and the spec and space texts: a resume with other
//! ones is refused), `spec.toml` and `space.toml` (copies), `trials/NNNN/` (see
//! [`crate::trial`]), and at the end `results.json`, `best.toml`, `curves.png`. A search killed at
//! any moment resumes: trials with a `result.json` are not run again, a trial killed mid-way
//! restarts from its last checkpoint (`lepton train --resume`), with the same sampled values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sampler::{grid_size, sample, tpe_history, SchedulerKind};
use crate::space::{assign, lookup, Space};
use crate::stopper::{Decision, Stopper};
use crate::trial::{read_curve, read_json, write_json, Params, Status, TrialDir, TrialResult};

/// Settings of a search.
#[derive(Debug, Clone)]
pub struct TuneConfig {
    pub spec: PathBuf,
    pub space: PathBuf,
    /// The state directory.
    pub dir: PathBuf,
    /// The `lepton` executable that trains a trial.
    pub program: PathBuf,
    /// Number of trials (a grid search runs at most the grid's size). Default 16.
    pub trials: usize,
    /// Trials running at once. Default 1.
    pub parallel: usize,
    /// Default `random`.
    pub scheduler: SchedulerKind,
    /// Sampling seed. Default 0.
    pub seed: u64,
    /// Reduction factor of ASHA / Hyperband. Default 3.
    pub eta: u64,
    /// First rung (grace period), in epochs. Default 1.
    pub min_epochs: u64,
    /// Cores to divide between the parallel trials. Default: all of this machine's.
    pub cores: usize,
}

impl TuneConfig {
    /// A search of `spec` over `space` in `dir`, training with `program`; defaults as documented
    /// on the fields.
    pub fn new(spec: &Path, space: &Path, dir: &Path, program: &Path) -> Self {
        Self {
            spec: spec.into(),
            space: space.into(),
            dir: dir.into(),
            program: program.into(),
            trials: 16,
            parallel: 1,
            scheduler: SchedulerKind::Random,
            seed: 0,
            eta: 3,
            min_epochs: 1,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// What `tune.json` pins: a resume must match it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pinned {
    spec: String,
    space: String,
    scheduler: SchedulerKind,
    seed: u64,
    eta: u64,
    min_epochs: u64,
}

/// The outcome of a search.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scheduler: SchedulerKind,
    /// Every finished trial, by id.
    pub trials: Vec<TrialResult>,
    /// The best trial's id.
    pub best: Option<usize>,
    /// Training processes this invocation started (a resume does not restart finished trials).
    pub launched: usize,
    /// Epochs trained over all trials, and what running every trial to the end would cost.
    pub epochs_run: u64,
    pub epochs_full: u64,
    pub seconds: f64,
    pub dir: PathBuf,
}

/// Check everything that can be checked before training: options, the space and its keys, the
/// spec, and a resumed state directory. Returns the space, the spec table and its epochs.
fn prepare(cfg: &TuneConfig) -> Result<(Space, toml::Table, u64, Pinned)> {
    let opt = |option, message: String| Err(Error::Option { option, message });
    if cfg.trials == 0 {
        return opt("--trials", "must be at least 1".into());
    }
    if cfg.parallel == 0 || cfg.parallel > cfg.cores {
        return opt(
            "--parallel",
            format!(
                "{} trials at once on {} cores: must be in 1..={} (each trial needs a core)",
                cfg.parallel, cfg.cores, cfg.cores
            ),
        );
    }
    if cfg.eta < 2 {
        return opt("--eta", format!("must be at least 2, got {}", cfg.eta));
    }
    if cfg.min_epochs == 0 {
        return opt("--min-epochs", "must be at least 1".into());
    }
    let space = Space::from_file(&cfg.space)?;
    let spec_text =
        fs_err::read_to_string(&cfg.spec).map_err(|e| Error::io("reading", &cfg.spec, e))?;
    let table: toml::Table = toml::from_str(&spec_text).map_err(|e| Error::SpecParse {
        path: cfg.spec.clone(),
        message: e.to_string(),
    })?;
    space.check_keys(&table, &cfg.spec)?;
    let spec = lepton_train::Spec::from_file(&cfg.spec)
        .map_err(|source| Error::TrialSpec { trial: 0, source })?;
    let pinned = Pinned {
        spec: spec_text,
        space: fs_err::read_to_string(&cfg.space)
            .map_err(|e| Error::io("reading", &cfg.space, e))?,
        scheduler: cfg.scheduler,
        seed: cfg.seed,
        eta: cfg.eta,
        min_epochs: cfg.min_epochs,
    };
    Ok((space, table, spec.train.epochs, pinned))
}

/// Run (or resume) the search.
pub fn tune(cfg: &TuneConfig) -> Result<Summary> {
    let started = Instant::now();
    let (space, table, max_epochs, pinned) = prepare(cfg)?;
    let trials = match cfg.scheduler {
        SchedulerKind::Grid => cfg.trials.min(grid_size(&space)),
        _ => cfg.trials,
    };
    let state = cfg.dir.join("tune.json");
    match read_json::<Pinned>(&state)? {
        Some(p) if p != pinned => {
            return Err(Error::State {
                path: cfg.dir.clone(),
                message: "it holds a search with another spec, space, scheduler, seed or eta; \
                          choose another directory"
                    .into(),
            })
        }
        Some(_) => {}
        None => {
            fs_err::create_dir_all(cfg.dir.join("trials"))
                .map_err(|e| Error::io("creating", &cfg.dir, e))?;
            fs_err::copy(&cfg.spec, cfg.dir.join("spec.toml"))
                .map_err(|e| Error::io("copying", &cfg.spec, e))?;
            fs_err::copy(&cfg.space, cfg.dir.join("space.toml"))
                .map_err(|e| Error::io("copying", &cfg.space, e))?;
            write_json(&state, &pinned)?;
        }
    }
    let spec_dir = cfg
        .spec
        .canonicalize()
        .map_err(|e| Error::io("resolving", &cfg.spec, e))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut stopper = Stopper::new(cfg.scheduler, cfg.eta, cfg.min_epochs, max_epochs);
    let mut done: BTreeMap<usize, TrialResult> = BTreeMap::new();
    for id in 0..trials {
        if let Some(r) = read_json::<TrialResult>(&TrialDir::new(&cfg.dir, id).result())? {
            // Rebuild the rung records from the finished trials' curves.
            for (e, s) in r.curve.iter().enumerate() {
                stopper.report(id, e as u64 + 1, *s);
            }
            done.insert(id, r);
        }
    }
    let threads = (cfg.cores / cfg.parallel).max(1);
    let mut running: Vec<Running> = Vec::new();
    let mut next = 0usize;
    let mut launched = 0usize;
    loop {
        while running.len() < cfg.parallel {
            while next < trials && done.contains_key(&next) {
                next += 1;
            }
            if next >= trials {
                break;
            }
            let history = tpe_history(done.values());
            let t = TrialDir::new(&cfg.dir, next);
            let params = match read_json::<Params>(&t.params())? {
                Some(p) => p,
                None => {
                    let unit = sample(cfg.scheduler, &space, next, cfg.seed, &history);
                    let p = Params {
                        values: space.values(&unit),
                        unit,
                    };
                    fs_err::create_dir_all(&t.root)
                        .map_err(|e| Error::io("creating", &t.root, e))?;
                    write_trial_spec(&table, &p, &spec_dir, &t)?;
                    write_json(&t.params(), &p)?;
                    p
                }
            };
            running.push(Running::start(cfg, t, params, threads)?);
            launched += 1;
            next += 1;
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut i = 0;
        while i < running.len() {
            match running[i].poll(&mut stopper)? {
                Some(result) => {
                    let r = running.swap_remove(i);
                    write_json(&r.dir.result(), &result)?;
                    tracing::info!(trial = result.id, status = ?result.status, best = ?result.best(), "trial finished");
                    done.insert(result.id, result);
                }
                None => i += 1,
            }
        }
    }
    let trials: Vec<TrialResult> = done.into_values().collect();
    let best = trials
        .iter()
        .filter_map(|r| r.best().map(|b| (r.id, b)))
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(id, _)| id);
    Ok(Summary {
        scheduler: cfg.scheduler,
        epochs_run: trials.iter().map(|r| r.curve.len() as u64).sum(),
        epochs_full: trials.len() as u64 * max_epochs,
        trials,
        best,
        launched,
        seconds: started.elapsed().as_secs_f64(),
        dir: cfg.dir.clone(),
    })
}

/// The trial's spec: the sampled values set, data paths made absolute (the spec now lives in the
/// trial's folder), checked by the trainer's own validation before anything runs.
fn write_trial_spec(table: &toml::Table, p: &Params, spec_dir: &Path, t: &TrialDir) -> Result<()> {
    let mut table = table.clone();
    for (k, v) in &p.values {
        assign(&mut table, k, v.clone());
    }
    for key in ["data.path", "data.test-path", "data.tokenizer"] {
        if let Some(toml::Value::String(s)) = lookup(&table, key) {
            let abs = spec_dir.join(s);
            assign(
                &mut table,
                key,
                toml::Value::String(abs.to_string_lossy().into_owned()),
            );
        }
    }
    let text = toml::to_string(&table).map_err(|e| Error::SpecParse {
        path: t.spec(),
        message: e.to_string(),
    })?;
    let spec = lepton_train::Spec::from_str_in(&text, &t.root, "trial").map_err(|source| {
        Error::TrialSpec {
            trial: t.id,
            source,
        }
    })?;
    spec.validate().map_err(|source| Error::TrialSpec {
        trial: t.id,
        source,
    })?;
    fs_err::write(t.spec(), text).map_err(|e| Error::io("writing", t.spec(), e))
}

/// A trial's training process.
struct Running {
    dir: TrialDir,
    params: Params,
    child: Child,
    seen: usize,
    started: Instant,
}

impl Running {
    fn start(cfg: &TuneConfig, dir: TrialDir, params: Params, threads: usize) -> Result<Self> {
        let mut cmd = Command::new(&cfg.program);
        cmd.args(["--quiet", "--threads", &threads.to_string(), "train"]);
        if dir.run().join("checkpoints/last.json").exists() {
            cmd.arg("--resume").arg(dir.run());
        } else {
            if dir.run().exists() {
                fs_err::remove_dir_all(dir.run())
                    .map_err(|e| Error::io("removing", dir.run(), e))?;
            }
            cmd.arg(dir.spec()).arg("--out").arg(dir.run());
        }
        cmd.arg("--no-export");
        let stderr = fs_err::File::create(dir.stderr())
            .map_err(|e| Error::io("creating", dir.stderr(), e))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr.into_parts().0));
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            trial: dir.id,
            program: cfg.program.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            params,
            child,
            seen: 0,
            started: Instant::now(),
        })
    }

    /// New epochs go through the stopper; `Some` when the trial ended.
    fn poll(&mut self, stopper: &mut Stopper) -> Result<Option<TrialResult>> {
        let (curve, metric) = read_curve(&self.dir.run());
        let result = |status, curve: Vec<f64>, error| TrialResult {
            id: self.dir.id,
            status,
            params: self.params.clone(),
            curve,
            metric: metric.clone(),
            seconds: self.started.elapsed().as_secs_f64(),
            error,
        };
        while self.seen < curve.len() {
            self.seen += 1;
            if stopper.report(self.dir.id, self.seen as u64, curve[self.seen - 1]) == Decision::Stop
            {
                // Already stopped when the process ended by itself: the kill just fails.
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Ok(Some(result(
                    Status::Stopped,
                    curve[..self.seen].to_vec(),
                    None,
                )));
            }
        }
        let Some(status) = self
            .child
            .try_wait()
            .map_err(|e| Error::io("waiting for", self.dir.run(), e))?
        else {
            return Ok(None);
        };
        let (curve, _) = read_curve(&self.dir.run());
        if status.success() {
            return Ok(Some(result(Status::Completed, curve, None)));
        }
        let err = fs_err::read_to_string(self.dir.stderr()).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        Ok(Some(result(
            Status::Failed,
            curve,
            Some(format!("{status}: {tail}")),
        )))
    }
}

/// The training process gets SIGKILL when the search process dies (Linux), so a killed search
/// leaves no trial running behind it.
fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the forked child before exec and calls only prctl, which
        // is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}
