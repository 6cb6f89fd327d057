//! Prefill and decode speed of a GGUF model, single sequence and batched through the engine.
//! Prefill and decode: best of 3; the engine: one client alone (best of 3), then `CLIENTS` at
//! once (best of 3), with the prefix cache (the default config) and again without it
//! (`engine_nocache_*`), and `CLIENTS` at once on new engines (`*_fresh_*`: nothing stored yet, so
//! only the chat template's start is shared). Also the cost of copying the prompt's KV entries (what a prefix-cache hit
//! does instead of prefilling). Prints one JSON object; `bench/llm/speed.sh` runs it beside
//! llama.cpp.
//!
//! With `CLIENTS = 0` only the single-sequence prefill and decode run, and the resident memory after
//! loading is reported beside the file's size (`rss_after_load_bytes`, `file_bytes`).
//!
//!     cargo run --release -p lepton-llm --example llm_speed -- MODEL.gguf [PROMPT_TOKENS] [DECODE_TOKENS] [CLIENTS]

use std::sync::Arc;
use std::time::Instant;

use lepton_llm::llama::{Scratch, Step};
use lepton_llm::sampling::argmax;
use lepton_llm::{
    Engine, EngineConfig, GenerationEvent, GenerationRequest, SamplingParams, TextModel,
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or_else(|| {
        anyhow::anyhow!("usage: llm_speed MODEL.gguf [PROMPT_TOKENS] [DECODE_TOKENS] [CLIENTS]")
    })?;
    let n_prompt: usize = args.get(2).map_or(Ok(200), |s| s.parse())?;
    let n_decode: usize = args.get(3).map_or(Ok(128), |s| s.parse())?;
    let clients: usize = args.get(4).map_or(Ok(8), |s| s.parse())?;
    let model = Arc::new(TextModel::load(path)?);
    let rss_after_load = rss_bytes();
    // A prompt of exactly n_prompt tokens: repeated prose.
    let text = "The quick brown fox jumps over the lazy dog while the sun sets behind the hills. "
        .repeat(n_prompt);
    let prompt: Vec<u32> = model.tokenize(&text)?[..n_prompt].to_vec();
    let llama = model.llama();
    let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
    let mut best_prefill = f64::MAX;
    let mut best_decode = f64::MAX;
    let mut best_copy = f64::MAX;
    for _ in 0..3 {
        let mut cache = llama.new_cache(n_prompt + n_decode);
        let t = Instant::now();
        llama.forward(
            &mut [Step {
                tokens: &prompt,
                cache: &mut cache,
            }],
            &mut scratch,
            &mut logits,
        )?;
        best_prefill = best_prefill.min(t.elapsed().as_secs_f64());
        let mut copy = llama.new_cache(n_prompt + n_decode);
        let t = Instant::now();
        copy.copy_prefix_from(&cache, n_prompt)?;
        best_copy = best_copy.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for _ in 0..n_decode {
            let tok = argmax(&logits);
            llama.forward(
                &mut [Step {
                    tokens: &[tok],
                    cache: &mut cache,
                }],
                &mut scratch,
                &mut logits,
            )?;
        }
        best_decode = best_decode.min(t.elapsed().as_secs_f64());
    }
    if clients == 0 {
        println!(
            "{{\"prompt_tokens\": {n_prompt}, \"decode_tokens\": {n_decode}, \"threads\": {}, \"prefill_tokens_per_s\": {:.1}, \"decode_tokens_per_s\": {:.1}, \"rss_after_load_bytes\": {rss_after_load}, \"weight_bytes\": {}, \"file_bytes\": {}}}",
            rayon::current_num_threads(),
            n_prompt as f64 / best_prefill,
            n_decode as f64 / best_decode,
            llama.weight_bytes(),
            std::fs::metadata(path)?.len(),
        );
        return Ok(());
    }
    // The decoder alone on `clients` sequences at once (the prompt prefilled in each), greedy:
    // what batching buys without the engine around it.
    let mut best_batched = f64::MAX;
    if clients > 1 {
        for _ in 0..2 {
            let mut caches: Vec<_> = (0..clients)
                .map(|_| llama.new_cache(n_prompt + n_decode))
                .collect();
            let mut toks = vec![0u32; clients];
            for (c, t) in caches.iter_mut().zip(toks.iter_mut()) {
                llama.forward(
                    &mut [Step {
                        tokens: &prompt,
                        cache: c,
                    }],
                    &mut scratch,
                    &mut logits,
                )?;
                *t = argmax(&logits);
            }
            let t = Instant::now();
            for _ in 0..n_decode {
                let mut steps: Vec<Step<'_>> = caches
                    .iter_mut()
                    .zip(&toks)
                    .map(|(c, t)| Step {
                        tokens: std::slice::from_ref(t),
                        cache: c,
                    })
                    .collect();
                llama.forward(&mut steps, &mut scratch, &mut logits)?;
                let vocab = logits.len() / clients;
                for (i, t) in toks.iter_mut().enumerate() {
                    *t = argmax(&logits[i * vocab..(i + 1) * vocab]);
                }
            }
            best_batched = best_batched.min(t.elapsed().as_secs_f64());
        }
    }
    let [cached, nocache] = engine_rates(
        &model,
        clients,
        n_decode,
        [
            EngineConfig::default(),
            EngineConfig::default().with_prefix_cache_tokens(0),
        ],
    )?;
    println!(
        "{{\"prompt_tokens\": {n_prompt}, \"decode_tokens\": {n_decode}, \"threads\": {}, \"prefill_tokens_per_s\": {:.1}, \"decode_tokens_per_s\": {:.1}, \"decode_batched_tokens_per_s\": {:.1}, \"prefix_copy_us_per_token\": {:.2}, \"prefill_us_per_token\": {:.1}, \"engine_single_tokens_per_s\": {:.1}, \"engine_clients\": {clients}, \"engine_aggregate_tokens_per_s\": {:.1}, \"batched_equals_alone\": {}, \"engine_aggregate_prompt_tokens\": {}, \"engine_aggregate_prefix_tokens_reused\": {}, \"engine_nocache_single_tokens_per_s\": {:.1}, \"engine_nocache_aggregate_tokens_per_s\": {:.1}, \"nocache_batched_equals_alone\": {}, \"cached_equals_nocache\": {}, \"engine_fresh_aggregate_tokens_per_s\": {:.1}, \"engine_fresh_prefix_tokens_reused\": {}, \"engine_nocache_fresh_aggregate_tokens_per_s\": {:.1}, \"fresh_equals_alone\": {}}}",
        rayon::current_num_threads(),
        n_prompt as f64 / best_prefill,
        n_decode as f64 / best_decode,
        (clients * n_decode) as f64 / best_batched,
        best_copy * 1e6 / n_prompt as f64,
        best_prefill * 1e6 / n_prompt as f64,
        cached.single_tps,
        cached.aggregate_tps,
        cached.same,
        cached.prompt_tokens,
        cached.reused,
        nocache.single_tps,
        nocache.aggregate_tps,
        nocache.same,
        cached.alone == nocache.alone,
        cached.fresh_tps,
        cached.fresh_reused,
        nocache.fresh_tps,
        cached.fresh_same && nocache.fresh_same,
    );
    Ok(())
}

