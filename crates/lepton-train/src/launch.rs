//! The entry points that own a run directory: [`train`], [`resume`] and their data-parallel forms
//! [`train_parallel`], [`resume_parallel`] (rank 0 writes, every rank trains).

use std::path::Path;
use std::time::Instant;

use lepton_data::Prepared;

use crate::distributed::{self, on_rank0, Distributed, Single};
use crate::error::{Error, Result};
use crate::evaluate;
use crate::language_model;
use crate::observer::{Event, Observer};
use crate::run_dir::{LogStart, MetricsLog, RunDir, RunFiles, RunStatus};
use crate::spec::Spec;
use crate::summary::RunSummary;
use crate::trainer::Session;

/// Train `spec` from scratch, writing the run directory `run_dir` (created; it must not hold a
/// checkpoint already: use [`resume`]). Ends with the evaluation of the best model.
///
/// The resolved `spec.toml` is the first file written, before the data is loaded, so a run
/// killed at any later moment can be resumed.
pub fn train(spec: &Spec, run_dir: &Path, observer: &mut dyn Observer) -> Result<RunSummary> {
    let summary = train_parallel(spec, run_dir, observer, &mut Single)?;
    Ok(summary.expect("rank 0 of one returns a summary"))
}

/// Continue the run in `run_dir` from its last checkpoint; the final weights equal those of an
/// uninterrupted run. A run killed before its first checkpoint starts over from its `spec.toml`;
/// a finished run is only re-evaluated. Temp files of a killed writer are removed.
pub fn resume(run_dir: &Path, observer: &mut dyn Observer) -> Result<RunSummary> {
    let summary = resume_parallel(run_dir, observer, &mut Single)?;
    Ok(summary.expect("rank 0 of one returns a summary"))
}

/// [`train`] as one rank of a data-parallel group (see [`crate::distributed`]). Every rank calls
/// it with the same spec and directory; rank 0 writes the run directory and returns the summary,
/// the other ranks return `None`. The rank count must divide the batch size (checked first, on
/// every rank, before anything is written).
pub fn train_parallel(
    spec: &Spec,
    run_dir: &Path,
    observer: &mut dyn Observer,
    dist: &mut dyn Distributed,
) -> Result<Option<RunSummary>> {
    // Again: a caller may have changed the parsed spec (the CLI's `--epochs`, `--seed`).
    spec.validate().map_err(|e| spec.with_line(e))?;
    distributed::check_world(spec, dist.world())?;
    let dir = RunDir::new(run_dir);
    on_rank0(dist, || {
        if dir.checkpoints.state.exists() {
            return Err(Error::checkpoint(
                &dir.checkpoints.state,
                "the run directory already holds a run; resume it or choose another directory",
            ));
        }
        dir.create()?;
        dir.clean_stale_temps()?;
        crate::checkpoint::atomic_write(&dir.spec(), spec.to_toml()?.as_bytes())
    })?;
    start(spec, dir, observer, dist)
}

/// [`resume`] as one rank of a data-parallel group: every rank reads rank 0's checkpoint (the
/// run directory must be visible to all ranks), which must have been written by the same number
/// of ranks.
pub fn resume_parallel(
    run_dir: &Path,
    observer: &mut dyn Observer,
    dist: &mut dyn Distributed,
) -> Result<Option<RunSummary>> {
    let dir = RunDir::new(run_dir);
    let spec_path = dir.spec();
    if !spec_path.exists() {
        return Err(Error::checkpoint(
            &spec_path,
            "not found: this is not a run directory, or its run was killed before it wrote its \
             spec (nothing to resume: train the spec again)",
        ));
    }
    on_rank0(dist, || dir.clean_stale_temps())?;
    let spec = Spec::from_file(&spec_path)?;
    distributed::check_world(&spec, dist.world())?;
    if !dir.checkpoints.state.exists() {
        tracing::info!(run = %run_dir.display(), "no checkpoint yet: starting the run over");
        return start(&spec, dir, observer, dist);
    }
    let started = Instant::now();
    let (state, tensors) = dir.checkpoints.load()?;
    let world = state.world.unwrap_or(1);
    if world != dist.world() {
        return Err(Error::checkpoint(
            &dir.checkpoints.state,
            format!(
                "written by {world} rank(s), resumed with {}: resume with the same rank count \
                 (the per-rank batch and the gradient sums depend on it)",
                dist.world()
            ),
        ));
    }
    let threads = rayon::current_num_threads();
    if state.threads.is_some_and(|t| t != threads) {
        tracing::warn!(
            checkpoint_threads = state.threads,
            threads,
            "resuming with another thread count: parallel reductions may round differently \
             from the uninterrupted run"
        );
    }
    let rank = dist.rank();
    tracked(&dir.clone(), rank, || {
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
        let mut run = on_rank0(dist, || {
            let metrics = MetricsLog::open(&dir.metrics(), log_start)?;
            Ok(RunFiles {
                dir: dir.clone(),
                metrics,
            })
        })?;
        session.fit_parallel(&data, run.as_mut(), observer, dist)?;
        match run {
            Some(run) => finish(&mut session, &data, &run.dir, started, observer).map(Some),
            None => Ok(None),
        }
    })
}

/// A new run in a directory that holds its spec and no checkpoint.
fn start(
    spec: &Spec,
    dir: RunDir,
    observer: &mut dyn Observer,
    dist: &mut dyn Distributed,
) -> Result<Option<RunSummary>> {
    let rank = dist.rank();
    tracked(&dir.clone(), rank, || {
        let started = Instant::now();
        on_rank0(dist, || dir.reset_progress())?;
        let data = lepton_data::prepare(&spec.data, &spec.preprocess, &spec.base_dir, spec.seed)
            .map_err(|e| spec.data_error(e))?;
        let mut session = Session::new(spec, &data)?;
        let mut run = on_rank0(dist, || {
            dir.write_json(&dir.preprocessor(), &data.preprocessor)?;
            dir.write_json(&dir.data_report(), &data.report)?;
            let metrics = MetricsLog::open(&dir.metrics(), LogStart::Empty)?;
            Ok(RunFiles {
                dir: dir.clone(),
                metrics,
            })
        })?;
        session.fit_parallel(&data, run.as_mut(), observer, dist)?;
        match run {
            Some(run) => finish(&mut session, &data, &run.dir, started, observer).map(Some),
            None => Ok(None),
        }
    })
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

/// Runs a started run's `body`, keeping `status.json` (rank 0 only) on what it is doing:
/// `running` from the start, then `done` or `failed` with the error, so a dashboard does not
/// have to guess from file times. Best effort: a status that cannot be written is logged, never
/// an error of the run.
fn tracked(
    dir: &RunDir,
    rank: usize,
    body: impl FnOnce() -> Result<Option<RunSummary>>,
) -> Result<Option<RunSummary>> {
    if rank != 0 {
        return body();
    }
    dir.write_status(RunStatus::Running, None);
    let result = body();
    match &result {
        Ok(_) => dir.write_status(RunStatus::Done, None),
        Err(e) => dir.write_status(RunStatus::Failed, Some(&e.to_string())),
    }
    result
}
