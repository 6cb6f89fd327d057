//! TPE + ASHA: deterministic for a seed, trials stopped at rungs, and a search cut off mid-way
//! resumes to the same trials without re-running finished ones.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lepton_tune::{tune, SchedulerKind, Status, Summary, TuneConfig};

/// A stand-in for `lepton train SPEC --out RUN`: reads `lr` from the spec and writes one epoch
/// line per epoch to `RUN/metrics.jsonl`, the score peaking at `lr = 1e-2` and rising with the
/// epochs.
const TRAINER: &str = r#"#!/bin/sh
spec=""; out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift ;;
    *.toml) spec="$1" ;;
  esac
  shift
done
lr=$(sed -n 's/^lr = //p' "$spec")
mkdir -p "$out"
awk -v lr="$lr" 'BEGIN {
  d = log(lr) / log(10) + 2; if (d < 0) d = -d
  for (e = 1; e <= 9; e++)
    printf "{\"kind\":\"epoch\",\"epoch\":%d,\"val_accuracy\":%.6f}\n", e, 0.9 - 0.1 * d - 0.3 / e
}' > "$out/metrics.jsonl"
"#;

fn setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/tabular/iris.csv");
    let spec = dir.join("spec.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"t\"\nseed = 1\n\n[data]\nformat = \"csv\"\npath = \"{}\"\nlabel = \"species\"\n\n\
             [model]\n[[model.layers]]\ntype = \"linear\"\nout-features = 3\n\n\
             [optimizer]\nkind = \"sgd\"\nlr = 0.1\n\n[train]\nepochs = 9\nbatch-size = 16\n",
            data.display()
        ),
    )
    .unwrap();
    let space = dir.join("space.toml");
    std::fs::write(
        &space,
        "\"optimizer.lr\" = { kind = \"log\", low = 1e-5, high = 1.0 }\n",
    )
    .unwrap();
    let trainer = dir.join("trainer.sh");
    std::fs::write(&trainer, TRAINER).unwrap();
    std::fs::set_permissions(&trainer, std::fs::Permissions::from_mode(0o755)).unwrap();
    (spec, space, trainer)
}

fn search(dir: &Path, state: &str, trials: usize) -> Summary {
    let (spec, space, trainer) = setup(dir);
    let mut cfg = TuneConfig::new(&spec, &space, &dir.join(state), &trainer);
    cfg.trials = trials;
    cfg.scheduler = SchedulerKind::TpeAsha;
    cfg.seed = 7;
    tune(&cfg).unwrap()
}

fn units(s: &Summary) -> Vec<Vec<f64>> {
    s.trials.iter().map(|t| t.params.unit.clone()).collect()
}

#[test]
fn tpe_asha_is_deterministic_stops_at_rungs_and_samples_near_the_best() {
    let tmp = tempfile::tempdir().unwrap();
    let a = search(tmp.path(), "a", 24);
    let b = search(tmp.path(), "b", 24);
    assert_eq!(units(&a), units(&b), "the same trials for the same seed");
    let stopped = a.trials.iter().filter(|t| t.status == Status::Stopped);
    assert!(stopped.clone().count() >= 5, "ASHA stops trials");
    assert!(stopped.clone().all(|t| [1, 3].contains(&t.curve.len())));
    assert!(a.epochs_run < a.epochs_full);
    // log10(lr) = -5 + 5 u: the optimum lr = 1e-2 sits at u = 0.6. TPE's proposals (after the
    // 10 random start-up trials) are nearer to it than the random ones.
    let dist = |ts: &[lepton_tune::TrialResult]| {
        ts.iter()
            .map(|t| (t.params.unit[0] - 0.6).abs())
            .sum::<f64>()
            / ts.len() as f64
    };
    let (early, late) = (dist(&a.trials[..10]), dist(&a.trials[14..]));
    assert!(late < early / 2.0, "late {late} early {early}");
}

#[test]
fn a_cut_off_tpe_asha_search_resumes_to_the_same_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let full = search(tmp.path(), "s", 16);
    let state = tmp.path().join("s/trials");
    // As if killed while trials 12 and 13 ran and before 14 and 15 were sampled.
    for id in 12..14 {
        std::fs::remove_file(state.join(format!("{id:04}/result.json"))).unwrap();
    }
    for id in 14..16 {
        std::fs::remove_dir_all(state.join(format!("{id:04}"))).unwrap();
    }
    let resumed = search(tmp.path(), "s", 16);
    assert_eq!(resumed.launched, 4, "only the unfinished trials run again");
    assert_eq!(units(&resumed), units(&full));
    assert_eq!(
        resumed.trials.iter().map(|t| t.status).collect::<Vec<_>>(),
        full.trials.iter().map(|t| t.status).collect::<Vec<_>>()
    );
}
