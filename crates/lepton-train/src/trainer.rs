//! The training loop: [`train`](crate::train), [`resume`](crate::resume) and the in-memory [`Session`] they share with
//! cross-validation.
//!
//! Determinism: with a fixed seed and thread count a run is reproducible. Initial weights come
//! from `lepton_nn::var_builder(varmap, seed)` (each layer's init hint, seeded), the batch order and augmentation from `(seed, epoch)`
//! (lepton-data's batcher), dropout masks from the model's step counter. A checkpoint holds the
//! model variables (including batch-norm statistics), the optimizer state and the position
//! (epoch, batch, step), so [`resume`](crate::resume) reproduces the uninterrupted run bit for bit.
//!
//! Everything a later step depends on is either a pure function of `(seed, step/epoch)` or in the
//! checkpoint: the position, the optimizer buffers, batch-norm statistics, the early-stopping
//! state (best metric as exact bits, patience count), the epoch's running totals, the history and
//! the length of `metrics.jsonl`. Parameters are visited in name order (never `HashMap` order,
//! which differs per process); no decision depends on wall-clock time; the rayon thread count is
//! recorded and a resume with another count warns. A run killed before its first checkpoint
//! has only its `spec.toml` (written first): [`resume`](crate::resume) starts it over from scratch.
//!
//! Per step the loop does forward, backward, optional clipping (one read of each gradient), and the
//! fused optimizer update. Loss and accuracy are accumulated as tensors and read back only every
//! `log-every` steps, at checkpoints and at epoch ends.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::{ModuleT, VarMap};
use lepton_data::{Batch, Batcher, BatcherConfig, Dataset, Prepared, Preprocessor};
use lepton_nn::{LossSpec, Model};
use serde_json::json;

