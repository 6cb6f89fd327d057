//! Integration tests for lepton-llm. Tests that need a pretrained model read it from
//! `$LEPTON_MODELS` (default `$LEPTON_ASSETS/models`, i.e. `~/.cache/lepton-assets/models`, filled by
//! `scripts/fetch-assets.sh models`) and fail, never skip, when it is missing.

mod admission;
mod archs;
mod crafted;
mod engine;
mod errors;
mod gemma3;
mod hf_llama;
mod inspect;
mod int8_encoder;
mod kquants;
mod lora;
mod minilm;
mod prefix_cache;
mod sliding_window;
mod smollm2;
mod tiny_gguf;
mod unsupported;

use std::path::PathBuf;

/// The folder models are fetched to.
pub fn models_root() -> PathBuf {
    match (
        std::env::var_os("LEPTON_MODELS"),
        std::env::var_os("LEPTON_ASSETS"),
    ) {
        (Some(m), _) => PathBuf::from(m),
        (None, Some(a)) => PathBuf::from(a).join("models"),
        (None, None) => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/lepton-assets/models"),
    }
}

/// The folder or file of a fetched model; panics with the command to fetch it.
pub fn model_dir(name: &str) -> PathBuf {
    let p = models_root().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `scripts/fetch-assets.sh models` (or set LEPTON_MODELS)",
        p.display()
    );
    p
}
