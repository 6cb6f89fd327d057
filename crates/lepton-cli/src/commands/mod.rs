//! One module per command; `run` dispatches.

mod chat;
mod compress;
mod cv;
mod data;
mod embed;
mod eval;
mod explain;
mod export;
mod finetune;
mod generate;
mod generate_photon;
mod inspect;
mod lora;
mod predict;
mod run;
mod runs;
mod serve;
mod train;
mod train_distributed;
mod tune;
mod ui;

use crate::cli::{Cli, Command};
use crate::output::Mode;

/// Run the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(n) = cli.global.threads {
        set_threads(n)?;
    }
    let mode = Mode::from_args(&cli.global);
    match cli.command {
        Command::Data(cmd) => data::run(cmd, mode),
        Command::Cv(args) => cv::run(args, mode),
        Command::Tune(args) => tune::run(args, mode, cli.global.threads),
        // One rank of a data-parallel job (the `distributed` feature; a clear error without it).
        Command::Train(args) if args.distributed => train_distributed::run(args, mode),
        Command::Train(args) => train::run(args, mode),
        Command::Eval(args) => eval::run(args, mode),
        Command::Predict(args) => predict::run(args, mode),
        Command::Export(args) => export::run(args, mode),
        Command::Compress(args) => compress::run(args, mode),
        Command::Inspect(args) => inspect::run(args, mode),
        Command::Serve(args) => serve::run(args),
        Command::Embed(args) => embed::run(args, mode),
        Command::Run(args) => run::run(args),
        Command::Generate(args) => generate::run(args, mode),
        Command::Chat(args) => chat::run(args),
        Command::Runs(cmd) => runs::run(cmd, mode),
        Command::Ui(args) => ui::run(args),
        Command::Explain(args) => explain::run(args, mode),
        Command::Finetune(args) => finetune::run(args, mode),
        Command::Lora(cmd) => lora::run(cmd, mode),
    }
}

/// Pin the compute thread count (rayon's pool, which candle's CPU kernels also use).
fn set_threads(n: usize) -> anyhow::Result<()> {
    anyhow::ensure!(n > 0, "--threads must be at least 1");
    // candle's gemm reads RAYON_NUM_THREADS; set it before any kernel runs.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .ok();
    Ok(())
}