use crate::checkpoint::{CheckpointState, EpochTotals, CHECKPOINT_VERSION};
use crate::distributed::{self, shard, Distributed, Single};
use crate::early_stopping::EarlyStopping;
use crate::error::{Error, Result, TensorContext};
use crate::evaluate::{self, Predictions};
use crate::language_model;
use crate::observer::{Event, Observer};
use crate::optim::{kernel::sum_squares, trainable_params, Optimizer};
use crate::pending::Pending;
use crate::phases::{Phase, PhaseClock};
use crate::run_dir::BestInfo;
pub use crate::run_dir::RunFiles;
use crate::schedule::Schedule;
use crate::segments::{self, SegmentPlan, SegmentSink};
use crate::spec::{Monitor, Spec};
use crate::summary::EpochMetrics;

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
    pub(crate) epochs: u64,
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
            world: None,
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
        run: Option<&mut RunFiles>,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        self.fit_parallel(data, run, observer, &mut Single)
    }

    /// [`Session::fit`] as one rank of `dist` (see [`crate::distributed`]): the same global
    /// batches on every rank, each training on its slice, gradients and metrics reduced. Only the
    /// rank given `run` writes.
    pub fn fit_parallel(
        &mut self,
        data: &Prepared,
        mut run: Option<&mut RunFiles>,
        observer: &mut dyn Observer,
        dist: &mut dyn Distributed,
    ) -> Result<()> {
        let (rank, world) = (dist.rank(), dist.world());
        if data.lm.is_none() {
            distributed::check_last_batch(
                data.train.len(),
                self.spec.train.batch_size,
                self.spec.train.drop_last,
                world,
            )?;
        }
        let params = trainable_params(&self.varmap);
        if world > 1 {
            self.broadcast_variables(dist, false)?;
        }
        // Gradients reduced per segment while the earlier segments are differentiated.
        let plan = (world > 1 && dist.overlap_segments() > 1)
            .then(|| SegmentPlan::new(&self.model, &params, dist.overlap_segments()));
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
        let mut clock = PhaseClock::new();
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
                clock.lap(Phase::Data);
                let batch = batch?;
                let global = batch.x.dim(0).op("batch size")?;
                let batch = shard(batch, rank, world)?;
                let bs = batch.x.dim(0).op("batch size")?;
                let weight = bs as f64 / global as f64;
                // The whole step runs on a rayon worker: the kernels' parallel loops then start
                // on the current thread instead of waking the pool and sleeping on a latch each
                // time (dozens of hand-offs per step; +8 % LeNet training images/s).
                // With several ranks the gradients are synchronised between backward and the
                // update, on this thread (MPI is called from the thread that initialised it).
                let (logits, loss, lr) = if let Some(plan) = &plan {
                    let (logits, loss, mut grads) =
                        self.forward_backward_segmented(&batch, plan, dist, weight)?;
                    dist.finish_gradients(&mut grads)?;
                    let lr = rayon::scope(|_| self.update(&grads, &params))?;
                    (logits, loss, lr)
                } else if world > 1 {
                    let (logits, loss, mut grads) =
                        rayon::scope(|_| self.forward_backward(&batch))?;
                    dist.sync_gradients(&params, &mut grads, weight)?;
                    let lr = rayon::scope(|_| self.update(&grads, &params))?;
                    (logits, loss, lr)
                } else {
                    rayon::scope(|_| {
                        let (logits, loss, grads) = self.forward_backward(&batch)?;
                        let lr = self.update(&grads, &params)?;
                        Ok::<_, Error>((logits, loss, lr))
                    })?
                };
                clock.lap(Phase::Steps);
                pending.add(
                    &loss,
                    bs,
                    if classify {
                        Some((&logits, &batch.y, &self.loss))
                    } else {
                        None
                    },
                )?;
                window.1 += global as u64;
                self.state.step += 1;
                self.state.batch_in_epoch += 1;
                self.state.lr = lr;
                let log_now = self.state.step % tspec.log_every == 0;
                let ckpt_now = self.state.step % tspec.checkpoint_every == 0;
                if log_now || ckpt_now {
                    let (loss_avg, acc_avg) = pending.flush(&mut self.state.totals, dist)?;
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
                            clock.lap(Phase::Logging);
                            self.save_checkpoint(run, observer, world)?;
                            clock.lap(Phase::Checkpoint);
                        }
                    }
                }
                clock.lap(Phase::Logging);
            }
            pending.flush(&mut self.state.totals, dist)?;
            clock.lap(Phase::Logging);
            self.end_epoch(
                data,
                classify,
                epoch_start,
                run.as_deref_mut(),
                observer,
                dist,
                &mut clock,
            )?;
        }
        self.state.finished = true;
        if let Some(run) = run {
            self.save_checkpoint(run, observer, world)?;
        }
        Ok(())
    }

    /// Forward, loss and backward for one batch; returns the logits, the loss and the gradients.
    fn forward_backward(&mut self, batch: &Batch) -> Result<(Tensor, Tensor, GradStore)> {
        self.model.set_step(self.state.step);
        let logits = self.model.forward_t(&batch.x, true).op("forward pass")?;
        let loss = if self.language_model {
            language_model::loss(&self.loss, &logits, &batch.y)?
        } else {
            lepton_nn::loss(&self.loss, &logits, &batch.y, batch.weights.as_ref())?
        };
        let grads = loss.backward().op("backward pass")?;
        Ok((logits, loss, grads))
    }

    /// [`Session::forward_backward`] with the backward pass in `plan`'s segments, each
    /// segment's gradients handed to `dist` as soon as they are complete (see
    /// [`crate::segments`]); returns the logits, the loss and the (not yet reduced) gradients.
    fn forward_backward_segmented(
        &mut self,
        batch: &Batch,
        plan: &SegmentPlan,
        dist: &mut dyn Distributed,
        weight: f64,
    ) -> Result<(Tensor, Tensor, GradStore)> {
        self.model.set_step(self.state.step);
        let (spec, lm) = (&self.loss, self.language_model);
        let loss = |logits: &Tensor| {
            if lm {
                language_model::loss(spec, logits, &batch.y)
            } else {
                lepton_nn::loss(spec, logits, &batch.y, batch.weights.as_ref()).map_err(Into::into)
            }
        };
        /// Hands each completed segment to the process group.
        struct Overlap<'a> {
            dist: &'a mut dyn Distributed,
            plan: &'a SegmentPlan,
            weight: f64,
        }
        impl SegmentSink for Overlap<'_> {
            fn segment_done(
                &mut self,
                s: usize,
                grads: &GradStore,
                span: [Instant; 2],
            ) -> Result<()> {
                self.dist
                    .start_gradients(&self.plan.params[s], grads, self.weight, span)
            }
            fn progress(&mut self) -> Result<bool> {
                self.dist.progress()
            }
        }
        let mut sink = Overlap { dist, plan, weight };
        segments::forward_backward(&self.model, plan, &batch.x, loss, &mut sink)
    }

    /// Optional clipping and the optimizer update; returns the learning rate used. With several
    /// ranks `grads` are already the global-batch gradients, so clipping sees the global norm.
    fn update(&mut self, grads: &GradStore, params: &[(String, Var)]) -> Result<f64> {
        let scale = match self.spec.train.clip_grad_norm {
            Some(max) => {
                let mut sq = 0.0;
                for (_, v) in params {
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
        self.optimizer.step(grads, lr, scale)?;
        Ok(lr)
    }

    /// The validation pass, early stopping, the epoch line (with `clock`'s phases), the best
    /// model and the epoch's checkpoint.
    #[allow(clippy::too_many_arguments)]
    fn end_epoch(
        &mut self,
        data: &Prepared,
        classify: bool,
        started: Instant,
        run: Option<&mut RunFiles>,
        observer: &mut dyn Observer,
        dist: &mut dyn Distributed,
        clock: &mut PhaseClock,
    ) -> Result<()> {
        let epoch = self.state.epoch;
        if dist.world() > 1 {
            // Batch-norm statistics drifted apart on the ranks' slices: evaluate rank 0's.
            self.broadcast_variables(dist, true)?;
        }
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
        clock.lap(Phase::Validation);
        let mut monitored = [match (self.monitor, val_loss) {
            (Monitor::ValAccuracy, Some(_)) => val_accuracy.unwrap_or(0.0),
            (_, Some(l)) => l,
            // No validation data: fall back to the training loss.
            (_, None) => train_loss,
        }];
        // Rank 0's value decides early stopping and the best model on every rank.
        dist.broadcast_f64(&mut monitored)?;
        let [monitored] = monitored;
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
            phases: None,
        };
        // The history keeps no timings: it is what a checkpoint restores.
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
        clock.lap(Phase::Logging);
        let metrics = EpochMetrics {
            phases: Some(clock.take()),
            ..metrics
        };
        observer.event(Event::EpochEnd(&metrics));
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
                clock.lap(Phase::Logging);
                run.dir.save_best(&self.model_tensors(), info)?;
                clock.lap(Phase::Checkpoint);
            }
            clock.lap(Phase::Logging);
            self.save_checkpoint(run, observer, dist.world())?;
            clock.lap(Phase::Checkpoint);
        }
        Ok(())
    }

    /// Overwrite this rank's variables with rank 0's, in name order: every variable, or only the
    /// buffers (batch-norm statistics).
    fn broadcast_variables(&self, dist: &mut dyn Distributed, buffers_only: bool) -> Result<()> {
        let data = self.varmap.data().lock().expect("VarMap lock");
        let mut vars: Vec<(&String, &Var)> = data
            .iter()
            .filter(|(n, _)| !buffers_only || crate::optim::is_buffer(n))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(b.0));
        for (name, var) in vars {
            let t = var.as_tensor();
            let dtype = t.dtype();
            let mut host = t
                .flatten_all()
                .and_then(|t| t.to_dtype(DType::F32))
                .and_then(|t| t.to_vec1::<f32>())
                .op(format!("reading `{name}` to broadcast"))?;
            dist.broadcast(&mut host)?;
            let new = Tensor::from_vec(host, t.shape(), t.device())
                .and_then(|n| n.to_dtype(dtype))
                .op(format!("writing the broadcast `{name}`"))?;
            var.set(&new)
                .op(format!("writing the broadcast `{name}`"))?;
        }
        Ok(())
    }

    fn save_checkpoint(
        &self,
        run: &mut RunFiles,
        observer: &mut dyn Observer,
        world: usize,
    ) -> Result<()> {
        // The log lines up to here are durable before the checkpoint names their length.
        run.metrics.sync()?;
        let state = CheckpointState {
            metrics_len: Some(run.metrics.len()),
            threads: Some(rayon::current_num_threads()),
            world: Some(world),
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
