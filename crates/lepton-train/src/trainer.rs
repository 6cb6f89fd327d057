//! The training loop: [`train`], [`resume`] and the in-memory [`Session`] they share with
//! cross-validation.
//!
//! Determinism: with a fixed seed and thread count a run is reproducible. Initial weights come
//! from `lepton_nn::var_builder(varmap, seed)` (each layer's init hint, seeded), the batch order and augmentation from `(seed, epoch)`
//! (lepton-data's batcher), dropout masks from the model's step counter. A checkpoint holds the
//! model variables (including batch-norm statistics), the optimizer state and the position
//! (epoch, batch, step), so [`resume`] reproduces the uninterrupted run bit for bit.
//!
//! Everything a later step depends on is either a pure function of `(seed, step/epoch)` or in the
//! checkpoint: the position, the optimizer buffers, batch-norm statistics, the early-stopping
//! state (best metric as exact bits, patience count), the epoch's running totals, the history and
//! the length of `metrics.jsonl`. Parameters are visited in name order (never `HashMap` order,
//! which differs per process); no decision depends on wall-clock time; the rayon thread count is
//! recorded and a resume with another count warns. A run killed before its first checkpoint
//! has only its `spec.toml` (written first): [`resume`] starts it over from scratch.
//!
//! Per step the loop does forward, backward, optional clipping (one read of each gradient), and the
//! fused optimizer update. Loss and accuracy are accumulated as tensors and read back only every
//! `log-every` steps, at checkpoints and at epoch ends.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Tensor};
use candle_nn::{ModuleT, VarMap};
use lepton_data::{Batch, Batcher, BatcherConfig, Dataset, Prepared, Preprocessor};
use lepton_nn::{LossSpec, Model};
use serde_json::json;

use crate::checkpoint::{CheckpointState, EpochTotals, CHECKPOINT_VERSION};
use crate::early_stopping::EarlyStopping;
use crate::error::{Error, Result, TensorContext};
use crate::evaluate::{self, Predictions};
use crate::language_model;
use crate::observer::{Event, Observer};
use crate::optim::{kernel::sum_squares, trainable_params, Optimizer};
use crate::run_dir::{BestInfo, LogStart, MetricsLog, RunDir};
use crate::schedule::Schedule;
use crate::spec::{Monitor, Spec};
use crate::summary::{EpochMetrics, RunSummary};

/// A model with its variables, optimizer and schedule, positioned somewhere in a run.
pub struct Session {
    pub spec: Spec,
    pub loss: LossSpec,
    pub monitor: Monitor,
    pub varmap: VarMap,
    pub model: Model,
    pub input_shape: Vec<usize>,
    optimizer: Box<dyn Optimizer>,
    schedule: Schedule,
    steps_per_epoch: u64,
    /// Epochs to train; for a language model, evaluation intervals (`steps / eval-interval`,
    /// rounded up).
    epochs: u64,
    /// The last step (exclusive): `epochs * steps_per_epoch`, or `train.steps` for text.
    total_steps: u64,
    /// Next-token objective over `[B, T, V]` logits (`data.format = "text"`).
    language_model: bool,
    pub state: CheckpointState,
}

/// The task-dependent defaults of a spec, resolved against the prepared data.
pub fn resolve_loss(spec: &Spec, data: &Dataset) -> LossSpec {
    match &spec.loss {
        Some(l) => l.clone(),
        None => evaluate::default_loss(data),
    }
}

