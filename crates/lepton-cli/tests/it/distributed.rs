//! `lepton train --distributed`. Without the `distributed` feature: a clear error. With it (and
//! Open MPI's `mpirun` on the PATH; skipped with a printed reason otherwise): 2 ranks x 8 equal
//! 1 rank x 16, and a SIGKILLed rank ends the job non-zero within 5 s.

#[cfg(not(feature = "distributed"))]
#[test]
fn distributed_without_the_feature_names_the_feature() {
    use crate::support::lepton;
    let tmp = tempfile::tempdir().unwrap();
    let spec = crate::support::iris_spec(tmp.path(), 1);
    let out = tmp.path().join("run");
    let r = lepton(&[
        "train",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--distributed",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("`distributed` feature"), "{r:?}");
    assert!(!out.exists(), "nothing written");
}

#[cfg(feature = "distributed")]
mod mpi {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, Instant};

    use crate::support::{lepton, repo};

    fn mpirun() -> Option<Command> {
        let found = Command::new("mpirun").arg("--version").output().is_ok();
        if !found {
            eprintln!("skipped: mpirun is not installed (Debian: openmpi-bin libopenmpi-dev)");
            return None;
        }
        let mut c = Command::new("mpirun");
        c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
            .args(["-np", "2", "--bind-to", "none"]);
        Some(c)
    }

    /// Iris, an MLP without dropout, SGD with momentum, 105 steps of 16.
    fn spec(dir: &Path, epochs: usize) -> PathBuf {
        let text = format!(
            r#"name = "iris-dp"
seed = 3

[data]
format = "csv"
path = "{}"
label = "species"
validation-split = 0.2

[model]
[[model.layers]]
type = "linear"
out-features = 16
[[model.layers]]
type = "relu"
[[model.layers]]
type = "linear"
out-features = 3

[optimizer]
kind = "sgd"
lr = 0.05
momentum = 0.9

[train]
epochs = {epochs}
batch-size = 16
drop-last = true
log-every = 7
checkpoint-every = 7

[eval]
plots = false
"#,
            repo().join("data/tabular/iris.csv").display()
        );
        let p = dir.join("spec.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn weights(run: &Path) -> Vec<(String, Vec<f32>)> {
        let t = candle_core::safetensors::load(
            run.join("checkpoints/last.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let mut v: Vec<_> = t
            .into_iter()
            .filter(|(k, _)| k.starts_with("model."))
            .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn two_mpi_ranks_of_8_equal_one_rank_of_16() {
        let Some(mut mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec(tmp.path(), 15);
        let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
        let s = spec.to_str().unwrap();
        lepton(&["train", s, "--out", one.to_str().unwrap(), "--no-export"]).success();
        let st = mpirun
            .arg(env!("CARGO_BIN_EXE_lepton"))
            .args([
                "--quiet",
                "--threads",
                "1",
                "train",
                s,
                "--no-export",
                "--distributed",
            ])
            .arg("--out")
            .arg(&two)
            .status()
            .unwrap();
        assert!(st.success());
        let (a, b) = (weights(&two), weights(&one));
        let mut diff = 0f32;
        let mut scale = 0f32;
        for ((n, x), (_, y)) in a.iter().zip(&b) {
            assert_eq!(x.len(), y.len(), "{n}");
            for (p, q) in x.iter().zip(y) {
                diff = diff.max((p - q).abs());
                scale = scale.max(q.abs());
            }
        }
        eprintln!(
            "2x8 vs 1x16: max relative weight difference {:e}",
            diff / scale
        );
        assert!(diff / scale <= 1e-6, "{}", diff / scale);
    }

    #[test]
    fn a_killed_rank_ends_the_job_within_5_seconds() {
        let Some(mut mpirun) = mpirun() else { return };
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec(tmp.path(), 100_000);
        let run = tmp.path().join("run");
        let pid = tmp.path().join("pid");
        let mut job = mpirun
            .args([
                "sh",
                "-c",
                "echo $$ > \"$0.$OMPI_COMM_WORLD_RANK\"; exec \"$@\"",
            ])
            .arg(&pid)
            .arg(env!("CARGO_BIN_EXE_lepton"))
            .args(["--quiet", "--threads", "1", "train"])
            .arg(&spec)
            .args(["--no-export", "--distributed", "--out"])
            .arg(&run)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !run.join("checkpoints/last.json").exists() {
            assert!(Instant::now() < deadline, "no checkpoint within 120 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let rank1: i32 = std::fs::read_to_string(tmp.path().join("pid.1"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill(2) on the pid our own job's rank 1 wrote; no memory is involved.
        assert_eq!(unsafe { libc::kill(rank1, libc::SIGKILL) }, 0);
        let killed = Instant::now();
        let status = loop {
            if let Some(s) = job.try_wait().unwrap() {
                break s;
            }
            if killed.elapsed() > Duration::from_secs(30) {
                job.kill().unwrap();
                panic!("the job still runs 30 s after a rank was killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let secs = killed.elapsed().as_secs_f64();
        eprintln!("killed rank 1: job exited with {status} after {secs:.2} s");
        assert!(!status.success());
        assert!(secs <= 5.0, "{secs} s");
    }
}
