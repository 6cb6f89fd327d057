//! Issue 3, acceptance 4: the training wall time until a spec first reaches a test accuracy,
//! measured like `bench/speed/mnist_cnn_torch.py` measures PyTorch (run both with
//! `bench/speed/time_to_99.sh`).
//!
//! ```text
//! cargo run --release -p lepton-train --example time_to_accuracy -- SPEC RUN_DIR [--target 0.99]
//! ```
//!
//! The clock starts when training starts (after data loading, as in the PyTorch script) and covers
//! the training steps, the per-epoch validation pass and the trainer's checkpoints. After every
//! epoch the clock is paused, the weights the trainer just checkpointed are evaluated on the test
//! set by a second model, and the run stops once the target is reached. Prints one JSON line per
//! epoch and a final `{"time_to_target_seconds": ...}` line.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use lepton_data::Prepared;
use lepton_train::{predict, train, Event, Observer, Session, Spec};

struct Clock {
    session: Session,
    data: Prepared,
    target: f64,
    started: Option<Instant>,
    paused: Duration,
    epoch: Option<(u64, f64)>,
}

impl Clock {
    fn seconds(&self) -> f64 {
        self.started
            .map_or(0.0, |s| (s.elapsed() - self.paused).as_secs_f64())
    }

    fn test_accuracy(&self, weights: &std::path::Path) -> anyhow::Result<f64> {
        let all = candle_core::safetensors::load(weights, &Device::Cpu)?;
        let model: HashMap<String, Tensor> = all
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("model.").map(|k| (k.to_string(), v)))
            .collect();
        self.session.load_model_tensors(&model, weights)?;
        let test = self.data.test.as_ref().expect("the spec has a test set");
        let preds = predict(
            &self.session.model,
            &self.session.loss,
            test,
            self.session.spec.train.eval_batch_size,
        )?;
        Ok(preds.accuracy(test))
    }
}

impl Observer for Clock {
    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Start { .. } => self.started = Some(Instant::now()),
            Event::EpochEnd(m) => self.epoch = Some((m.epoch, self.seconds())),
            Event::Checkpoint { path, .. } => {
                let Some((epoch, seconds)) = self.epoch.take() else {
                    return;
                };
                let pause = Instant::now();
                let acc = self.test_accuracy(path).expect("evaluating the checkpoint");
                println!(
                    "{}",
                    serde_json::json!({"epoch": epoch, "seconds": seconds, "test_accuracy": acc})
                );
                if acc >= self.target {
                    println!(
                        "{}",
                        serde_json::json!({"time_to_target_seconds": seconds, "target": self.target, "epoch": epoch})
                    );
                    std::process::exit(0);
                }
                self.paused += pause.elapsed();
            }
            _ => {}
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 3,
        "usage: time_to_accuracy SPEC RUN_DIR [--target 0.99]"
    );
    let spec = Spec::from_file(&PathBuf::from(&args[1]))?;
    let target = match args.get(3).map(String::as_str) {
        Some("--target") => args.get(4).map_or(Ok(0.99), |s| s.parse())?,
        Some(other) => anyhow::bail!("unknown option {other}"),
        None => 0.99,
    };
    let data = lepton_data::prepare(&spec.data, &spec.preprocess, &spec.base_dir, spec.seed)?;
    anyhow::ensure!(
        data.test.as_ref().is_some_and(|t| !t.is_empty()),
        "{} has no test set",
        args[1]
    );
    let mut clock = Clock {
        session: Session::new(&spec, &data)?,
        data,
        target,
        started: None,
        paused: Duration::ZERO,
        epoch: None,
    };
    train(&spec, &PathBuf::from(&args[2]), &mut clock)?;
    println!(
        "{}",
        serde_json::json!({"time_to_target_seconds": null, "target": target})
    );
    Ok(())
}
