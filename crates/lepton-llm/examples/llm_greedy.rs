//! Greedy continuation of a prompt with any supported GGUF file, printed as JSON (prompt ids,
//! generated ids, text, and each step's two best logits): a quick check of a model against
//! llama.cpp.
//!
//!     cargo run --release -p lepton-llm --example llm_greedy -- MODEL.gguf "The capital of France is" [N=32]

use lepton_llm::llama::{Scratch, Step};
use lepton_llm::sampling::argmax;
use lepton_llm::TextModel;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 3, "usage: llm_greedy MODEL PROMPT [N]");
    let n: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(32);
    let model = TextModel::load(&args[1])?;
    let prompt = model.tokenize(&args[2])?;
    let llama = model.llama();
    let mut cache = llama.new_cache(prompt.len() + n);
    let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
    let (mut out, mut input, mut top2) = (Vec::new(), prompt.clone(), Vec::new());
    for _ in 0..n {
        let mut steps = [Step {
            tokens: &input,
            cache: &mut cache,
        }];
        llama.forward(&mut steps, &mut scratch, &mut logits)?;
        let t = argmax(&logits);
        let second = (0..logits.len())
            .filter(|&i| i != t as usize)
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        top2.push([(t, logits[t as usize]), (second as u32, logits[second])]);
        out.push(t);
        input = vec![t];
    }
    let text = model.detokenize(&out)?;
    println!(
        "{}",
        serde_json::json!({"prompt_ids": prompt, "generated_ids": out, "text": text, "top2": top2})
    );
    Ok(())
}
