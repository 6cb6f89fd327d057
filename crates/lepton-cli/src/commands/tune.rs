//! `lepton tune SPEC --space space.toml`: hyper-parameter search with trials as `lepton train`
//! processes of this same binary.

use anyhow::Context;
use lepton_tune::{SchedulerKind, TuneConfig};

use crate::cli::{TuneArgs, TuneScheduler};
use crate::output::{print_json, Mode};

pub fn run(args: TuneArgs, mode: Mode, threads: Option<usize>) -> anyhow::Result<()> {
    let program = std::env::current_exe().context("locating the lepton executable")?;
    let mut cfg = TuneConfig::new(&args.spec, &args.space, &args.dir, &program);
    cfg.trials = args.trials;
    cfg.parallel = args.parallel;
    cfg.seed = args.seed;
    cfg.eta = args.eta;
    cfg.min_epochs = args.min_epochs;
    if let Some(t) = threads {
        cfg.cores = t;
    }
    cfg.scheduler = match args.scheduler {
        TuneScheduler::Random => SchedulerKind::Random,
        TuneScheduler::Grid => SchedulerKind::Grid,
        TuneScheduler::Tpe => SchedulerKind::Tpe,
        TuneScheduler::Asha => SchedulerKind::Asha,
        TuneScheduler::Hyperband => SchedulerKind::Hyperband,
        TuneScheduler::TpeAsha => SchedulerKind::TpeAsha,
    };
    if mode == Mode::Human {
        eprintln!(
            "tuning {} over {}: {} trials, {} at once -> {}",
            args.spec.display(),
            args.space.display(),
            args.trials,
            args.parallel,
            args.dir.display()
        );
    }
    let summary =
        lepton_tune::tune(&cfg).with_context(|| format!("tuning {}", args.spec.display()))?;
    lepton_tune::report::write(&summary)?;
    match mode {
        Mode::Json => print_json(&serde_json::to_value(&summary)?),
        Mode::Quiet => Ok(()),
        Mode::Human => {
            print!("{}", lepton_tune::report::table(&summary));
            if summary.best.is_some() {
                println!("best spec  {}", summary.dir.join("best.toml").display());
            }
            println!("curves     {}", summary.dir.join("curves.png").display());
            Ok(())
        }
    }
}
