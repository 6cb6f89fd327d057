//! Logits and greedy continuations of a base with an adapter, for bench/lora's comparisons
//! with PEFT (not a user command).
//!
//! ```text
//! cargo run --release -p lepton-finetune --example lora_logits -- BASE ADAPTER|- TOKENS_JSON OUT_JSON [GREEDY_STEPS]
//! ```
//! TOKENS_JSON is a list of token ids; OUT_JSON gets `{"logits": [[...]...], "greedy": [...],
//! "greedy_merged": [...]}` (all vocabulary logits of every position; greedy continuations of
//! the unmerged and the merged model).

use std::path::Path;

use candle_core::{Device, Tensor};
use lepton_finetune::merge::merged;
use lepton_finetune::peft::Adapter;
use lepton_finetune::{Base, Decoder};

fn greedy(d: &Decoder, prompt: &[u32], steps: usize) -> anyhow::Result<Vec<u32>> {
    let mut ids = prompt.to_vec();
    for _ in 0..steps {
        let t = Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu)?;
        let logits = d.logits(&t, None)?;
        let last = logits.get(ids.len() - 1)?.argmax(0)?.to_scalar::<u32>()?;
        ids.push(last);
    }
    Ok(ids[prompt.len()..].to_vec())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 5,
        "usage: lora_logits BASE ADAPTER|- TOKENS_JSON OUT_JSON [GREEDY_STEPS]"
    );
    let base = Base::load(Path::new(&args[1]))?;
    let mut d = base.decoder;
    if args[2] != "-" {
        Adapter::load(Path::new(&args[2]))?.apply(&mut d)?;
    }
    let tokens: Vec<u32> = serde_json::from_str(&fs_err::read_to_string(&args[3])?)?;
    let steps: usize = args.get(5).map_or(Ok(0), |s| s.parse())?;
    let t = Tensor::from_vec(tokens.clone(), (1, tokens.len()), &Device::Cpu)?;
    let logits = d.logits(&t, None)?.to_vec2::<f32>()?;
    let m = merged(&d)?;
    let merged_logits = m.logits(&t, None)?;
    let unmerged = Tensor::new(logits.clone(), &Device::Cpu)?;
    let diff = (merged_logits - unmerged)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    let out = serde_json::json!({
        "logits": logits,
        "merged_max_abs_diff": diff,
        "greedy": greedy(&d, &tokens, steps)?,
        "greedy_merged": greedy(&m, &tokens, steps)?,
    });
    fs_err::write(&args[4], serde_json::to_string(&out)?)?;
    Ok(())
}
