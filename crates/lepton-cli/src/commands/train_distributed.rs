//! `mpirun -np N lepton train SPEC --distributed`: one rank of a data-parallel job.

use crate::cli::TrainArgs;
use crate::output::Mode;

#[cfg(not(feature = "distributed"))]
pub fn run(_: TrainArgs, _: Mode) -> anyhow::Result<()> {
    anyhow::bail!(
        "--distributed needs a lepton built with the `distributed` feature \
         (cargo build --release -p lepton-cli --features distributed; it links MPI)"
    )
}

#[cfg(feature = "distributed")]
pub fn run(args: TrainArgs, mode: Mode) -> anyhow::Result<()> {
    use anyhow::Context;
    use lepton_dist::{DataParallel, MpiComm};
    use lepton_train::{NoopObserver, Observer};

    crate::tuning::for_compute();
    let comm = MpiComm::init().context("starting the MPI rank")?;
    let rank = lepton_dist::Communicator::rank(&comm);
    let world = lepton_dist::Communicator::world(&comm);
    let mut dp = DataParallel::new(comm).with_bucket_bytes(args.bucket_mb << 20);
    if args.overlap {
        dp = dp.with_overlap(args.overlap_segments);
    }
    if let Some(p) = &args.dist_timeline {
        let path =
            std::path::PathBuf::from(p.to_string_lossy().replace("{rank}", &rank.to_string()));
        dp = dp.with_timeline(&path)?;
    }
    // Only rank 0 reports progress; every rank logs its errors.
    let mut progress = crate::progress::Progress::new(mode);
    let observer: &mut dyn Observer = if rank == 0 {
        &mut progress
    } else {
        &mut NoopObserver
    };
    let summary = if let Some(dir) = &args.resume {
        lepton_train::resume_parallel(dir, observer, &mut dp)
            .with_context(|| format!("rank {rank} of {world}: resuming {}", dir.display()))?
    } else {
        let path = args
            .spec
            .as_ref()
            .expect("clap requires SPEC without --resume");
        let spec = super::train::load_spec(path, &args)?;
        let out = args
            .out
            .clone()
            .context("--distributed needs --out: every rank must name the same run directory")?;
        if rank == 0 && mode == Mode::Human {
            eprintln!(
                "training {} on {world} ranks -> {}",
                spec.name,
                out.display()
            );
        }
        lepton_train::train_parallel(&spec, &out, observer, &mut dp)
            .with_context(|| format!("rank {rank} of {world}: training {}", path.display()))?
    };
    match summary {
        Some(s) => super::train::finish(&s, &args, mode),
        None => Ok(()),
    }
}
