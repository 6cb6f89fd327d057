//! `lepton generate MODEL --prompt TEXT`: continue a prompt with a GGUF model or Llama folder,
//! streaming the text; `.photon` files and run directories go to [`super::generate_photon`].

use std::io::Write;

use anyhow::Context;
use lepton_llm::{
    Engine, EngineConfig, GenerationEvent, GenerationRequest, SamplingParams, TextModel,
};
use serde_json::json;

use crate::cli::{GenerateArgs, SamplingArgs};
use crate::output::{print_json, Mode};

pub(super) fn sampling_params(a: &SamplingArgs) -> SamplingParams {
    SamplingParams {
        temperature: a.temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        max_tokens: a.max_tokens,
        seed: a.seed,
        stop: a.stop.clone(),
        repetition_penalty: a.repetition_penalty,
    }
}

pub(super) fn load_engine(path: &std::path::Path) -> anyhow::Result<Engine> {
    let model = TextModel::load(path).with_context(|| format!("loading {}", path.display()))?;
    Ok(Engine::new(
        model,
        EngineConfig::default().with_max_batch(1),
    )?)
}

/// Stream one request's text to stdout; returns the text and the final event.
pub(super) fn stream(
    engine: &Engine,
    request: GenerationRequest,
    echo: bool,
) -> anyhow::Result<(String, GenerationEvent)> {
    let rx = engine.submit(request)?;
    let mut text = String::new();
    let mut stdout = std::io::stdout().lock();
    for event in rx.iter() {
        match event {
            GenerationEvent::Token { text: piece, .. } => {
                if echo {
                    stdout.write_all(piece.as_bytes())?;
                    stdout.flush()?;
                }
                text.push_str(&piece);
            }
            GenerationEvent::Error(e) => anyhow::bail!("generation failed: {e}"),
            done @ GenerationEvent::Done { .. } => return Ok((text, done)),
        }
    }
    anyhow::bail!("the engine stopped before the request finished")
}

pub fn run(args: GenerateArgs, mode: Mode) -> anyhow::Result<()> {
    if let Some(photon) = super::generate_photon::photon_for(&args.model)? {
        return super::generate_photon::run(&photon, &args, mode);
    }
    let engine = load_engine(&args.model)?;
    let request = GenerationRequest::new(args.prompt.clone(), sampling_params(&args.sampling));
    let (text, done) = stream(&engine, request, mode == Mode::Human)?;
    let GenerationEvent::Done {
        finish_reason,
        usage,
        timings,
    } = done
    else {
        unreachable!("stream returns the Done event")
    };
    let decode_secs = (timings.total - timings.time_to_first_token).as_secs_f64();
    let decode_tps = (usage.completion_tokens.saturating_sub(1)) as f64 / decode_secs.max(1e-9);
    match mode {
        Mode::Json => print_json(&json!({
            "text": text,
            "finish_reason": finish_reason.as_str(),
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "time_to_first_token_s": timings.time_to_first_token.as_secs_f64(),
            "decode_tokens_per_s": decode_tps,
        }))?,
        Mode::Human => eprintln!(
            "\n[{} prompt + {} generated tokens, finish: {}, first token after {:.0} ms, {:.1} tokens/s]",
            usage.prompt_tokens,
            usage.completion_tokens,
            finish_reason.as_str(),
            timings.time_to_first_token.as_secs_f64() * 1e3,
            decode_tps
        ),
        Mode::Quiet => {}
    }
    Ok(())
}
