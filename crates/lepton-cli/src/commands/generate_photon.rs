//! `lepton generate RUN_OR_PHOTON --prompt TEXT`: continue a prompt with a language-model photon
//! (a `.photon` file, or a run directory's `model.photon`), streaming the text as it is made.
//! The same prompt, settings and `--seed` give the same text as the server's
//! `POST /v1/models/{name}/generate` (both run [`lepton_photon::Generator`]).

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use lepton_photon::{GenerateConfig, Generator, Photon};
use serde_json::json;

use crate::cli::GenerateArgs;
use crate::output::{print_json, Mode};

/// The photon `path` names: a `.photon` file, or a run directory (its `model.photon`, exported
/// first when missing). `None` for anything else (GGUF files, Hugging Face folders).
pub fn photon_for(path: &Path) -> anyhow::Result<Option<PathBuf>> {
    if path.extension().is_some_and(|e| e == "photon") {
        return Ok(Some(path.to_path_buf()));
    }
    if path.is_dir()
        && (path.join("model.photon").exists() || lepton_train::RunDir::new(path).spec().exists())
    {
        return Ok(Some(super::eval::photon_path(path)?));
    }
    Ok(None)
}

pub fn run(path: &Path, args: &GenerateArgs, mode: Mode) -> anyhow::Result<()> {
    let s = &args.sampling;
    anyhow::ensure!(
        s.top_p == 1.0,
        "--top-p: not supported by photon language models (use --top-k)"
    );
    anyhow::ensure!(
        s.repetition_penalty == 1.0,
        "--repetition-penalty: not supported by photon language models"
    );
    let seed = s.seed.unwrap_or_else(lepton_photon::random_seed);
    let cfg = GenerateConfig::new(s.max_tokens)
        .with_temperature(s.temperature)
        .with_top_k(s.top_k)
        .with_seed(seed)
        .with_stop(s.stop.clone());
    // Settings are checked before the model is loaded.
    cfg.validate()?;
    let photon = Photon::open(path)?;
    let model = photon
        .model()
        .with_context(|| format!("loading {}", path.display()))?;
    let generator =
        Generator::new(&model).with_context(|| format!("{}: cannot generate", path.display()))?;
    let started = Instant::now();
    let mut first = None;
    let mut stdout = std::io::stdout().lock();
    let mut io_error = None;
    let out = generator.generate(&args.prompt, &cfg, |piece| {
        first.get_or_insert_with(|| started.elapsed());
        if mode == Mode::Human {
            if let Err(e) = stdout
                .write_all(piece.as_bytes())
                .and_then(|()| stdout.flush())
            {
                // A closed pipe (`| head`) ends the generation.
                io_error = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = io_error {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(());
        }
        return Err(e).context("writing to stdout");
    }
    let secs = started.elapsed().as_secs_f64();
    let tps = out.ids.len() as f64 / secs.max(1e-9);
    match mode {
        Mode::Json => print_json(&json!({
            "text": out.text,
            "finish_reason": out.finish.as_str(),
            "prompt_tokens": out.prompt_tokens,
            "completion_tokens": out.ids.len(),
            "seed": seed,
            "time_to_first_token_s": first.map_or(secs, |d| d.as_secs_f64()),
            "tokens_per_s": tps,
        }))?,
        Mode::Human => {
            drop(stdout);
            eprintln!(
                "\n[{} prompt + {} generated tokens, finish: {}, seed {seed}, {tps:.1} tokens/s]",
                out.prompt_tokens,
                out.ids.len(),
                out.finish.as_str(),
            );
        }
        Mode::Quiet => {}
    }
    Ok(())
}
