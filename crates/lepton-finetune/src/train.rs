//! The fine-tuning loop: adapters attached to the frozen base, AdamW (or any lepton-train
//! optimizer) over the LoRA variables only, validation loss and perplexity, `metrics.jsonl`,
//! checkpoints and exact resume.
//!
//! # Run folder
//! ```text
//! RUN/metrics.jsonl        one line per step ({step, epoch, loss, lr, tokens_per_s}), plus
//!                          {step, val_loss, val_perplexity} at each validation
//! RUN/adapter/             the final adapter in PEFT's layout (peft.rs)
//! RUN/checkpoint/          adapter + optimizer.safetensors + state.json, every
//!                          `checkpoint-every` steps and at the end
//! RUN/report.json          parameter counts, validation loss before/after, speed
//! ```
//! Determinism: the adapter initialisation draws from ChaCha8(seed); epoch `e`'s window order
//! from ChaCha8(seed + 1 + e); step `s`'s dropout masks from ChaCha8(seed ⊕ mix(s)). A resumed
//! run therefore sees the same windows and masks as an uninterrupted one, and its adapter is
//! bit-identical.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use lepton_train::{Adam, Optimizer, OptimizerSpec, Schedule, Sgd};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::FinetuneFile;
use crate::data::{Example, Splits};
use crate::decoder::Decoder;
use crate::error::{CandleContext, Error, Result};
use crate::lora::LoraPair;
use crate::peft;

/// What a run measured, written to `report.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub trainable_params: usize,
    pub total_params: usize,
    pub steps: u64,
    pub train_windows: usize,
    pub val_windows: usize,
    pub val_loss_before: f64,
    pub val_loss_after: f64,
    pub val_perplexity_after: f64,
    /// Training tokens (all window positions) per second of training steps.
    pub tokens_per_s: f64,
    /// How the frozen base ran (`f32` or `quantized`).
    #[serde(default)]
    pub base_precision: crate::weight::BasePrecision,
}

/// The checkpoint's `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    step: u64,
    val_loss_before: f64,
    train_seconds: f64,
}

/// Attach fresh adapters (A from ChaCha8(seed), B = 0) to `targets` of every layer.
pub fn attach(decoder: &mut Decoder, file: &FinetuneFile) -> Result<()> {
    let f = &file.finetune;
    for t in &f.targets {
        Decoder::check_target(t)?;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(f.seed);
    for layer in &mut decoder.layers {
        for t in &f.targets {
            let lin = layer.module_mut(t).expect("checked target");
            lin.lora = Some(LoraPair::init(
                &mut rng,
                f.lora_r,
                lin.in_features(),
                lin.out_features(),
                f.lora_alpha,
                f.lora_dropout,
            )?);
        }
    }
    Ok(())
}

fn batch_tensors(batch: &[&Example]) -> Result<(Tensor, Vec<u32>, Vec<bool>)> {
    let t = batch[0].tokens.len();
    let mut ids: Vec<u32> = Vec::with_capacity(batch.len() * t);
    let (mut targets, mut mask) = (Vec::new(), Vec::new());
    for ex in batch {
        ids.extend(&ex.tokens);
        // Position p predicts p + 1; the last position has no target.
        targets.extend(ex.tokens[1..].iter().copied().chain([0]));
        mask.extend(ex.mask.iter().copied().chain([false]));
    }
    let ids = Tensor::from_vec(ids, (batch.len(), t), &Device::Cpu).ctx("building a batch")?;
    Ok((ids, targets, mask))
}

/// Mean loss per trained position over `windows` (batches of `batch`), no gradients.
pub fn evaluate(decoder: &Decoder, windows: &[Example], batch: usize) -> Result<f64> {
    let (mut sum, mut count) = (0f64, 0usize);
    for chunk in windows.chunks(batch.max(1)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let (ids, targets, mask) = batch_tensors(&refs)?;
        let n = mask.iter().filter(|m| **m).count();
        if n == 0 {
            continue;
        }
        let loss = decoder
            .loss(&ids, &targets, &mask, None)?
            .to_scalar::<f32>()
            .ctx("reading the validation loss")?;
        sum += loss as f64 * n as f64;
        count += n;
    }
    Ok(if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    })
}

fn named_params(decoder: &Decoder) -> Vec<(String, candle_core::Var)> {
    let mut out = Vec::new();
    for (layer, module, pair) in decoder.adapters() {
        out.push((peft::key(layer, module, "A"), pair.a.clone()));
        out.push((peft::key(layer, module, "B"), pair.b.clone()));
    }
    out
}