impl Session {
    /// Build the model (seeded init) and optimizer for `spec` on prepared data; checks the shapes
    /// against the data first.
    pub fn new(spec: &Spec, data: &Prepared) -> Result<Session> {
        let input_shape = data.train.sample_shape.clone();
        let shapes = spec
            .check_shapes(&input_shape)
            .map_err(|e| spec.with_line(e))?;
        let loss = resolve_loss(spec, &data.train);
        let output = shapes.last().map(Vec::as_slice).unwrap_or(&input_shape);
        match (&data.lm, data.preprocessor.vocab()) {
            (Some(lm), _) => language_model::check_model(spec, lm, &loss, output),
            (None, Some(vocab)) => language_model::check_embedding(spec, vocab)
                .and_then(|()| evaluate::check_output(spec, &loss, &data.train, output)),
            (None, None) => evaluate::check_output(spec, &loss, &data.train, output),
        }
        .map_err(|e| spec.with_line(e))?;
        let monitor = spec
            .train
            .monitor
            .unwrap_or(if data.train.class_names().is_empty() {
                Monitor::ValLoss
            } else {
                Monitor::ValAccuracy
            });
        if monitor == Monitor::ValAccuracy && data.train.class_names().is_empty() {
            return Err(spec.with_line(Error::spec(
                "train.monitor",
                "val-accuracy needs a classification task",
            )));
        }
        let varmap = VarMap::new();
        let model = Model::new(
            &spec.model,
            &input_shape,
            lepton_nn::var_builder(&varmap, spec.seed),
        )?;
        model.set_seed(spec.seed);
        let optimizer = spec.optimizer.build(trainable_params(&varmap));
        let (epochs, steps_per_epoch, total_steps) = if data.lm.is_some() {
            let t = &spec.train;
            (t.steps.div_ceil(t.eval_interval), t.eval_interval, t.steps)
        } else {
            let per = lepton_data::batches_per_epoch(
                data.train.len(),
                spec.train.batch_size,
                spec.train.drop_last,
            )
            .max(1) as u64;
            (spec.train.epochs, per, per * spec.train.epochs)
        };
        let schedule = Schedule::new(
            &spec.schedule,
            spec.optimizer.lr(),
            total_steps,
            steps_per_epoch,
        );
        let state = CheckpointState {
            version: CHECKPOINT_VERSION,
            epoch: 0,
            batch_in_epoch: 0,
            step: 0,
            lr: spec.optimizer.lr(),
            metric: monitor.name().into(),
            early_stopping: EarlyStopping::default(),
            history: Vec::new(),
            totals: EpochTotals::default(),
            finished: false,
            sha256: String::new(),
            metrics_len: None,
            threads: None,
        };
        Ok(Session {
            spec: spec.clone(),
            loss,
            monitor,
            varmap,
            model,
            input_shape,
            optimizer,
            schedule,
            steps_per_epoch,
            epochs,
            total_steps,
            language_model: data.lm.is_some(),
            state,
        })
    }

