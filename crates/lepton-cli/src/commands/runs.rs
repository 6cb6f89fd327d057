//! `lepton runs list|show|compare|export`: tables over run directories (lepton-track).

use std::path::Path;

use anyhow::Context;
use lepton_track::{ListQuery, Run, RunDetail, RunsDir, SortKey, Status};

use crate::cli::{RunsCommand, RunsCompareArgs, RunsExportArgs, RunsListArgs};
use crate::output::{print_json, Mode};

pub fn run(cmd: RunsCommand, mode: Mode) -> anyhow::Result<()> {
    match cmd {
        RunsCommand::List(args) => list(args, mode),
        RunsCommand::Show(args) => {
            let detail = RunDetail::new(read_run(&args.run)?);
            match mode {
                Mode::Json => print_json(&detail),
                _ => {
                    print!("{}", detail.render());
                    Ok(())
                }
            }
        }
        RunsCommand::Compare(args) => compare(args, mode),
        RunsCommand::Export(args) => export(args, mode),
    }
}

/// Read one run given its directory, warnings on stderr.
fn read_run(path: &Path) -> anyhow::Result<Run> {
    let dir = RunsDir::open(path).with_context(|| format!("opening run {}", path.display()))?;
    let mut run = dir
        .read(".")
        .with_context(|| format!("reading run {}", path.display()))?;
    // Name the run as the user did (compare labels runs by id when their names repeat).
    run.info.id = path.display().to_string();
    Ok(run)
}

fn list(args: RunsListArgs, mode: Mode) -> anyhow::Result<()> {
    let query = ListQuery {
        sort: args.sort.parse::<SortKey>().map_err(anyhow::Error::msg)?,
        reverse: args.reverse,
        filter: args.filter,
        status: args.status.as_deref().map(parse_status).transpose()?,
        kind: args.kind,
    };
    let dir = RunsDir::open(&args.runs_dir)
        .with_context(|| format!("opening runs directory {}", args.runs_dir.display()))?;
    let (mut runs, warnings) = dir.list();
    for w in warnings.iter().chain(runs.iter().flat_map(|r| &r.warnings)) {
        tracing::warn!("{w}");
    }
    query.apply(&mut runs);
    match mode {
        Mode::Json => print_json(&runs),
        Mode::Quiet => Ok(()),
        Mode::Human => {
            if runs.is_empty() {
                eprintln!("no runs in {}", args.runs_dir.display());
            } else {
                print!("{}", lepton_track::list::render(&runs));
            }
            Ok(())
        }
    }
}

fn parse_status(s: &str) -> anyhow::Result<Status> {
    match s {
        "running" => Ok(Status::Running),
        "done" => Ok(Status::Done),
        "failed" => Ok(Status::Failed),
        _ => anyhow::bail!("--status {s:?}: expected running, done or failed"),
    }
}

fn compare(args: RunsCompareArgs, mode: Mode) -> anyhow::Result<()> {
    let runs = args
        .runs
        .iter()
        .map(|p| read_run(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for w in runs.iter().flat_map(|r| &r.info.warnings) {
        tracing::warn!("{w}");
    }
    let c = lepton_track::compare(&runs);
    match mode {
        Mode::Json => print_json(&c),
        _ => {
            print!("{}", c.render());
            Ok(())
        }
    }
}

fn export(args: RunsExportArgs, mode: Mode) -> anyhow::Result<()> {
    anyhow::ensure!(args.tensorboard, "choose an export format: --tensorboard");
    let run = read_run(&args.run)?;
    for w in &run.info.warnings {
        tracing::warn!("{w}");
    }
    let out = args.output.unwrap_or_else(|| args.run.join("tensorboard"));
    let (path, n) = lepton_track::tfevents::export(&run, &out)
        .with_context(|| format!("exporting {} to TensorBoard", args.run.display()))?;
    match mode {
        Mode::Json => print_json(&serde_json::json!({"file": path, "scalars": n})),
        Mode::Quiet => Ok(()),
        Mode::Human => {
            println!("{n} scalars -> {}", path.display());
            println!("view: tensorboard --logdir {}", out.display());
            Ok(())
        }
    }
}
