//! `lepton inspect FILE`: what is inside a photon, with its checksums verified.

use anyhow::Context;
use lepton_photon::Photon;

use crate::cli::InspectArgs;
use crate::output::{print_json, Mode};

pub fn run(args: InspectArgs, mode: Mode) -> anyhow::Result<()> {
    let p = Photon::open(&args.file)?;
    let info = p
        .inspect()
        .with_context(|| format!("reading {}", args.file.display()))?;
    match mode {
        Mode::Json => print_json(&info),
        Mode::Human => {
            print!("{}", info.to_text());
            Ok(())
        }
        Mode::Quiet => Ok(()),
    }
}