struct EngineRates {
    single_tps: f64,
    aggregate_tps: f64,
    /// Every run's outputs equal the outputs alone.
    same: bool,
    /// Each client's output alone.
    alone: Vec<Vec<u32>>,
    /// Prompt tokens of the timed runs with all clients, and how many came from the prefix cache.
    prompt_tokens: u64,
    reused: u64,
    /// All clients at once on a new engine (nothing stored: only the chat template's start is
    /// shared): best rate of 3, positions reused per run, outputs equal the outputs alone.
    fresh_tps: f64,
    fresh_reused: u64,
    fresh_same: bool,
}

/// Engines: one client alone, then `clients` at once (same seeds), decode tokens/s and equality.
/// The engines' timed runs are interleaved so that the shared machine's drift hits them alike.
fn engine_rates<const N: usize>(
    model: &Arc<TextModel>,
    clients: usize,
    n_decode: usize,
    configs: [EngineConfig; N],
) -> anyhow::Result<[EngineRates; N]> {
    let engines = configs
        .clone()
        .map(|c| Engine::new(model.clone(), c.with_max_batch(clients.max(1))))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let chat = |i: usize| {
        let messages = [lepton_llm::ChatMessage::new(
            "user",
            format!("Tell me a story about the number {i}."),
        )];
        model.apply_chat_template(&messages).unwrap()
    };
    let params = |i: usize| SamplingParams {
        temperature: 0.8,
        top_p: 0.95,
        seed: Some(i as u64),
        max_tokens: n_decode,
        ..Default::default()
    };
    let run = |engine: &Engine, ids: Vec<usize>| -> anyhow::Result<(f64, Vec<Vec<u32>>, usize)> {
        let t = Instant::now();
        let rxs = ids
            .iter()
            .map(|&i| engine.submit(GenerationRequest::new(chat(i), params(i))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut outs = Vec::new();
        let mut total = 0;
        for rx in rxs {
            let mut toks = Vec::new();
            for ev in rx.iter() {
                match ev {
                    GenerationEvent::Token { id, .. } => toks.push(id),
                    GenerationEvent::Done { usage, .. } => total += usage.completion_tokens,
                    GenerationEvent::Error(e) => anyhow::bail!(e),
                }
            }
            outs.push(toks);
        }
        Ok((t.elapsed().as_secs_f64(), outs, total))
    };
    // Rates are the best of 3 runs (the shared machine's CPUs are noisy); every run's outputs
    // must equal the outputs alone.
    let mut rates = Vec::new();
    for engine in &engines {
        let mut alone = Vec::new();
        let mut single_tps = 0f64;
        for i in 0..clients {
            let (secs, out, total) = run(engine, vec![i])?;
            if i == 0 {
                single_tps = total as f64 / secs;
            }
            alone.push(out.into_iter().next().unwrap());
        }
        rates.push(EngineRates {
            single_tps,
            aggregate_tps: 0.0,
            same: true,
            alone,
            prompt_tokens: 0,
            reused: 0,
            fresh_tps: 0.0,
            fresh_reused: 0,
            fresh_same: true,
        });
    }
    for _ in 0..3 {
        for (c, r) in configs.iter().zip(&mut rates) {
            let engine = Engine::new(model.clone(), c.clone().with_max_batch(clients.max(1)))?;
            let (secs, together, total) = run(&engine, (0..clients).collect())?;
            r.fresh_tps = r.fresh_tps.max(total as f64 / secs);
            r.fresh_reused = engine.stats().prefix_tokens_reused;
            r.fresh_same &= r.alone == together;
        }
    }
    for _ in 0..3 {
        for (engine, r) in engines.iter().zip(&mut rates) {
            let (secs, out, total) = run(engine, vec![0])?;
            r.single_tps = r.single_tps.max(total as f64 / secs);
            anyhow::ensure!(
                out[0] == r.alone[0],
                "client 0 gave a different output alone"
            );
            let before = engine.stats();
            let (secs, together, total) = run(engine, (0..clients).collect())?;
            let after = engine.stats();
            r.same &= r.alone == together;
            r.aggregate_tps = r.aggregate_tps.max(total as f64 / secs);
            r.prompt_tokens += after.prompt_tokens_total - before.prompt_tokens_total;
            r.reused += after.prefix_tokens_reused - before.prefix_tokens_reused;
        }
    }
    rates
        .try_into()
        .map_err(|_| anyhow::anyhow!("one result per engine"))
}

/// Resident set size of this process (`VmRSS` in /proc/self/status), 0 where unavailable.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
