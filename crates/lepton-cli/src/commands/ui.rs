//! `lepton ui [RUNS_DIR] [--listen ADDR]`: the run dashboard (lepton-track's server).

use anyhow::Context;
use lepton_track::RunsDir;

use crate::cli::UiArgs;

pub fn run(args: UiArgs) -> anyhow::Result<()> {
    let runs = RunsDir::open(&args.runs_dir)
        .with_context(|| format!("opening runs directory {}", args.runs_dir.display()))?;
    if !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            "the dashboard has no authentication and now listens beyond this machine"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let listener = lepton_track::server::bind(args.listen).await?;
        let addr = listener.local_addr().context("reading the bound address")?;
        eprintln!("dashboard of {} at http://{addr}/", runs.root().display());
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        lepton_track::server::serve_on(runs, listener, shutdown).await?;
        anyhow::Ok(())
    })
}
