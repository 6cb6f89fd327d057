//! Kill -9 mid-epoch and resume; refuse damaged checkpoints; reproducible runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lepton_train::{resume, train, Event, NoopObserver, Observer, Spec};

use crate::common::{step_losses, tabular_spec, tensors_bits, write_csv};

const CHILD_ENV: &str = "LEPTON_TRAIN_TEST_CHILD_RUN_DIR";
const EPOCHS: u64 = 4;
const CHECKPOINT_EVERY: u64 = 7;

/// Slows the child down (sleeps after each step event) so the parent can kill it mid-run; the
/// numbers do not depend on timing.
struct Slow;
impl Observer for Slow {
    fn event(&mut self, e: Event<'_>) {
        if let Event::Step { .. } = e {
            std::thread::sleep(Duration::from_millis(4));
        }
    }
}

fn setup(root: &Path) -> Spec {
    let csv = root.join("tiny.csv");
    if !csv.exists() {
        write_csv(&csv, 400);
    }
    let spec_path = root.join("tiny.toml");
    std::fs::write(
        &spec_path,
        tabular_spec("tiny.csv", EPOCHS, CHECKPOINT_EVERY),
    )
    .unwrap();
    Spec::from_file(&spec_path).unwrap()
}

/// Entry point of the child process the kill test spawns (re-exec of this test binary).
#[test]
#[ignore = "helper: run by reliability::kill_9_mid_epoch_then_resume_gives_identical_weights"]
fn child_train() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let spec = setup(dir.parent().unwrap());
    train(&spec, &dir, &mut Slow).unwrap();
}

fn checkpoint_step(run: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(run.join("checkpoints/last.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((v["step"].as_u64()?, v["batch_in_epoch"].as_u64()?))
}

#[test]
fn kill_9_mid_epoch_then_resume_gives_identical_weights() {
    let root = tempfile::tempdir().unwrap();
    let spec = setup(root.path());

    // The reference: one uninterrupted run.
    let reference = root.path().join("reference");
    let summary = train(&spec, &reference, &mut NoopObserver).unwrap();
    assert_eq!(summary.epochs, EPOCHS);

    // A child process trains the same spec; kill it with SIGKILL once it has checkpointed mid-epoch
    // in the second epoch or later.
    let killed = root.path().join("killed");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "reliability::child_train",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &killed)
        .spawn()
        .unwrap();
    let steps_per_epoch = summary.steps / EPOCHS;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some((step, batch)) = checkpoint_step(&killed) {
            if step > steps_per_epoch && batch > 0 {
                break;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "the child made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SIGKILL: no chance to clean up (std's kill sends SIGKILL on Unix).
    child.kill().unwrap();
    child.wait().unwrap();
    let (killed_at, _) = checkpoint_step(&killed).unwrap();
    assert!(
        killed_at < EPOCHS * steps_per_epoch,
        "killed after the end of training"
    );

    let resumed = resume(&killed, &mut NoopObserver).unwrap();
    assert_eq!(resumed.steps, EPOCHS * steps_per_epoch);

    let want = tensors_bits(&reference.join("checkpoints/last.safetensors"), "");
    let got = tensors_bits(&killed.join("checkpoints/last.safetensors"), "");
    assert!(want
        .iter()
        .any(|(k, _)| k.starts_with("model.layers.1.running_mean")));
    assert!(want.iter().any(|(k, _)| k.starts_with("optim.")));
    assert_eq!(want.len(), got.len());
    for ((kw, w), (kg, g)) in want.iter().zip(&got) {
        assert_eq!(kw, kg);
        assert!(w == g, "`{kw}` differs after kill + resume");
    }
    // The metrics log has each step once, with the same losses as the reference.
    assert_eq!(step_losses(&killed), step_losses(&reference));
    let best_ref = tensors_bits(&reference.join("best.safetensors"), "");
    assert_eq!(best_ref, tensors_bits(&killed.join("best.safetensors"), ""));
}

#[test]
fn same_seed_gives_the_same_loss_sequence() {
    let root = tempfile::tempdir().unwrap();
    let mut spec = setup(root.path());
    spec.train.epochs = 2;
    train(&spec, &root.path().join("a"), &mut NoopObserver).unwrap();
    train(&spec, &root.path().join("b"), &mut NoopObserver).unwrap();
    let a = step_losses(&root.path().join("a"));
    assert_eq!(a.len(), 40);
    assert_eq!(a, step_losses(&root.path().join("b")));
    // And it learns: the last steps' loss is well below the first steps'.
    let head: f64 = a[..5].iter().map(|x| x.1).sum::<f64>() / 5.0;
    let tail: f64 = a[35..].iter().map(|x| x.1).sum::<f64>() / 5.0;
    assert!(tail < 0.8 * head, "loss went from {head} to {tail}");
    // A different seed gives a different sequence.
    spec.seed = 8;
    train(&spec, &root.path().join("c"), &mut NoopObserver).unwrap();
    assert_ne!(a, step_losses(&root.path().join("c")));
}

#[test]
fn truncated_or_altered_checkpoint_is_refused_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    let mut spec = setup(root.path());
    spec.train.epochs = 1;
    let run = root.path().join("run");
    train(&spec, &run, &mut NoopObserver).unwrap();
    let weights = run.join("checkpoints/last.safetensors");
    let original = std::fs::read(&weights).unwrap();

    std::fs::write(&weights, &original[..original.len() / 2]).unwrap();
    let err = resume(&run, &mut NoopObserver).unwrap_err().to_string();
    assert!(
        err.contains("last.safetensors") && err.contains("checksum"),
        "{err}"
    );

    let mut altered = original.clone();
    let i = altered.len() - 3;
    altered[i] ^= 0x40;
    std::fs::write(&weights, &altered).unwrap();
    let err = resume(&run, &mut NoopObserver).unwrap_err().to_string();
    assert!(
        err.contains("last.safetensors") && err.contains("checksum"),
        "{err}"
    );

    // The untouched file resumes (the run is finished, so it is only re-evaluated).
    std::fs::write(&weights, &original).unwrap();
    let s = resume(&run, &mut NoopObserver).unwrap();
    assert!(s.steps >= 20, "{}", s.steps);

    std::fs::write(run.join("checkpoints/last.json"), b"{\"version\": 1,").unwrap();
    let err = resume(&run, &mut NoopObserver).unwrap_err();
    let chain = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(chain.contains("last.json"), "{chain}");
}
