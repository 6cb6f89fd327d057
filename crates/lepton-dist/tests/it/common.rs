//! A generated tabular data set, specs, and weight comparison.

use std::path::Path;

use lepton_dist::{DataParallel, LocalGroup};
use lepton_train::{NoopObserver, Spec};

/// A 3-class CSV of `rows` rows: 8 features from a fixed LCG, the label the argmax of 3 fixed
/// linear functions.
pub fn write_csv(path: &Path, rows: usize) {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    };
    let mut s = String::from("f0,f1,f2,f3,f4,f5,f6,f7,label\n");
    for _ in 0..rows {
        let x: Vec<f64> = (0..8).map(|_| next()).collect();
        let scores = [
            x[0] + 0.5 * x[1] - x[2] + 0.3 * x[5],
            -x[0] + x[3] + 0.7 * x[4] - 0.2 * x[6],
            x[2] - x[3] + x[6] * x[7],
        ];
        let label = (0..3)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap();
        for v in &x {
            s += &format!("{v:.5},");
        }
        s += &format!("c{label}\n");
    }
    std::fs::write(path, s).unwrap();
}

/// An MLP spec (no dropout or batch norm: the per-sample computation does not depend on the
/// batch split) with the given `[optimizer]` body.
pub fn spec(csv: &Path, optimizer: &str, epochs: u64, batch: usize) -> String {
    format!(
        r#"name = "dp"
seed = 11

[data]
format = "csv"
path = "{}"
label = "label"
validation-split = 0.2

[model]
[[model.layers]]
type = "linear"
out-features = 32
[[model.layers]]
type = "relu"
[[model.layers]]
type = "linear"
out-features = 3

[optimizer]
{optimizer}

[train]
epochs = {epochs}
batch-size = {batch}
drop-last = true
log-every = 5
checkpoint-every = 1000

[eval]
plots = false
"#,
        csv.display()
    )
}

/// Train `spec` on `world` ranks (threads) into `dir`; returns rank 0's summary.
pub fn train_on(spec: &Spec, dir: &Path, world: usize) -> lepton_train::RunSummary {
    try_train_on(spec, dir, world).unwrap()
}

/// [`train_on`], returning the first rank's error.
pub fn try_train_on(
    spec: &Spec,
    dir: &Path,
    world: usize,
) -> lepton_train::Result<lepton_train::RunSummary> {
    try_train_overlapped(spec, dir, world, 1)
}

/// [`try_train_on`] with the backward pass in up to `segments` segments, each segment's
/// gradients reduced while the earlier ones are differentiated (1: not overlapped).
pub fn try_train_overlapped(
    spec: &Spec,
    dir: &Path,
    world: usize,
    segments: usize,
) -> lepton_train::Result<lepton_train::RunSummary> {
    on_ranks(world, segments, None, |dp| {
        lepton_train::train_parallel(spec, dir, &mut NoopObserver, dp)
    })
}

/// [`try_train_overlapped`], each rank writing its per-step timeline to
/// `timeline/rank{r}.jsonl`.
pub fn train_with_timeline(
    spec: &Spec,
    dir: &Path,
    world: usize,
    segments: usize,
    timeline: &Path,
) -> lepton_train::RunSummary {
    on_ranks(world, segments, Some(timeline), |dp| {
        lepton_train::train_parallel(spec, dir, &mut NoopObserver, dp)
    })
    .unwrap()
}

/// Resume `dir` on `world` ranks.
pub fn resume_on(dir: &Path, world: usize) -> lepton_train::Result<lepton_train::RunSummary> {
    on_ranks(world, 1, None, |dp| {
        lepton_train::resume_parallel(dir, &mut NoopObserver, dp)
    })
}

type Rank = DataParallel<lepton_dist::LocalComm>;

fn on_ranks<F>(
    world: usize,
    segments: usize,
    timeline: Option<&Path>,
    f: F,
) -> lepton_train::Result<lepton_train::RunSummary>
where
    F: Fn(&mut Rank) -> lepton_train::Result<Option<lepton_train::RunSummary>> + Sync,
{
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = LocalGroup::ranks(world)
            .into_iter()
            .map(|c| {
                s.spawn(move || {
                    let r = lepton_dist::Communicator::rank(&c);
                    let mut dp = DataParallel::new(c).with_overlap(segments);
                    if let Some(t) = timeline {
                        std::fs::create_dir_all(t).unwrap();
                        dp = dp.with_timeline(&t.join(format!("rank{r}.jsonl"))).unwrap();
                    }
                    f(&mut dp)
                })
            })
            .collect();
        let mut out = None;
        for h in handles {
            if let Some(s) = h.join().unwrap()? {
                out = Some(s);
            }
        }
        Ok(out.expect("rank 0 returns a summary"))
    })
}

/// `max |a - b| / max |b|` over all model weights of two run directories' last checkpoints.
pub fn max_relative_difference(a: &Path, b: &Path) -> f64 {
    let load = |d: &Path| {
        candle_core::safetensors::load(
            d.join("checkpoints/last.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap()
    };
    let (ta, tb) = (load(a), load(b));
    let (mut diff, mut scale) = (0f64, 0f64);
    let mut names: Vec<_> = tb.keys().filter(|k| k.starts_with("model.")).collect();
    names.sort();
    assert!(!names.is_empty());
    for name in names {
        let x = ta[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let y = tb[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(x.len(), y.len(), "{name}");
        for (p, q) in x.iter().zip(&y) {
            diff = diff.max(f64::from((p - q).abs()));
            scale = scale.max(f64::from(q.abs()));
        }
    }
    diff / scale
}
