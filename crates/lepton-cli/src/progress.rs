//! Training progress: indicatif bars for people, JSON lines for scripts, nothing with `--quiet`.

use indicatif::{ProgressBar, ProgressStyle};
use lepton_train::{Event, Observer};
use serde_json::json;

use crate::output::Mode;

/// Renders trainer events.
pub struct Progress {
    mode: Mode,
    bar: Option<ProgressBar>,
    steps_per_epoch: u64,
    epochs: u64,
}

impl Progress {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            bar: None,
            steps_per_epoch: 0,
            epochs: 0,
        }
    }

    fn bar(&self, epoch: u64, first: u64) -> ProgressBar {
        let bar = ProgressBar::new(self.steps_per_epoch);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, self.epochs));
        bar.set_position(first);
        bar
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

impl Observer for Progress {
    fn event(&mut self, event: Event<'_>) {
        if self.mode == Mode::Quiet {
            return;
        }
        if self.mode == Mode::Json {
            let line = match &event {
                Event::Fold { fold, folds } => {
                    json!({"event": "fold", "fold": fold, "folds": folds})
                }
                Event::Start {
                    epochs,
                    steps_per_epoch,
                    start_epoch,
                    start_step,
                } => {
                    json!({"event": "start", "epochs": epochs, "steps_per_epoch": steps_per_epoch, "start_epoch": start_epoch, "start_step": start_step})
                }
                Event::EpochStart { epoch, first_batch } => {
                    json!({"event": "epoch_start", "epoch": epoch, "first_batch": first_batch})
                }
                Event::Step {
                    epoch,
                    step,
                    batch,
                    loss,
                    accuracy,
                    lr,
                    samples_per_sec,
                } => {
                    json!({"event": "step", "epoch": epoch, "step": step, "batch": batch, "loss": loss, "accuracy": accuracy, "lr": lr, "samples_per_sec": samples_per_sec})
                }
                Event::EpochEnd(m) => json!({"event": "epoch_end", "metrics": m}),
                Event::Checkpoint { path, step } => {
                    json!({"event": "checkpoint", "path": path, "step": step})
                }
                Event::Evaluating => json!({"event": "evaluating"}),
                Event::Done(s) => json!({"event": "done", "summary": s}),
            };
            println!("{line}");
            return;
        }
        match event {
            Event::Fold { fold, folds } => eprintln!("fold {}/{folds}", fold + 1),
            Event::Start {
                epochs,
                steps_per_epoch,
                start_epoch,
                start_step,
            } => {
                self.epochs = epochs;
                self.steps_per_epoch = steps_per_epoch;
                if start_step > 0 {
                    eprintln!("resuming at epoch {}, step {start_step}", start_epoch + 1);
                }
            }
            Event::EpochStart { epoch, first_batch } => {
                self.bar = Some(self.bar(epoch, first_batch))
            }
            Event::Step {
                batch,
                loss,
                accuracy,
                lr,
                samples_per_sec,
                ..
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(batch + 1);
                    let acc = accuracy.map_or(String::new(), |a| format!(" acc {a:.4}"));
                    bar.set_message(format!(
                        "loss {loss:.4}{acc} lr {lr:.2e} {samples_per_sec:.0}/s"
                    ));
                }
            }
            Event::EpochEnd(m) => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                eprintln!(
                    "epoch {:>3}/{}  train loss {:.4} acc {}  val loss {} acc {}  {:.1}s{}",
                    m.epoch + 1,
                    self.epochs,
                    m.train_loss,
                    opt(m.train_accuracy),
                    opt(m.val_loss),
                    opt(m.val_accuracy),
                    m.seconds,
                    if m.best { "  *best" } else { "" }
                );
            }
            Event::Checkpoint { .. } => {}
            Event::Evaluating => eprintln!("evaluating the best model..."),
            Event::Done(_) => {}
        }
    }
}