fn optimizer(
    spec: &OptimizerSpec,
    params: Vec<(String, candle_core::Var)>,
) -> (Box<dyn Optimizer>, f64) {
    match spec {
        OptimizerSpec::Sgd(c) => (Box::new(Sgd::new(params, c.clone())), c.lr),
        OptimizerSpec::Adam(c) => (Box::new(Adam::new(params, c.clone(), false)), c.lr),
        OptimizerSpec::AdamW(c) => (Box::new(Adam::new(params, c.clone(), true)), c.lr),
    }
}

/// The order of epoch `epoch`'s training windows.
fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            seed.wrapping_add(1).wrapping_add(epoch),
        ));
    }
    order
}

fn append(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut f = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(Error::io("opening", path))?;
    writeln!(f, "{value}").map_err(Error::io("writing", path))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        op: "writing",
        path: path.into(),
        source,
    })?;
    fs_err::write(path, text).map_err(Error::io("writing", path))
}

/// Paths inside a run folder.
pub struct RunPaths {
    pub root: PathBuf,
}

impl RunPaths {
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    pub fn adapter(&self) -> PathBuf {
        self.root.join("adapter")
    }
    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint")
    }
    pub fn report(&self) -> PathBuf {
        self.root.join("report.json")
    }
}

/// lepton-quant's team sharing rayon's threads while it lives: one set of threads for the whole
/// step instead of the team's spinning workers beside rayon's (on 2 cores they took turns:
/// 24 % of a quantized step's profile waited or spun in the team).
struct SharedTeam;

impl SharedTeam {
    fn start() -> Self {
        lepton_quant::pool::share_rayon_threads(true);
        SharedTeam
    }
}

impl Drop for SharedTeam {
    fn drop(&mut self) {
        lepton_quant::pool::share_rayon_threads(false);
    }
}

