//! `lepton embed MODEL TEXT... [--file FILE]`: sentence embeddings, and their cosine
//! similarities when there are several texts.

use anyhow::Context;
use lepton_llm::{cosine, Embedder};
use serde_json::json;

use crate::cli::EmbedArgs;
use crate::output::{print_json, Mode};

pub fn run(args: EmbedArgs, mode: Mode) -> anyhow::Result<()> {
    crate::tuning::for_compute();
    let mut texts = args.texts.clone();
    if let Some(f) = &args.file {
        let body = fs_err::read_to_string(f)?;
        texts.extend(
            body.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    anyhow::ensure!(!texts.is_empty(), "give at least one text (or --file)");
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    let mut embedder =
        Embedder::load(&args.model).with_context(|| format!("loading {}", args.model.display()))?;
    embedder.batch_size = args.batch_size;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..args.repeat.max(1) {
        let started = std::time::Instant::now();
        out = Some(embedder.embed(&refs).context("embedding")?);
        best = best.min(started.elapsed().as_secs_f64());
    }
    let out = out.expect("at least one pass");
    match mode {
        Mode::Json => {
            for (i, (t, v)) in texts.iter().zip(&out.vectors).enumerate() {
                print_json(
                    &json!({"index": i, "text": t, "tokens": out.tokens[i], "embedding": v}),
                )?;
            }
        }
        Mode::Quiet => {}
        Mode::Human => {
            for (i, (t, v)) in texts.iter().zip(&out.vectors).enumerate() {
                let head: Vec<String> = v.iter().take(4).map(|x| format!("{x:+.4}")).collect();
                println!(
                    "[{i}] {t:?}: {} tokens, [{}, ...] ({} dims)",
                    out.tokens[i],
                    head.join(", "),
                    v.len()
                );
            }
            if texts.len() > 1 && texts.len() <= 16 {
                println!("cosine similarity:");
                for i in 0..texts.len() {
                    for j in i + 1..texts.len() {
                        println!(
                            "  [{i}] vs [{j}]: {:.4}",
                            cosine(&out.vectors[i], &out.vectors[j])
                        );
                    }
                }
            }
        }
    }
    if mode != Mode::Quiet {
        eprintln!(
            "embedded {} texts in {:.1} ms ({:.1} texts/s, best of {})",
            texts.len(),
            best * 1e3,
            texts.len() as f64 / best,
            args.repeat.max(1)
        );
    }
    Ok(())
}
