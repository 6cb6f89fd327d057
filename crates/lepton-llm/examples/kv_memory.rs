//! KV-cache memory of a GGUF model with sliding-window layers kept as rings (the default) against
//! a cache that keeps every position, at several context lengths; with `RUN=N`, also fills both
//! caches with an N-token prompt and checks that the next-token logits are bit-identical.
//!
//!     cargo run --release -p lepton-llm --example kv_memory -- MODEL.gguf [CONTEXT...]

use lepton_llm::llama::{Scratch, Step};
use lepton_llm::TextModel;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 2, "usage: kv_memory MODEL [CONTEXT...]");
    let model = TextModel::load(&args[1])?;
    let llama = model.llama();
    let c = llama.config();
    let local = (0..c.num_layers).filter(|&l| c.arch.is_local(l)).count();
    println!(
        "{}: {} layers ({local} with a window of {:?}), {} KV heads x {}",
        args[1], c.num_layers, c.arch.sliding_window, c.num_kv_heads, c.head_dim
    );
    let contexts: Vec<usize> = if args.len() > 2 {
        args[2..]
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?
    } else {
        vec![2048, 8192, 32768]
    };
    println!("| context | full cache MiB | ring cache MiB | ratio |");
    println!("|---:|---:|---:|---:|");
    for &n in &contexts {
        let (full, ring) = (llama.new_full_cache(n).bytes(), llama.new_cache(n).bytes());
        let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
        println!(
            "| {n} | {:.1} | {:.1} | {:.3} |",
            mib(full),
            mib(ring),
            ring as f64 / full as f64
        );
    }
    if let Ok(run) = std::env::var("RUN") {
        let n: usize = run.parse()?;
        let text = "The history of the Roman Empire spans many centuries. ".repeat(n / 8 + 1);
        let mut ids = model.tokenize(&text)?;
        ids.truncate(n);
        let mut out = Vec::new();
        for mut cache in [llama.new_full_cache(n + 1), llama.new_cache(n + 1)] {
            let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
            let t = std::time::Instant::now();
            llama.forward(
                &mut [Step {
                    tokens: &ids,
                    cache: &mut cache,
                }],
                &mut scratch,
                &mut logits,
            )?;
            println!(
                "{} positions, cache {:.1} MiB, prefill {:.1} s",
                ids.len(),
                cache.bytes() as f64 / (1024.0 * 1024.0),
                t.elapsed().as_secs_f64()
            );
            out.push(logits);
        }
        let same = out[0]
            .iter()
            .zip(&out[1])
            .all(|(a, b)| a.to_bits() == b.to_bits());
        println!("next-token logits bit-identical: {same}");
        anyhow::ensure!(same, "the ring cache changed the logits");
    }
    Ok(())
}
