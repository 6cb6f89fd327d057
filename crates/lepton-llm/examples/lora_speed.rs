//! The cost of LoRA adapters in the decoder: prefill of a prompt and greedy decoding, for the base
//! and under adapters (rank 8 on q_proj/v_proj, rank 16 on all seven projections), one sequence
//! alone and four sequences batched (base, two adapters, base). Best of 3 each. Prints one JSON
//! object; `bench/llm/lora_speed.sh` runs it.
//!
//!     cargo run --release -p lepton-llm --example lora_speed -- MODEL.gguf [PROMPT_TOKENS] [DECODE_TOKENS]

use std::collections::BTreeMap;
use std::time::Instant;

use lepton_llm::gguf::LlamaConfig;
use lepton_llm::llama::{Llama, Lora, Scratch, Step};
use lepton_llm::peft::{LoraModule, LoraPair, PeftAdapter, PeftConfig};
use lepton_llm::sampling::argmax;
use lepton_llm::TextModel;

fn adapter(c: &LlamaConfig, modules: &[LoraModule], r: usize, seed: u64) -> anyhow::Result<Lora> {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let mut pairs = BTreeMap::new();
    for layer in 0..c.num_layers {
        for &m in modules {
            let (i, o) = m.features(c);
            let a = (0..r * i).map(|_| next()).collect();
            let b = (0..o * r).map(|_| 0.05 * next()).collect();
            let p = LoraPair {
                a,
                b,
                rank: r,
                in_features: i,
                out_features: o,
            };
            pairs.insert((layer, m), p);
        }
    }
    let peft = PeftAdapter::new(PeftConfig::new(r, 2.0 * r as f32, modules), pairs, c)?;
    Ok(Lora::new(&peft, c)?)
}

/// Seconds for the prefill of `prompts` (batched) and for `n` decode steps after it.
fn time(
    llama: &Llama,
    prompts: &[Vec<u32>],
    loras: &[Option<&Lora>],
    n: usize,
) -> anyhow::Result<(f64, f64)> {
    let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
    let mut best = (f64::MAX, f64::MAX);
    let vocab = llama.config().vocab_size;
    for _ in 0..3 {
        let mut caches: Vec<_> = prompts
            .iter()
            .map(|p| llama.new_cache(p.len() + n))
            .collect();
        let t = Instant::now();
        let mut steps: Vec<Step<'_>> = prompts
            .iter()
            .zip(caches.iter_mut())
            .map(|(p, cache)| Step { tokens: p, cache })
            .collect();
        llama.forward_with(&mut steps, loras, &mut scratch, &mut logits)?;
        let prefill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..n {
            let next: Vec<[u32; 1]> = logits.chunks(vocab).map(|l| [argmax(l)]).collect();
            let mut steps: Vec<Step<'_>> = next
                .iter()
                .zip(caches.iter_mut())
                .map(|(tok, cache)| Step { tokens: tok, cache })
                .collect();
            llama.forward_with(&mut steps, loras, &mut scratch, &mut logits)?;
        }
        best = (best.0.min(prefill), best.1.min(t.elapsed().as_secs_f64()));
    }
    Ok(best)
}

/// A measured case: its name, the prompts batched, each prompt's adapter.
type Case<'a> = (&'a str, &'a [Vec<u32>], Vec<Option<&'a Lora>>);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or_else(|| {
        anyhow::anyhow!("usage: lora_speed MODEL.gguf [PROMPT_TOKENS] [DECODE_TOKENS]")
    })?;
    let n_prompt: usize = args.get(2).map_or(Ok(128), |s| s.parse())?;
    let n_decode: usize = args.get(3).map_or(Ok(64), |s| s.parse())?;
    let model = TextModel::load(path)?;
    let llama = model.llama();
    let c = llama.config();
    let text = "The quick brown fox jumps over the lazy dog while the sun sets behind the hills. "
        .repeat(n_prompt);
    let prompt: Vec<u32> = model.tokenize(&text)?[..n_prompt].to_vec();
    let qv = adapter(c, &[LoraModule::QProj, LoraModule::VProj], 8, 1)?;
    let all = adapter(c, &LoraModule::ALL, 16, 2)?;
    let mut out = serde_json::Map::new();
    out.insert("prompt_tokens".into(), n_prompt.into());
    out.insert("decode_tokens".into(), n_decode.into());
    let one = [prompt.clone()];
    let four = [
        prompt.clone(),
        prompt.clone(),
        prompt.clone(),
        prompt.clone(),
    ];
    let cases: [Case<'_>; 5] = [
        ("base", &one, vec![]),
        ("qv_r8", &one, vec![Some(&qv)]),
        ("all_r16", &one, vec![Some(&all)]),
        ("batch4_base", &four, vec![]),
        (
            "batch4_mixed",
            &four,
            vec![None, Some(&qv), Some(&all), None],
        ),
    ];
    for (name, prompts, loras) in cases {
        let (prefill, decode) = time(llama, prompts, &loras, n_decode)?;
        let rows = prompts.len() as f64;
        out.insert(
            format!("{name}_prefill_tokens_per_s"),
            (rows * n_prompt as f64 / prefill).into(),
        );
        out.insert(
            format!("{name}_decode_tokens_per_s"),
            (rows * n_decode as f64 / decode).into(),
        );
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
