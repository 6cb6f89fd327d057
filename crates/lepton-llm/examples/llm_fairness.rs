//! Issue 12, acceptance 4: with four maximum-length streams running (`max_tokens` = the rest of
//! the context, so together they ask for the whole default KV budget of 32768 positions), how long
//! a new short request waits for its first token. Repeats the short request `REPEATS` times while
//! the streams run and prints one JSON object (times in seconds; median and worst).
//!
//!     cargo run --release -p lepton-llm --example llm_fairness -- MODEL.gguf [REPEATS]

use std::sync::Arc;
use std::time::{Duration, Instant};

use lepton_llm::{
    Engine, EngineConfig, GenerationEvent, GenerationRequest, SamplingParams, TextModel,
};

fn chat(q: &str) -> String {
    format!("<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n")
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: llm_fairness MODEL.gguf [REPEATS]"))?;
    let repeats: usize = args.get(2).map_or(Ok(5), |s| s.parse())?;
    let model = Arc::new(TextModel::load(path)?);
    let context = model.context_length();
    let config = EngineConfig::default().with_max_tokens_limit(context);
    let kv_budget = config.kv_cache_tokens;
    let engine = Engine::new(model.clone(), config)?;
    let prompt = chat("Tell me a very long story about a lighthouse keeper and the sea.");
    let max_tokens = context - model.tokenize(&prompt)?.len();
    let long: Vec<_> = (0..4u64)
        .map(|i| {
            let params = SamplingParams {
                temperature: 0.8,
                seed: Some(i),
                max_tokens,
                ..SamplingParams::default()
            };
            engine.submit(GenerationRequest::new(prompt.clone(), params))
        })
        .collect::<Result<_, _>>()?;
    for rx in &long {
        match rx.recv()? {
            GenerationEvent::Token { .. } => {}
            other => anyhow::bail!("a long stream did not start: {other:?}"),
        }
    }
    // Keep the long streams' receivers drained in the background.
    let drains: Vec<_> = long
        .into_iter()
        .map(|rx| std::thread::spawn(move || rx.iter().count()))
        .collect();
    let mut waits = Vec::new();
    for i in 0..repeats {
        let started = Instant::now();
        let rx = engine.submit(GenerationRequest::new(
            chat(&format!("Say hello number {i}.")),
            SamplingParams::greedy(8),
        ))?;
        let first = rx.recv()?;
        waits.push(started.elapsed());
        anyhow::ensure!(
            matches!(first, GenerationEvent::Token { .. }),
            "short request failed: {first:?}"
        );
        for _ in rx.iter() {}
    }
    let st = engine.stats();
    drop(engine);
    for d in drains {
        let _ = d.join();
    }
    waits.sort();
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "{{\"long_streams\": 4, \"long_max_tokens\": {max_tokens}, \"kv_budget\": {kv_budget}, \
         \"short_requests\": {repeats}, \"first_token_median_s\": {:.3}, \"first_token_max_s\": {:.3}, \
         \"active_sequences\": {}, \"kv_tokens_reserved\": {}, \"preempted\": {}}}",
        secs(waits[waits.len() / 2]),
        secs(*waits.last().expect("at least one repeat")),
        st.active_sequences,
        st.kv_cache_tokens_used,
        st.requests_preempted,
    );
    Ok(())
}
