//! Dynamic int8 of Hugging Face encoder folders (issue 16, acceptance 5 and 6): the gate on the
//! cosine of int8 to f32 embeddings, and nothing written on a refused or failed compression.

use std::path::{Path, PathBuf};

use lepton_compress::{
    compress_encoder, is_hf_folder, CompressConfig, Error, Quantize, DEFAULT_SENTENCES,
};
use lepton_llm::testing::{random_sentences, write_random_bert};
use lepton_llm::Embedder;

fn dynamic() -> CompressConfig {
    CompressConfig {
        quantize: Some(Quantize::DynamicInt8),
        ..Default::default()
    }
}

/// The entries of `dir` (to check that nothing, not even a temporary folder, was left).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn tiny() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("f32");
    write_random_bert(&src, 3).unwrap();
    (tmp, src)
}

#[test]
fn a_tiny_bert_folder_is_compressed_gated_and_loads() {
    let (tmp, src) = tiny();
    assert!(is_hf_folder(&src));
    let out = tmp.path().join("int8");
    let r = compress_encoder(&src, &out, &dynamic(), &random_sentences(40, 4)).unwrap();
    assert!(r.accepted && r.written && r.refusal.is_none(), "{r:?}");
    assert_eq!(r.linear_layers, 12);
    assert!(r.mean_cosine >= 0.995 && r.mean_cosine < 1.0, "{r:?}");
    assert!(r.int8_bytes < r.f32_bytes, "{r:?}");
    let e = Embedder::load(&out).unwrap();
    assert_eq!(e.model.precision(), "int8-dynamic");
    assert!(r.to_markdown().contains("Accepted"));
    assert_eq!(entries(tmp.path()), ["f32", "int8"]);
}

#[test]
fn the_gate_refuses_below_min_cosine_and_writes_nothing_unless_forced() {
    let (tmp, src) = tiny();
    let out = tmp.path().join("int8");
    // No int8 model reproduces f32 exactly, so a gate of 1.0 refuses.
    let cfg = CompressConfig {
        min_cosine: 1.0,
        ..dynamic()
    };
    let r = compress_encoder(&src, &out, &cfg, &random_sentences(10, 5)).unwrap();
    assert!(!r.accepted && !r.written, "{r:?}");
    let why = r.refusal.clone().unwrap();
    assert!(why.contains("below min-cosine 1"), "{why}");
    assert!(r.to_markdown().contains("Refused"));
    assert_eq!(entries(tmp.path()), ["f32"]);
    let forced = CompressConfig { force: true, ..cfg };
    let r = compress_encoder(&src, &out, &forced, &random_sentences(10, 5)).unwrap();
    assert!(!r.accepted && r.written, "{r:?}");
    assert!(Embedder::load(&out).is_ok());
}

#[test]
fn compressing_an_int8_folder_is_refused_and_writes_nothing() {
    let (tmp, src) = tiny();
    let out = tmp.path().join("int8");
    compress_encoder(&src, &out, &dynamic(), &random_sentences(5, 6)).unwrap();
    let again = tmp.path().join("again");
    let e = compress_encoder(&out, &again, &dynamic(), &random_sentences(5, 6)).unwrap_err();
    assert!(matches!(e, Error::Model { .. }), "{e:?}");
    assert!(e.to_string().contains("already int8"), "{e}");
    assert_eq!(entries(tmp.path()), ["f32", "int8"]);
}

#[test]
fn a_failed_compression_leaves_nothing_behind() {
    let (tmp, src) = tiny();
    // A weights file cut short fails after the temporary folder exists.
    let w = src.join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    let out = tmp.path().join("int8");
    let e = compress_encoder(&src, &out, &dynamic(), &random_sentences(5, 7)).unwrap_err();
    let msg = format!("{:#}", anyhow::Error::from(e));
    assert!(msg.contains("model.safetensors"), "{msg}");
    assert_eq!(entries(tmp.path()), ["f32"]);
}

#[test]
fn bad_settings_are_named_before_any_work() {
    let (tmp, src) = tiny();
    let out = tmp.path().join("int8");
    let s = random_sentences(3, 8);
    let cases: Vec<(CompressConfig, &str)> = vec![
        (
            CompressConfig {
                prune: Some(0.5),
                ..dynamic()
            },
            "prune",
        ),
        (
            CompressConfig {
                quantize: Some(Quantize::Int8),
                ..dynamic()
            },
            "quantize",
        ),
        (
            CompressConfig {
                min_cosine: 1.5,
                ..dynamic()
            },
            "min-cosine",
        ),
        (
            CompressConfig {
                min_cosine: f64::NAN,
                ..dynamic()
            },
            "min-cosine",
        ),
    ];
    for (cfg, field) in cases {
        let e = compress_encoder(&src, &out, &cfg, &s).unwrap_err();
        assert!(
            matches!(&e, Error::Setting { field: f, .. } if *f == field),
            "{field}: {e:?}"
        );
    }
    let e = compress_encoder(&src, &out, &dynamic(), &[]).unwrap_err();
    assert!(e.to_string().contains("gate sentences"), "{e}");
    let e = compress_encoder(&src, &src, &dynamic(), &s).unwrap_err();
    assert!(e.to_string().starts_with("output:"), "{e}");
    assert_eq!(entries(tmp.path()), ["f32"]);
}

/// all-MiniLM-L6-v2 through the gate with the default sentences. Skips, saying why, without the
/// asset (`scripts/fetch-assets.sh models`).
#[test]
fn minilm_passes_the_default_gate() {
    let root = match (std::env::var_os("LEPTON_MODELS"), std::env::var_os("HOME")) {
        (Some(m), _) => PathBuf::from(m),
        (None, Some(h)) => PathBuf::from(h).join(".cache/lepton-assets/models"),
        (None, None) => return eprintln!("skipped: no LEPTON_MODELS or HOME"),
    };
    let src = root.join("all-MiniLM-L6-v2");
    if !src.join("model.safetensors").is_file() {
        return eprintln!(
            "skipped: {} is missing (run scripts/fetch-assets.sh models)",
            src.display()
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("int8");
    let s: Vec<String> = DEFAULT_SENTENCES.iter().map(|s| s.to_string()).collect();
    let r = compress_encoder(&src, &out, &dynamic(), &s).unwrap();
    eprintln!("{}", r.to_markdown());
    assert!(r.accepted && r.written && r.mean_cosine >= 0.995, "{r:?}");
    assert_eq!(r.linear_layers, 36);
}
