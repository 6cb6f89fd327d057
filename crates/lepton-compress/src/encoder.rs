//! Dynamic int8 for Hugging Face encoder folders (BERT, e.g. all-MiniLM-L6-v2), gated by the
//! agreement of the int8 embeddings with the f32 ones.
//!
//! [`compress_encoder`] writes the int8 folder ([`lepton_llm::int8_encoder`]: every encoder
//! Linear layer as per-output-channel int8 codes + f32 scales, embeddings and LayerNorms f32) into
//! a temporary directory beside the output, embeds the gate sentences with both models, and
//! renames the directory into place only when the mean cosine of the pairs of embeddings is at
//! least [`CompressConfig::min_cosine`] (or with `force`). A refused or failed compression leaves
//! nothing behind.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lepton_llm::int8_encoder::{write_int8_encoder, Marker, MARKER_FILE};
use lepton_llm::{cosine, Embedder};
use serde::Serialize;

use crate::config::CompressConfig;
use crate::error::{Error, Result};
use crate::quantize::Quantize;

/// Most gate sentences (each is embedded twice).
pub const MAX_GATE_SENTENCES: usize = 100_000;

/// Gate sentences when none are given: short everyday sentences of varied length and topic.
pub const DEFAULT_SENTENCES: [&str; 24] = [
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "The new movie is awesome.",
    "The cat sits outside.",
    "The quick brown fox jumps over the lazy dog.",
    "Two children are playing in the garden after school.",
    "How do I reset my password?",
    "The stock market fell sharply on Monday morning.",
    "She plays the violin in the city orchestra.",
    "Rain is expected in the north later this week.",
    "The recipe needs two eggs, flour and a cup of milk.",
    "Neural networks learn representations from data.",
    "Where is the nearest train station?",
    "The committee approved the new budget after a long debate.",
    "A dog runs along the beach chasing a ball.",
    "Please send me the report by Friday.",
    "The museum opens at nine and closes at six.",
    "He fixed the bicycle with an old wrench.",
    "Quantum computers may break some of today's encryption.",
    "The old bridge was closed for repairs last summer.",
    "I would like a table for two, please.",
    "The team won the championship in the final minute.",
    "Photosynthesis turns sunlight into chemical energy.",
    "The library has thousands of books about history.",
];

/// What a compression of an encoder folder did.
#[derive(Debug, Clone, Serialize)]
pub struct EncoderReport {
    pub source: PathBuf,
    pub output: PathBuf,
    /// Bytes of the f32 `model.safetensors`.
    pub f32_bytes: u64,
    /// Bytes of the int8 `model.safetensors`.
    pub int8_bytes: u64,
    /// Linear layers stored as int8.
    pub linear_layers: usize,
    /// Gate sentences embedded by both models.
    pub sentences: usize,
    /// Mean and minimum cosine of the int8 embeddings to the f32 ones.
    pub mean_cosine: f64,
    pub min_cosine: f64,
    /// The gate: the least accepted mean cosine.
    pub gate: f64,
    /// Sentences per second of each model on the gate sentences (one pass, after loading).
    pub f32_sentences_per_s: f64,
    pub int8_sentences_per_s: f64,
    pub accepted: bool,
    pub written: bool,
    /// Why the gate refused, when it did.
    pub refusal: Option<String>,
}

impl EncoderReport {
    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mb = |b: u64| b as f64 / 1e6;
        format!(
            "# Dynamic int8: {}\n\n\
             | | f32 | int8 |\n|---|---|---|\n\
             | model.safetensors | {:.2} MB | {:.2} MB ({:.2}x smaller) |\n\
             | sentences/s (gate run) | {:.1} | {:.1} |\n\n\
             {} Linear layers int8; cosine of int8 to f32 embeddings over {} sentences: mean {:.5}, \
             min {:.5} (gate: mean ≥ {}). {}\n",
            self.source.display(),
            mb(self.f32_bytes),
            mb(self.int8_bytes),
            self.f32_bytes as f64 / self.int8_bytes.max(1) as f64,
            self.f32_sentences_per_s,
            self.int8_sentences_per_s,
            self.linear_layers,
            self.sentences,
            self.mean_cosine,
            self.min_cosine,
            self.gate,
            match (&self.refusal, self.written) {
                (None, _) => "Accepted.".to_string(),
                (Some(why), true) => format!("Refused ({why}), written because of --force."),
                (Some(why), false) => format!("Refused: {why}."),
            }
        )
    }
}