    /// All model variables (parameters and buffers) by name. The tensors share storage with the
    /// variables (no copy): write them out before the next optimizer step.
    pub fn model_tensors(&self) -> HashMap<String, Tensor> {
        let data = self.varmap.data().lock().expect("VarMap lock");
        data.iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Overwrite model variables from `tensors` (names without prefix); every variable must be present.
    pub fn load_model_tensors(
        &self,
        tensors: &HashMap<String, Tensor>,
        origin: &Path,
    ) -> Result<()> {
        let data = self.varmap.data().lock().expect("VarMap lock");
        for (name, var) in data.iter() {
            let t = tensors.get(name).ok_or_else(|| {
                Error::checkpoint(origin, format!("missing model variable `{name}`"))
            })?;
            if t.dims() != var.dims() {
                return Err(Error::checkpoint(
                    origin,
                    format!(
                        "`{name}` has shape {:?}, the model expects {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            var.set(t).op(format!("restoring `{name}`"))?;
        }
        Ok(())
    }

    /// Checkpoint tensors: `model.*` and `optim.*`.
    fn checkpoint_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out: HashMap<String, Tensor> = self
            .model_tensors()
            .into_iter()
            .map(|(k, v)| (format!("model.{k}"), v))
            .collect();
        for (k, v) in self.optimizer.state()? {
            out.insert(format!("optim.{k}"), v);
        }
        Ok(out)
    }

    /// Restore from checkpoint tensors and state.
    pub fn restore(
        &mut self,
        state: CheckpointState,
        tensors: HashMap<String, Tensor>,
        origin: &Path,
    ) -> Result<()> {
        let mut model = HashMap::new();
        let mut optim = HashMap::new();
        for (k, v) in tensors {
            if let Some(n) = k.strip_prefix("model.") {
                model.insert(n.to_string(), v);
            } else if let Some(n) = k.strip_prefix("optim.") {
                optim.insert(n.to_string(), v);
            }
        }
        self.load_model_tensors(&model, origin)?;
        self.optimizer
            .load_state(&optim)
            .map_err(|e| Error::checkpoint(origin, e.to_string()))?;
        self.state = state;
        Ok(())
    }

    /// Train until the last epoch or early stopping. `run` persists progress when given.
    pub fn fit(
        &mut self,
        data: &Prepared,
        mut run: Option<&mut RunFiles>,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let train = Arc::new(data.train.clone());
        let classify = !data.train.class_names().is_empty();
        let augment = match (&self.spec.preprocess.augment, &data.preprocessor) {
            (Some(a), Preprocessor::Image { mean, std, .. }) => Some((
                a.clone(),
                mean.iter().zip(std).map(|(m, s)| -m / s).collect(),
            )),
            _ => None,
        };
        let epochs = self.epochs;
        let tspec = self.spec.train.clone();
        observer.event(Event::Start {
            epochs,
            steps_per_epoch: self.steps_per_epoch,
            start_epoch: self.state.epoch,
            start_step: self.state.step,
        });
        while self.state.epoch < epochs && !self.state.finished {
            let epoch = self.state.epoch;
            let epoch_start = Instant::now();
            observer.event(Event::EpochStart {
                epoch,
                first_batch: self.state.batch_in_epoch,
            });
            let batcher: Box<dyn Iterator<Item = lepton_data::Result<Batch>> + '_> = match &data.lm
            {
                // Random windows of step `k` are a function of `(seed, k)`: a resumed run
                // draws the same ones.
                Some(lm) => {
                    let end = ((epoch + 1) * self.steps_per_epoch).min(self.total_steps);
                    let (bs, seed) = (tspec.batch_size, self.spec.seed);
                    Box::new((self.state.step..end).map(move |k| lm.train_batch(bs, seed, k)))
                }
                None => Box::new(Batcher::new(
                    train.clone(),
                    BatcherConfig {
                        batch_size: tspec.batch_size,
                        shuffle: true,
                        seed: self.spec.seed,
                        epoch,
                        start_batch: self.state.batch_in_epoch as usize,
                        augment: augment.clone(),
                        drop_last: tspec.drop_last,
                        prefetch: 3,
                    },
                )),
            };
            // Sums since the last read-back, kept as tensors (no host sync per step).
            let mut pending = Pending::default();
            let mut window = (Instant::now(), 0u64);
            for batch in batcher {
                let batch = batch?;
                let bs = batch.x.dim(0).op("batch size")?;
                // The whole step runs on a rayon worker: the kernels' parallel loops then start
                // on the current thread instead of waking the pool and sleeping on a latch each
                // time (dozens of hand-offs per step; +8 % LeNet training images/s).
                let (logits, loss, lr) = rayon::scope(|_| self.train_step(&batch))?;
                pending.add(
                    &loss,
                    bs,
                    if classify {
                        Some((&logits, &batch.y, &self.loss))
                    } else {
                        None
                    },
                )?;
                window.1 += bs as u64;
                self.state.step += 1;
                self.state.batch_in_epoch += 1;
                self.state.lr = lr;
                let log_now = self.state.step % tspec.log_every == 0;
                let ckpt_now = self.state.step % tspec.checkpoint_every == 0;
                if log_now || ckpt_now {
                    let (loss_avg, acc_avg) = pending.flush(&mut self.state.totals)?;
                    if !loss_avg.is_finite() {
                        return Err(Error::Diverged {
                            step: self.state.step,
                            loss: loss_avg as f32,
                        });
                    }
                    let secs = window.0.elapsed().as_secs_f64().max(1e-9);
                    let sps = window.1 as f64 / secs;
                    window = (Instant::now(), 0);
                    observer.event(Event::Step {
                        epoch,
                        step: self.state.step,
                        batch: self.state.batch_in_epoch,
                        loss: loss_avg as f32,
                        accuracy: acc_avg.map(|a| a as f32),
                        lr,
                        samples_per_sec: sps,
                    });
                    if let Some(run) = run.as_deref_mut() {
                        let mut line = json!({
                            "kind": "step", "epoch": epoch, "step": self.state.step, "loss": loss_avg,
                            "accuracy": acc_avg, "lr": lr, "samples_per_sec": sps,
                        });
                        if let Some(lm) = &data.lm {
                            // A sample is a window: every position is a predicted token.
                            line["tokens_per_sec"] = json!(sps * lm.block_size as f64);
                        }
                        run.metrics.append(&line)?;
                        if ckpt_now {
                            self.save_checkpoint(run, observer)?;
                        }
                    }
                }
            }
            pending.flush(&mut self.state.totals)?;
            self.end_epoch(data, classify, epoch_start, run.as_deref_mut(), observer)?;
        }
        self.state.finished = true;
        if let Some(run) = run {
            self.save_checkpoint(run, observer)?;
        }
        Ok(())
    }

    /// Forward, loss, backward and the optimizer update for one batch; returns the logits, the
    /// loss and the learning rate used.
    fn train_step(&mut self, batch: &Batch) -> Result<(Tensor, Tensor, f64)> {
        self.model.set_step(self.state.step);
        let logits = self.model.forward_t(&batch.x, true).op("forward pass")?;
        let loss = if self.language_model {
            language_model::loss(&self.loss, &logits, &batch.y)?
        } else {
            lepton_nn::loss(&self.loss, &logits, &batch.y, batch.weights.as_ref())?
        };
        let grads = loss.backward().op("backward pass")?;
        let scale = match self.spec.train.clip_grad_norm {
            Some(max) => {
                let mut sq = 0.0;
                for (_, v) in trainable_params(&self.varmap) {
                    if let Some(g) = grads.get(v.as_tensor()) {
                        sq += sum_squares(g)?;
                    }
                }
                // As torch.nn.utils.clip_grad_norm_.
                (max / (sq.sqrt() + 1e-6)).min(1.0) as f32
            }
            None => 1.0,
        };
        let lr = self.schedule.lr(self.state.step);
        self.optimizer.step(&grads, lr, scale)?;
        Ok((logits, loss, lr))
    }

    fn end_epoch(
        &mut self,
        data: &Prepared,
        classify: bool,
        started: Instant,
        run: Option<&mut RunFiles>,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let epoch = self.state.epoch;
        let t = self.state.totals;
        let n = t.samples.max(1) as f64;
        let train_loss = t.loss_sum / n;
        if !train_loss.is_finite() {
            return Err(Error::Diverged {
                step: self.state.step,
                loss: train_loss as f32,
            });
        }
        let tspec = &self.spec.train;
        let (val_loss, val_accuracy, lm_val) = match &data.lm {
            Some(lm) => {
                let r = language_model::evaluate(
                    &self.model,
                    &self.loss,
                    &lm.validation,
                    lm.block_size,
                    tspec.eval_windows,
                    tspec.eval_batch_size,
                )?;
                (r.as_ref().map(|r| r.loss), None, r)
            }
            None if data.validation.is_empty() => (None, None, None),
            None => {
                let p: Predictions = evaluate::predict(
                    &self.model,
                    &self.loss,
                    &data.validation,
                    tspec.eval_batch_size,
                )?;
                let acc = classify.then(|| p.accuracy(&data.validation));
                (Some(p.loss), acc, None)
            }
        };
        let monitored = match (self.monitor, val_loss) {
            (Monitor::ValAccuracy, Some(_)) => val_accuracy.unwrap_or(0.0),
            (_, Some(l)) => l,
            // No validation data: fall back to the training loss.
            (_, None) => train_loss,
        };
        let mode = if val_loss.is_none() {
            crate::early_stopping::Mode::Min
        } else {
            self.monitor.mode()
        };
        let min_delta = self
            .spec
            .train
            .early_stopping
            .as_ref()
            .map_or(0.0, |e| e.min_delta);
        let best = self
            .state
            .early_stopping
            .update(monitored, epoch, mode, min_delta);
        let metrics = EpochMetrics {
            epoch,
            step: self.state.step,
            lr: self.state.lr,
            train_loss,
            train_accuracy: if classify { Some(t.correct / n) } else { None },
            val_loss,
            val_accuracy,
            val_perplexity: lm_val.as_ref().map(|r| r.perplexity),
            val_bits_per_token: lm_val.as_ref().map(|r| r.bits_per_token),
            monitored,
            best,
            seconds: started.elapsed().as_secs_f64(),
        };
        observer.event(Event::EpochEnd(&metrics));
        self.state.history.push(metrics.clone());
        self.state.epoch += 1;
        self.state.batch_in_epoch = 0;
        self.state.totals = EpochTotals::default();
        if self
            .state
            .early_stopping
            .should_stop(self.spec.train.early_stopping.as_ref())
        {
            self.state.finished = true;
        }
        if let Some(run) = run {
            let mut line = serde_json::to_value(&metrics).map_err(|source| Error::Json {
                op: "encoding",
                path: run.dir.metrics(),
                source,
            })?;
            line["kind"] = json!("epoch");
            run.metrics.append(&line)?;
            if best {
                let info = BestInfo {
                    epoch,
                    step: self.state.step,
                    metric: self.monitor.name().into(),
                    value: monitored,
                    sha256: String::new(),
                };
                run.dir.save_best(&self.model_tensors(), info)?;
            }
            self.save_checkpoint(run, observer)?;
        }
        Ok(())
    }

    fn save_checkpoint(&self, run: &mut RunFiles, observer: &mut dyn Observer) -> Result<()> {
        // The log lines up to here are durable before the checkpoint names their length.
        run.metrics.sync()?;
        let state = CheckpointState {
            metrics_len: Some(run.metrics.len()),
            threads: Some(rayon::current_num_threads()),
            ..self.state.clone()
        };
        run.dir
            .checkpoints
            .save(&self.checkpoint_tensors()?, &state)?;
        observer.event(Event::Checkpoint {
            path: &run.dir.checkpoints.weights,
            step: self.state.step,
        });
        Ok(())
    }
}

/// Loss and correct-count sums since the last read-back.
#[derive(Default)]
struct Pending {
    loss: Option<Tensor>,
    correct: Option<Tensor>,
    samples: u64,
}

impl Pending {
    fn add(
        &mut self,
        loss: &Tensor,
        bs: usize,
        classify: Option<(&Tensor, &Tensor, &LossSpec)>,
    ) -> Result<()> {
        let l = (loss.detach() * bs as f64).op("accumulating the loss")?;
        self.loss = Some(match self.loss.take() {
            Some(acc) => (acc + l).op("accumulating the loss")?,
            None => l,
        });
        if let Some((logits, y, spec)) = classify {
            let c = evaluate::correct_count(logits, y, spec)?;
            self.correct = Some(match self.correct.take() {
                Some(acc) => (acc + c).op("accumulating the accuracy")?,
                None => c,
            });
        }
        self.samples += bs as u64;
        Ok(())
    }

    /// Read the sums back, add them to `totals`, return the window's averages.
    fn flush(&mut self, totals: &mut EpochTotals) -> Result<(f64, Option<f64>)> {
        let n = self.samples.max(1) as f64;
        let loss = match self.loss.take() {
            Some(t) => t
                .to_dtype(DType::F64)
                .and_then(|t| t.to_scalar::<f64>())
                .op("reading the loss")?,
            None => 0.0,
        };
        let correct = match self.correct.take() {
            Some(t) => Some(
                t.to_dtype(DType::F64)
                    .and_then(|t| t.to_scalar::<f64>())
                    .op("reading the accuracy")?,
            ),
            None => None,
        };
        totals.loss_sum += loss;
        totals.correct += correct.unwrap_or(0.0);
        totals.samples += self.samples;
        let out = (loss / n, correct.map(|c| c / n));
        self.samples = 0;
        Ok(out)
    }
}

/// A run directory opened for writing.
pub struct RunFiles {
    pub dir: RunDir,
    pub metrics: MetricsLog,
}

/// Train `spec` from scratch, writing the run directory `run_dir` (created; it must not hold a
/// checkpoint already: use [`resume`]). Ends with the evaluation of the best model.
///
/// The resolved `spec.toml` is the first file written, before the data is loaded, so a run
/// killed at any later moment can be resumed.
pub fn train(spec: &Spec, run_dir: &Path, observer: &mut dyn Observer) -> Result<RunSummary> {
    // Again: a caller may have changed the parsed spec (the CLI's `--epochs`, `--seed`).
    spec.validate().map_err(|e| spec.with_line(e))?;
    let dir = RunDir::new(run_dir);
    if dir.checkpoints.state.exists() {
        return Err(Error::checkpoint(
            &dir.checkpoints.state,
            "the run directory already holds a run; resume it or choose another directory",
        ));
    }
    dir.create()?;
    dir.clean_stale_temps()?;
    crate::checkpoint::atomic_write(&dir.spec(), spec.to_toml()?.as_bytes())?;
    start(spec, dir, observer)
}

/// A new run in a directory that holds its spec and no checkpoint.
fn start(spec: &Spec, dir: RunDir, observer: &mut dyn Observer) -> Result<RunSummary> {
    let started = Instant::now();
    dir.reset_progress()?;
    let data = lepton_data::prepare(&spec.data, &spec.preprocess, &spec.base_dir, spec.seed)
        .map_err(|e| spec.data_error(e))?;
    let mut session = Session::new(spec, &data)?;
    dir.write_json(&dir.preprocessor(), &data.preprocessor)?;
    dir.write_json(&dir.data_report(), &data.report)?;
    let metrics = MetricsLog::open(&dir.metrics(), LogStart::Empty)?;
    let mut run = RunFiles { dir, metrics };
    session.fit(&data, Some(&mut run), observer)?;
    finish(&mut session, &data, &run.dir, started, observer)
}

/// Continue the run in `run_dir` from its last checkpoint; the final weights equal those of an
/// uninterrupted run. A run killed before its first checkpoint starts over from its `spec.toml`;
/// a finished run is only re-evaluated. Temp files of a killed writer are removed.
pub fn resume(run_dir: &Path, observer: &mut dyn Observer) -> Result<RunSummary> {
    let dir = RunDir::new(run_dir);
    let spec_path = dir.spec();
    if !spec_path.exists() {
        return Err(Error::checkpoint(
            &spec_path,
            "not found: this is not a run directory, or its run was killed before it wrote its \
             spec (nothing to resume: train the spec again)",
        ));
    }
    dir.clean_stale_temps()?;
    let spec = Spec::from_file(&spec_path)?;
    if !dir.checkpoints.state.exists() {
        tracing::info!(run = %run_dir.display(), "no checkpoint yet: starting the run over");
        return start(&spec, dir, observer);
    }
    let started = Instant::now();
    let (state, tensors) = dir.checkpoints.load()?;
    let threads = rayon::current_num_threads();
    if state.threads.is_some_and(|t| t != threads) {
        tracing::warn!(
            checkpoint_threads = state.threads,
            threads,
            "resuming with another thread count: parallel reductions may round differently \
             from the uninterrupted run"
        );
    }
    let data = lepton_data::prepare(&spec.data, &spec.preprocess, &spec.base_dir, spec.seed)
        .map_err(|e| spec.data_error(e))?;
    let mut session = Session::new(&spec, &data)?;
    session.restore(state, tensors, &dir.checkpoints.weights)?;
    let log_start = match session.state.metrics_len {
        Some(len) => LogStart::At(len),
        None => LogStart::Lines {
            step: session.state.step,
            epoch: session.state.epoch,
        },
    };
    let metrics = MetricsLog::open(&dir.metrics(), log_start)?;
    let mut run = RunFiles { dir, metrics };
    session.fit(&data, Some(&mut run), observer)?;
    finish(&mut session, &data, &run.dir, started, observer)
}

/// Load the best weights, evaluate on test (or validation) data and write the report.
fn finish(
    session: &mut Session,
    data: &Prepared,
    dir: &RunDir,
    started: Instant,
    observer: &mut dyn Observer,
) -> Result<RunSummary> {
    let train_seconds = started.elapsed().as_secs_f64();
    observer.event(Event::Evaluating);
    let (best_epoch, best_metric) = if dir.best_info().exists() {
        let (info, tensors) = dir.load_best()?;
        session.load_model_tensors(&tensors, &dir.best_weights())?;
        (Some(info.epoch), Some(info.value))
    } else {
        (None, None)
    };
    let (split, eval_data) = match &data.test {
        Some(t) if !t.is_empty() || data.lm.is_some() => ("test", t),
        _ => ("validation", &data.validation),
    };
    let final_metrics = if let Some(lm) = &data.lm {
        let tokens = if split == "test" {
            &lm.test
        } else {
            &lm.validation
        };
        match language_model::evaluate(
            &session.model,
            &session.loss,
            tokens,
            lm.block_size,
            usize::MAX,
            session.spec.train.eval_batch_size,
        )? {
            Some(r) => evaluate::write_lm_report(
                &session.spec,
                r.with_chars_per_token(lm.chars_per_token(split == "test")),
                split,
                &session.state.history,
                &dir.root,
            )?,
            None => Vec::new(),
        }
    } else if eval_data.is_empty() {
        Vec::new()
    } else {
        let preds = evaluate::predict(
            &session.model,
            &session.loss,
            eval_data,
            session.spec.train.eval_batch_size,
        )?;
        evaluate::write_report(
            &session.spec,
            &preds,
            eval_data,
            &data.preprocessor,
            split,
            &session.state.history,
            &dir.root,
        )?
    };
    let summary = RunSummary {
        name: session.spec.name.clone(),
        run_dir: dir.root.clone(),
        epochs: session.state.history.len() as u64,
        steps: session.state.step,
        metric: session.monitor.name().into(),
        best_metric,
        best_epoch,
        stopped_early: (session.state.history.len() as u64) < session.epochs,
        eval_split: split.into(),
        final_metrics,
        train_seconds,
        report: dir.root.join("report.json"),
        best_weights: dir.best_weights(),
    };
    observer.event(Event::Done(&summary));
    Ok(summary)
}
