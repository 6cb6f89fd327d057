//! `lepton run MODEL [--lora NAME=PATH ...]`: serve one language model (a Hugging Face encoder or
//! Llama folder, or a GGUF decoder) with the OpenAI-compatible API, on the same server as
//! `lepton serve`, with PEFT LoRA adapters that requests pick with `"model": "MODEL:NAME"` or
//! `"NAME"`. Without
//! `--config`, the per-request timeout is 300 s instead of 10 s (whole answers take a while on a
//! small CPU).

use std::path::PathBuf;

use anyhow::Context;

use crate::cli::{RunArgs, ServeArgs};
use crate::commands::serve;

/// The `--lora` adapters, refusing a name given twice.
fn adapters(lora: &[(String, PathBuf)]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    for (i, (name, _)) in lora.iter().enumerate() {
        anyhow::ensure!(
            lora[..i].iter().all(|(n, _)| n != name),
            "--lora {name}: the adapter name is given twice"
        );
    }
    Ok(lora.to_vec())
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    // Language models use every core for one forward pass unless told otherwise.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        let n = rayon::current_num_threads();
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    let name = match &args.name {
        Some(n) => n.clone(),
        None => serve::model_name(&args.model)?,
    };
    anyhow::ensure!(
        args.model.extension().is_none_or(|e| e != "photon"),
        "{}: `lepton run` serves language models; use `lepton serve` for .photon files",
        args.model.display()
    );
    let engine = lepton_llm::EngineConfig::default()
        .with_max_batch(args.max_batch)
        .with_kv_cache_tokens(args.kv_cache_tokens)
        .with_prefix_cache_tokens(args.prefix_cache_tokens)
        .with_queue_capacity(args.queue_capacity)
        .with_max_tokens_limit(args.max_tokens_limit);
    serve::run_with(
        ServeArgs {
            models: Vec::new(),
            config: args.config,
            listen: args.listen,
            insecure: args.insecure,
        },
        vec![(name, args.model)],
        engine,
        // A whole non-streamed answer can take minutes on a small CPU.
        Some(300_000),
        adapters(&args.lora)?,
    )
    .context("lepton run")
}
