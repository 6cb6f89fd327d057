//! Exact resume from every moment a kill can hit (issue 12, finding 8), in-process: an observer
//! copies the run directory at chosen events (what a SIGKILL at that instant leaves on disk), the
//! copies are damaged the way a kill during a write damages them, and each is resumed and compared
//! with the uninterrupted run: same weights (SHA-256 of the checkpoint and of the best model),
//! same epoch count, same metrics log.

use std::path::{Path, PathBuf};

use lepton_train::{resume, train, Event, NoopObserver, Observer, RunSummary, Spec};
use sha2::{Digest, Sha256};

use crate::common::{step_losses, tabular_spec, write_csv};

/// Early stopping on validation accuracy: the stop epoch depends on the exact best metric and
/// patience count, the quantities a lossy checkpoint got wrong.
fn spec(root: &Path) -> Spec {
    write_csv(&root.join("tiny.csv"), 240);
    let text = tabular_spec("tiny.csv", 12, 5).replace(
        "[eval]",
        "monitor = \"val-accuracy\"\n\n[train.early-stopping]\npatience = 2\n\n[eval]",
    );
    let path = root.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    Spec::from_file(&path).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Copies the run directory at every `Start`, `Step` and `Checkpoint` event.
struct Snapshots {
    run: PathBuf,
    out: PathBuf,
    taken: Vec<(String, PathBuf)>,
}

impl Observer for Snapshots {
    fn event(&mut self, e: Event<'_>) {
        let name = match e {
            Event::Start { .. } => "start".to_string(),
            // Emitted before the step's log line and checkpoint are written.
            Event::Step { step, .. } => format!("step-{step:03}"),
            Event::Checkpoint { step, .. } => format!("checkpoint-{step:03}"),
            Event::EpochEnd(m) => format!("epoch-end-{:02}", m.epoch),
            _ => return,
        };
        let to = self.out.join(&name);
        if to.exists() {
            return; // the final checkpoint repeats the last epoch end's step
        }
        copy_dir(&self.run, &to);
        self.taken.push((name, to));
    }
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

struct Outcome {
    last: String,
    best: String,
    epochs: u64,
    steps: u64,
    losses: Vec<(u64, f64)>,
}

fn outcome(run: &Path, s: &RunSummary) -> Outcome {
    Outcome {
        last: sha256(&run.join("checkpoints/last.safetensors")),
        best: sha256(&run.join("best.safetensors")),
        epochs: s.epochs,
        steps: s.steps,
        losses: step_losses(run),
    }
}

fn assert_same(case: &str, want: &Outcome, run: &Path) {
    let s = resume(run, &mut NoopObserver).unwrap_or_else(|e| panic!("{case}: {e:?}"));
    let got = outcome(run, &s);
    assert_eq!(got.epochs, want.epochs, "{case}: epoch count");
    assert_eq!(got.steps, want.steps, "{case}: step count");
    assert_eq!(got.last, want.last, "{case}: last checkpoint differs");
    assert_eq!(got.best, want.best, "{case}: best model differs");
    assert_eq!(got.losses, want.losses, "{case}: metrics.jsonl differs");
    let leftovers: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.ends_with(".next"))
        .collect();
    assert!(leftovers.is_empty(), "{case}: left behind {leftovers:?}");
}

#[test]
fn resume_after_a_kill_at_any_moment_gives_the_uninterrupted_run() {
    let root = tempfile::tempdir().unwrap();
    let spec = spec(root.path());
    let reference = root.path().join("reference");
    let mut snaps = Snapshots {
        run: reference.clone(),
        out: root.path().join("snapshots"),
        taken: Vec::new(),
    };
    let summary = train(&spec, &reference, &mut snaps).unwrap();
    let want = outcome(&reference, &summary);
    // The spec must exercise early stopping and mid-epoch checkpoints.
    assert!(summary.stopped_early, "{} epochs", summary.epochs);
    assert!(summary.epochs >= 3, "{} epochs", summary.epochs);

    let taken = snaps.taken;
    let find = |name: &str| {
        taken
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no snapshot {name}"))
            .1
            .clone()
    };
    let checkpoints: Vec<u64> = taken
        .iter()
        .filter_map(|(n, _)| n.strip_prefix("checkpoint-")?.parse().ok())
        .collect();
    assert!(checkpoints.len() >= 6, "{checkpoints:?}");

    let mut cases: Vec<(String, PathBuf)> = Vec::new();
    // 1. Plain kills: before the first checkpoint, between checkpoints (every fifth step),
    //    at an epoch end before its checkpoint, right after a checkpoint.
    for (name, dir) in &taken {
        let sampled = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
            .is_none_or(|s| s % 5 == 1);
        if sampled {
            cases.push((name.clone(), dir.clone()));
        }
    }
    for (i, &step) in checkpoints.iter().enumerate() {
        let after = find(&format!("checkpoint-{step:03}"));
        let before = find(&format!("step-{step:03}"));
        // 2. (even checkpoints) A kill while the checkpoint's weights were being written: a
        //    partial temp file and a partial `.next` beside the previous checkpoint (or none).
        if i % 2 == 0 {
            let case = root.path().join(format!("partial-write-{step:03}"));
            copy_dir(&before, &case);
            std::fs::create_dir_all(case.join("checkpoints")).unwrap();
            std::fs::write(
                case.join("checkpoints/.last.safetensors.next.tmp-999"),
                b"\0\0",
            )
            .unwrap();
            std::fs::write(case.join("checkpoints/last.safetensors.next"), b"partial").unwrap();
            std::fs::write(case.join(".metrics.jsonl.tmp-998"), b"{").unwrap();
            cases.push((format!("partial-write-{step:03}"), case));
        } else {
            // 3. (odd checkpoints) A kill between the state write and the weights rename:
            //    `last.json` names the weights still in `.next` (everything written before, the
            //    best model included, is the new one).
            let case = root.path().join(format!("before-rename-{step:03}"));
            copy_dir(&after, &case);
            std::fs::rename(
                case.join("checkpoints/last.safetensors"),
                case.join("checkpoints/last.safetensors.next"),
            )
            .unwrap();
            std::fs::copy(
                before.join("checkpoints/last.safetensors"),
                case.join("checkpoints/last.safetensors"),
            )
            .ok();
            cases.push((format!("before-rename-{step:03}"), case));
        }
        // 4. A kill after an epoch's best model was saved, before its checkpoint: the best files
        //    of the new epoch beside the previous checkpoint.
        if i > 0 && after.join("best.json").exists() {
            let case = root.path().join(format!("best-ahead-{step:03}"));
            copy_dir(
                &find(&format!("checkpoint-{:03}", checkpoints[i - 1])),
                &case,
            );
            for f in ["best.json", "best.safetensors", "metrics.jsonl"] {
                std::fs::copy(after.join(f), case.join(f)).unwrap();
            }
            cases.push((format!("best-ahead-{step:03}"), case));
        }
    }
    assert!(cases.len() > 20, "{}", cases.len());
    for (name, dir) in &cases {
        assert_same(name, &want, dir);
    }
}

#[test]
fn resume_without_a_spec_says_there_is_nothing_to_resume() {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    std::fs::write(run.join(".spec.toml.tmp-77"), b"name =").unwrap();
    let err = resume(&run, &mut NoopObserver).unwrap_err().to_string();
    assert!(
        err.contains("spec.toml") && err.contains("not a run directory"),
        "{err}"
    );
}