/// Train `decoder` (adapters already attached, or loaded from the checkpoint when `resume`) on
/// `splits`, writing the run folder `out`. `base_name` goes into `adapter_config.json`.
pub fn train(
    decoder: &mut Decoder,
    splits: &Splits,
    file: &FinetuneFile,
    out: &Path,
    base_name: &str,
    resume: bool,
) -> Result<Report> {
    let f = &file.finetune;
    if splits.train.is_empty() {
        return Err(Error::Dataset {
            path: f.data.clone(),
            message: "no training window".into(),
        });
    }
    // The quantized base's matmuls run their parts on rayon's threads, as everything else in
    // the step does, for as long as this run trains (see `lepton_quant::pool`).
    let _team = SharedTeam::start();
    let run = RunPaths { root: out.into() };
    fs_err::create_dir_all(out).map_err(Error::io("creating the run folder", out))?;
    let steps_per_epoch = splits.train.len().div_ceil(f.batch_size) as u64;
    let total = match (f.steps, f.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) => e * steps_per_epoch,
        (None, None) => steps_per_epoch,
    };
    let (mut opt, base_lr) = optimizer(&file.optimizer, named_params(decoder));
    let schedule = Schedule::new(&file.schedule, base_lr, total, steps_per_epoch);

    let (mut step, val_before, mut train_seconds) = if resume
        && run.checkpoint().join("state.json").exists()
    {
        let ck = run.checkpoint();
        let adapter = peft::Adapter::load(&ck)?;
        adapter.apply(decoder)?;
        // The optimizer holds the variables it was built with: rebuild it on the loaded ones.
        let (o, _) = optimizer(&file.optimizer, named_params(decoder));
        opt = o;
        let opath = ck.join("optimizer.safetensors");
        let state = candle_core::safetensors::load(&opath, &Device::Cpu)
            .ctx(&format!("reading {}", opath.display()))?;
        opt.load_state(&state)?;
        let spath = ck.join("state.json");
        let text = fs_err::read_to_string(&spath).map_err(Error::io("reading", &spath))?;
        let s: State = serde_json::from_str(&text).map_err(|source| Error::Json {
            op: "reading",
            path: spath.clone(),
            source,
        })?;
        if s.step > total {
            return Err(Error::Dataset {
                path: spath,
                message: format!(
                    "checkpoint at step {} is past the run's {total} steps",
                    s.step
                ),
            });
        }
        (s.step, s.val_loss_before, s.train_seconds)
    } else {
        if run.metrics().exists() {
            fs_err::remove_file(run.metrics()).map_err(Error::io("replacing", run.metrics()))?;
        }
        let v = evaluate(decoder, &splits.val, f.batch_size)?;
        append(
            &run.metrics(),
            &serde_json::json!({"step": 0, "val_loss": v, "val_perplexity": v.exp()}),
        )?;
        (0, v, 0.0)
    };

    // q/k/v and gate/up stacked once for the whole run (see `step::Plan`).
    let plan = crate::step::Plan::new(decoder)?;
    let t_len = splits.train[0].tokens.len();
    let mut order = epoch_order(
        splits.train.len(),
        f.seed,
        step / steps_per_epoch,
        f.shuffle,
    );
    let mut last_val = val_before;
    // The step `last_val` was measured at (a run resumed from its final checkpoint trains no
    // step and validates the loaded adapter below).
    let mut last_val_step = if step == 0 { 0 } else { u64::MAX };
    while step < total {
        let epoch = step / steps_per_epoch;
        let within = (step % steps_per_epoch) as usize;
        if within == 0 {
            order = epoch_order(splits.train.len(), f.seed, epoch, f.shuffle);
        }
        let idx = &order[within * f.batch_size..((within + 1) * f.batch_size).min(order.len())];
        let batch: Vec<&Example> = idx.iter().map(|&i| &splits.train[i]).collect();
        let (ids, targets, mask) = batch_tensors(&batch)?;
        let t0 = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(f.seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (loss_v, grads) =
            crate::step::loss_and_grads(decoder, &plan, &ids, &targets, &mask, &mut rng)?;
        let scale = match f.max_grad_norm {
            Some(max) => {
                let mut sq = 0f64;
                for (_, v) in named_params(decoder) {
                    if let Some(g) = grads.get(v.as_tensor()) {
                        sq += g
                            .sqr()
                            .and_then(|s| s.sum_all())
                            .and_then(|s| s.to_scalar::<f32>())
                            .ctx("gradient norm")? as f64;
                    }
                }
                let norm = sq.sqrt();
                if norm > max {
                    (max / (norm + 1e-6)) as f32
                } else {
                    1.0
                }
            }
            None => 1.0,
        };
        let lr = schedule.lr(step);
        opt.step(&grads, lr, scale)?;
        let dt = t0.elapsed().as_secs_f64();
        train_seconds += dt;
        step += 1;
        append(
            &run.metrics(),
            &serde_json::json!({
                "step": step, "epoch": epoch, "loss": loss_v, "lr": lr,
                "tokens_per_s": (batch.len() * t_len) as f64 / dt,
            }),
        )?;
        let eval_now = step == total || f.eval_every.is_some_and(|e| step % e == 0);
        if eval_now {
            last_val = evaluate(decoder, &splits.val, f.batch_size)?;
            last_val_step = step;
            append(
                &run.metrics(),
                &serde_json::json!({"step": step, "val_loss": last_val, "val_perplexity": last_val.exp()}),
            )?;
        }
        if step == total || f.checkpoint_every.is_some_and(|c| step % c == 0) {
            let ck = run.checkpoint();
            peft::save(&ck, decoder, f.lora_alpha, f.lora_dropout, base_name)?;
            let state: std::collections::HashMap<String, Tensor> =
                opt.state()?.into_iter().collect();
            let opath = ck.join("optimizer.safetensors");
            candle_core::safetensors::save(&state, &opath)
                .ctx(&format!("writing {}", opath.display()))?;
            write_json(
                &ck.join("state.json"),
                &State {
                    step,
                    val_loss_before: val_before,
                    train_seconds,
                },
            )?;
        }
    }
    if last_val_step != total {
        last_val = evaluate(decoder, &splits.val, f.batch_size)?;
    }
    peft::save(
        &run.adapter(),
        decoder,
        f.lora_alpha,
        f.lora_dropout,
        base_name,
    )?;
    let (trainable, all) = decoder.parameter_counts();
    let report = Report {
        trainable_params: trainable,
        total_params: all,
        steps: total,
        train_windows: splits.train.len(),
        val_windows: splits.val.len(),
        val_loss_before: val_before,
        val_loss_after: last_val,
        val_perplexity_after: last_val.exp(),
        tokens_per_s: (total as f64 * (f.batch_size * t_len) as f64) / train_seconds.max(1e-9),
        base_precision: f.base_precision,
    };
    write_json(&run.report(), &report)?;
    Ok(report)
}

/// Load the base and the data of `file` and train: what `lepton finetune` runs.
pub fn finetune(file: &FinetuneFile, out: &Path, resume: bool) -> Result<Report> {
    file.validate()?;
    let f = &file.finetune;
    let base = crate::base::Base::load_with(&f.base, f.base_precision)?;
    let splits = crate::data::load_splits(&base, f)?;
    let mut decoder = base.decoder;
    attach(&mut decoder, file)?;
    train(
        &mut decoder,
        &splits,
        file,
        out,
        &base.path.display().to_string(),
        resume,
    )
}
