//! Teacher-forced logits of a GGUF model, for comparing with another runtime step by step: the
//! prompt ids in one forward pass, then each forced id one at a time; writes every step's logits
//! as little-endian f32 rows (`steps × vocab`) to OUT.
//!
//!     cargo run --release -p lepton-llm --example llm_logits -- MODEL.gguf IDS.json OUT.f32
//!
//! IDS.json: `{"prompt_ids": [...], "generated_ids": [...]}` (the shape of the greedy goldens'
//! cases); the last generated id is not fed.

use std::io::Write;

use lepton_llm::llama::{Scratch, Step};
use lepton_llm::TextModel;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 4, "usage: llm_logits MODEL IDS.json OUT.f32");
    let model = TextModel::load(&args[1])?;
    let ids: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args[2])?)?;
    let list = |k: &str| -> anyhow::Result<Vec<u32>> {
        let v = ids[k]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("{}: no {k} array", args[2]))?;
        Ok(v.iter().map(|x| x.as_u64().unwrap_or(0) as u32).collect())
    };
    let (prompt, forced) = (list("prompt_ids")?, list("generated_ids")?);
    let llama = model.llama();
    let mut cache = llama.new_cache(prompt.len() + forced.len());
    let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args[3])?);
    let mut input = prompt;
    for &next in &forced {
        let mut steps = [Step {
            tokens: &input,
            cache: &mut cache,
        }];
        llama.forward(&mut steps, &mut scratch, &mut logits)?;
        for v in &logits {
            out.write_all(&v.to_le_bytes())?;
        }
        input = vec![next];
    }
    Ok(())
}
