//! `lepton inspect PATH`: what is inside a photon (its checksums verified), a GGUF file or a
//! Hugging Face model folder (read from their headers: `lepton_llm::inspect`).

use std::io::Read;

use anyhow::Context;
use lepton_llm::inspect::ModelSummary;
use lepton_photon::Photon;

use crate::cli::InspectArgs;
use crate::output::{print_json, Mode};

pub fn run(args: InspectArgs, mode: Mode) -> anyhow::Result<()> {
    let path = &args.file;
    if path.is_dir() || is_gguf(path) {
        let summary =
            ModelSummary::read(path).with_context(|| format!("inspecting {}", path.display()))?;
        return match mode {
            Mode::Json => print_json(&summary),
            Mode::Human => {
                print!("{}", summary.to_text());
                Ok(())
            }
            Mode::Quiet => Ok(()),
        };
    }
    let p = Photon::open(path)?;
    let info = p
        .inspect()
        .with_context(|| format!("reading {}", path.display()))?;
    match mode {
        Mode::Json => print_json(&info),
        Mode::Human => {
            print!("{}", info.to_text());
            Ok(())
        }
        Mode::Quiet => Ok(()),
    }
}

/// Whether the file starts with GGUF's magic (anything else goes to the photon reader, whose
/// error names what it expected).
fn is_gguf(path: &std::path::Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF"
}
