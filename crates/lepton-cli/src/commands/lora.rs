//! `lepton lora merge BASE ADAPTER -o OUT`: the adapter folded into the base, as an HF folder.

use lepton_finetune::merge::write_hf_folder;
use lepton_finetune::peft::Adapter;
use lepton_finetune::Base;

use crate::cli::LoraCommand;
use crate::output::{print_json, Mode};

pub fn run(cmd: LoraCommand, mode: Mode) -> anyhow::Result<()> {
    match cmd {
        LoraCommand::Merge(a) => {
            let adapter = Adapter::load(&a.adapter)?;
            let mut base = Base::load(&a.base)?;
            let mut decoder = base.decoder.clone();
            adapter.apply(&mut decoder)?;
            base.decoder = lepton_finetune::merge::merged(&decoder)?;
            write_hf_folder(&a.out, &base, &base.decoder)?;
            match mode {
                Mode::Json => print_json(&serde_json::json!({
                    "merged": a.out, "adapter": a.adapter, "modules": adapter.pairs.len()
                })),
                Mode::Human => {
                    println!(
                        "merged {} adapted modules into {}",
                        adapter.pairs.len(),
                        a.out.display()
                    );
                    Ok(())
                }
                Mode::Quiet => Ok(()),
            }
        }
    }
}
