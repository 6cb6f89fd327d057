//! Train a spec without the CLI, printing progress lines (for sanity runs and benchmarks).
//!
//! ```text
//! cargo run --release -p lepton-train --example train_spec -- SPEC RUN_DIR [--epochs N] [--limit N] [--cv K]
//! ```
//!
//! With `--cv K` it runs K-fold cross-validation instead (RUN_DIR is unused) and prints the table.

use std::path::PathBuf;
use std::time::Instant;

use lepton_train::{train, Event, Observer, Spec};

struct Print(Instant);

impl Observer for Print {
    fn event(&mut self, e: Event<'_>) {
        let t = self.0.elapsed().as_secs_f64();
        match e {
            Event::Step {
                epoch,
                step,
                loss,
                accuracy,
                lr,
                samples_per_sec,
                ..
            } => {
                println!("[{t:7.1}s] epoch {epoch} step {step:6} loss {loss:.4} acc {accuracy:?} lr {lr:.2e} {samples_per_sec:.0} samples/s")
            }
            Event::EpochEnd(m) => println!("[{t:7.1}s] {}", serde_json::to_string(m).unwrap()),
            Event::Done(s) => println!("[{t:7.1}s] done: {}", serde_json::to_string(s).unwrap()),
            _ => {}
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 3,
        "usage: train_spec SPEC RUN_DIR [--epochs N] [--limit N] [--cv K]"
    );
    let mut spec = Spec::from_file(&PathBuf::from(&args[1]))?;
    let mut cv = None;
    let mut i = 3;
    while i + 1 < args.len() {
        match args[i].as_str() {
            "--epochs" => spec.train.epochs = args[i + 1].parse()?,
            "--limit" => spec.data.limit = Some(args[i + 1].parse()?),
            "--cv" => cv = Some(args[i + 1].parse()?),
            other => anyhow::bail!("unknown option {other}"),
        }
        i += 2;
    }
    if let Some(k) = cv {
        let report = lepton_train::cross_validate(&spec, k, &mut lepton_train::NoopObserver)?;
        print!("{}", report.to_table());
        return Ok(());
    }
    let summary = train(&spec, &PathBuf::from(&args[2]), &mut Print(Instant::now()))?;
    println!("{:?}", summary.final_metrics);
    Ok(())
}