/// Whether `path` is a Hugging Face model folder (a directory with `config.json`) rather than a
/// run directory or a `.photon`.
pub fn is_hf_folder(path: &Path) -> bool {
    path.is_dir() && path.join("config.json").is_file() && !path.join("spec.toml").exists()
}

/// Compress the f32 encoder folder `src` to a dynamic-int8 folder `out` (which must not exist),
/// gated on `sentences` (see the module docs). The settings are checked first, then the folder,
/// then the work is done.
pub fn compress_encoder(
    src: &Path,
    out: &Path,
    cfg: &CompressConfig,
    sentences: &[String],
) -> Result<EncoderReport> {
    cfg.validate()?;
    let setting = |field, message: &str| {
        Err(Error::Setting {
            field,
            message: message.to_string(),
        })
    };
    if cfg.prune.is_some() {
        return setting(
            "prune",
            "an encoder folder is only quantized (--quantize dynamic-int8), not pruned",
        );
    }
    if cfg.quantize != Some(Quantize::DynamicInt8) {
        return setting(
            "quantize",
            "an encoder folder takes dynamic-int8 (static int8 calibrates image models)",
        );
    }
    if sentences.is_empty() || sentences.len() > MAX_GATE_SENTENCES {
        return Err(Error::Data {
            what: "gate sentences",
            message: format!(
                "{} sentences, expected 1 to {MAX_GATE_SENTENCES}",
                sentences.len()
            ),
        });
    }
    if out.exists() {
        return Err(Error::Setting {
            field: "output",
            message: format!(
                "{} exists; the int8 folder is written to a new path",
                out.display()
            ),
        });
    }
    let llm = |step: String| {
        move |source| Error::Encoder {
            step,
            source: Box::new(source),
        }
    };
    if Marker::read(src)
        .map_err(llm(format!("reading {}", src.display())))?
        .is_some()
    {
        return Err(Error::Model {
            step: "dynamic int8",
            message: format!(
                "{} is already int8 ({MARKER_FILE}); compress the f32 folder it came from",
                src.display()
            ),
        });
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Removed on drop unless renamed into place: nothing is left by a refusal or a failure.
    let tmp = tempfile::Builder::new()
        .prefix(".lepton-compress-")
        .tempdir_in(&parent)
        .map_err(|source| Error::Io {
            path: parent.clone(),
            source,
        })?;
    let written = write_int8_encoder(src, tmp.path())
        .map_err(llm(format!("writing the int8 folder of {}", src.display())))?;
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let run = |dir: &Path, what: &str| -> Result<(Vec<Vec<f32>>, f64)> {
        let e = Embedder::load(dir).map_err(llm(format!("loading the {what} model")))?;
        let t = Instant::now();
        let v = e.embed(&texts).map_err(llm(format!(
            "embedding the gate sentences with the {what} model"
        )))?;
        Ok((v.vectors, texts.len() as f64 / t.elapsed().as_secs_f64()))
    };
    let (f32v, f32_rate) = run(src, "f32")?;
    let (int8v, int8_rate) = run(tmp.path(), "int8")?;
    let cos: Vec<f64> = f32v
        .iter()
        .zip(&int8v)
        .map(|(a, b)| cosine(a, b) as f64)
        .collect();
    let mean = cos.iter().sum::<f64>() / cos.len() as f64;
    let min = cos.iter().copied().fold(f64::INFINITY, f64::min);
    let accepted = mean >= cfg.min_cosine;
    let refusal = (!accepted).then(|| {
        format!(
            "mean cosine of int8 to f32 embeddings {mean:.5} is below min-cosine {}",
            cfg.min_cosine
        )
    });
    let write = accepted || cfg.force;
    if write {
        fs_err::rename(tmp.path(), out).map_err(|source| Error::Io {
            path: out.to_path_buf(),
            source,
        })?;
    }
    Ok(EncoderReport {
        source: src.to_path_buf(),
        output: out.to_path_buf(),
        f32_bytes: written.source_bytes,
        int8_bytes: written.output_bytes,
        linear_layers: written.linear_layers,
        sentences: sentences.len(),
        mean_cosine: mean,
        min_cosine: min,
        gate: cfg.min_cosine,
        f32_sentences_per_s: f32_rate,
        int8_sentences_per_s: int8_rate,
        accepted,
        written: write,
        refusal,
    })
}
