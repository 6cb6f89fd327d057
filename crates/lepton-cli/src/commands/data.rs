//! `lepton data inspect PATH`.

use anyhow::Context;

use crate::cli::DataCommand;
use crate::output::{print_json, Mode};

pub fn run(cmd: DataCommand, mode: Mode) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Inspect { path } => {
            let report = lepton_data::inspect(&path)
                .with_context(|| format!("inspecting {}", path.display()))?;
            match mode {
                Mode::Json => print_json(&report)?,
                Mode::Human => print!("{}", report.to_text()),
                Mode::Quiet => {}
            }
            Ok(())
        }
    }
}
