//! Dynamic-int8 encoder folders (issue 16, acceptance 5 and 6): written from an f32 folder,
//! loaded by the same `Embedder::load`, within quantization error of f32, and every broken part
//! refused by name.

use std::path::Path;

use lepton_llm::int8_encoder::{write_int8_encoder, MARKER_FILE};
use lepton_llm::testing::{random_sentences, write_random_bert};
use lepton_llm::{cosine, Embedder};
use safetensors::{Dtype, SafeTensors};

use crate::model_dir;

fn load_err(dir: &Path) -> String {
    match Embedder::load(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => format!("{:#}", anyhow::Error::from(e)),
    }
}

/// Mean and minimum cosine of the two models' embeddings of `texts`.
fn agreement(a: &Embedder, b: &Embedder, texts: &[String]) -> (f32, f32) {
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (ea, eb) = (a.embed(&texts).unwrap(), b.embed(&texts).unwrap());
    let c: Vec<f32> = ea
        .vectors
        .iter()
        .zip(&eb.vectors)
        .map(|(x, y)| cosine(x, y))
        .collect();
    (
        c.iter().sum::<f32>() / c.len() as f32,
        c.iter().copied().fold(1.0, f32::min),
    )
}

fn tiny_pair() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (src, out) = (tmp.path().join("f32"), tmp.path().join("int8"));
    write_random_bert(&src, 1).unwrap();
    std::fs::create_dir(&out).unwrap();
    write_int8_encoder(&src, &out).unwrap();
    (tmp, src, out)
}

#[test]
fn int8_tiny_bert_loads_and_stays_within_quantization_error_of_f32() {
    let (_tmp, src, out) = tiny_pair();
    let f32m = Embedder::load(&src).unwrap();
    let int8 = Embedder::load(&out).unwrap();
    assert_eq!(f32m.model.precision(), "f32");
    assert_eq!(int8.model.precision(), "int8-dynamic");
    assert!(out.join("tokenizer.json").is_file() && out.join(MARKER_FILE).is_file());
    let (mean, min) = agreement(&f32m, &int8, &random_sentences(64, 2));
    eprintln!("tiny BERT int8: cosine to f32 mean {mean:.5} min {min:.5}");
    assert!(mean >= 0.99 && min >= 0.98, "cosine mean {mean} min {min}");
    // The int8 model is not the f32 one under another name.
    assert!(mean < 1.0 - 1e-7, "int8 output equals f32: {mean}");
    // `lepton serve` loads it unchanged, as an embeddings model.
    let served = lepton_llm::load_language_model(&out, Default::default()).unwrap();
    let v = served.embed(&["the cat sits".to_string()]).unwrap();
    assert_eq!(v.vectors[0].len(), 64);
}

#[test]
fn int8_weights_are_per_channel_codes_with_f32_scales() {
    let (_tmp, src, out) = tiny_pair();
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let w = st.tensor("encoder.layer.1.output.dense.weight").unwrap();
    assert_eq!((w.dtype(), w.shape()), (Dtype::I8, &[64usize, 80][..]));
    let s = st
        .tensor("encoder.layer.1.output.dense.weight_scale")
        .unwrap();
    assert_eq!((s.dtype(), s.shape()), (Dtype::F32, &[64usize][..]));
    let e = st.tensor("embeddings.word_embeddings.weight").unwrap();
    assert_eq!(e.dtype(), Dtype::F32);
    // Each channel's largest code is ±127 and code · scale reproduces the f32 weight to half
    // a step.
    let src_bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let sst = SafeTensors::deserialize(&src_bytes).unwrap();
    let f: Vec<f32> = sst
        .tensor("encoder.layer.1.output.dense.weight")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let scales: Vec<f32> = s
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    for (j, row) in w.data().chunks_exact(80).enumerate() {
        let max = row.iter().map(|&c| (c as i8).unsigned_abs()).max().unwrap();
        assert_eq!(max, 127, "channel {j}");
        for (i, &c) in row.iter().enumerate() {
            let err = (c as i8 as f32 * scales[j] - f[j * 80 + i]).abs();
            assert!(err <= scales[j] / 2.0 + 1e-7, "({j}, {i}): {err}");
        }
    }
    let ratio = src_bytes.len() as f64 / bytes.len() as f64;
    assert!(ratio > 1.5, "int8 file only {ratio:.2}x smaller");
}

#[test]
fn compressing_an_int8_folder_is_refused_and_writes_nothing() {
    let (tmp, _src, out) = tiny_pair();
    let again = tmp.path().join("again");
    std::fs::create_dir(&again).unwrap();
    let e = format!(
        "{:#}",
        anyhow::Error::from(write_int8_encoder(&out, &again).unwrap_err())
    );
    assert!(e.contains("already int8") && e.contains(MARKER_FILE), "{e}");
    assert_eq!(std::fs::read_dir(&again).unwrap().count(), 0);
    // Without the marker, int8 weights are not mistaken for f32 either way.
    std::fs::remove_file(out.join(MARKER_FILE)).unwrap();
    let e = format!(
        "{:#}",
        anyhow::Error::from(write_int8_encoder(&out, &again).unwrap_err())
    );
    assert!(e.contains("is int8") && e.contains(MARKER_FILE), "{e}");
    let e = load_err(&out);
    assert!(e.contains("is int8") && e.contains(MARKER_FILE), "{e}");
}

/// Rewrite `dir/model.safetensors`, passing each tensor through `edit`.
fn rewrite(
    dir: &Path,
    edit: impl Fn(&str, Dtype, Vec<usize>, Vec<u8>) -> (Dtype, Vec<usize>, Vec<u8>),
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let (d, s, b) = edit(&n, v.dtype(), v.shape().to_vec(), v.data().to_vec());
            (n, d, s, b)
        })
        .collect();
    let views: Vec<_> = data
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
}

const SCALE: &str = "encoder.layer.0.intermediate.dense.weight_scale";
const CODES: &str = "encoder.layer.0.intermediate.dense.weight";

#[test]
fn broken_int8_folders_are_refused_by_name() {
    type Edit = fn(&str, Dtype, Vec<usize>, Vec<u8>) -> (Dtype, Vec<usize>, Vec<u8>);
    let cases: [(Edit, &str); 5] = [
        // A scale per input instead of per output channel.
        (
            |n, d, s, b| match n == SCALE {
                true => (d, vec![64], b[..256].to_vec()),
                false => (d, s, b),
            },
            "has shape [64], expected [80]",
        ),
        // Scales stored as F16.
        (
            |n, d, s, b| match n == SCALE {
                true => (Dtype::F16, s, b[..160].to_vec()),
                false => (d, s, b),
            },
            "dtype F16, expected F32",
        ),
        // Codes stored as F32.
        (
            |n, d, s, b| match n == CODES {
                true => (Dtype::F32, s, b.repeat(4)),
                false => (d, s, b),
            },
            "dtype F32, expected I8",
        ),
        // A scale tensor missing.
        (
            |n, d, s, b| match n == SCALE {
                true => (d, vec![1], b[..4].to_vec()),
                false => (d, s, b),
            },
            "has shape [1], expected [80]",
        ),
        // A -128 code.
        (
            |n, d, s, mut b| {
                if n == CODES {
                    b[5] = 0x80;
                }
                (d, s, b)
            },
            "-128",
        ),
    ];
    for (edit, want) in cases {
        let (_tmp, _src, out) = tiny_pair();
        rewrite(&out, edit);
        let e = load_err(&out);
        assert!(e.contains(want), "want {want:?} in: {e}");
        assert!(
            e.contains("model.safetensors"),
            "the error names the file: {e}"
        );
        if want != "-128" {
            assert!(
                e.contains(if want.contains("I8") { CODES } else { SCALE }),
                "{e}"
            );
        }
    }
}

#[test]
fn a_truncated_int8_file_and_a_foreign_marker_are_refused_by_name() {
    let (_tmp, _src, out) = tiny_pair();
    let path = out.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let e = load_err(&out);
    assert!(e.contains("model.safetensors"), "{e}");
    std::fs::write(&path, &bytes).unwrap();
    Embedder::load(&out).expect("restored");
    let marker = out.join(MARKER_FILE);
    let good = std::fs::read_to_string(&marker).unwrap();
    for (text, want) in [
        (
            good.replace("\"version\": 1", "\"version\": 2"),
            "version 2",
        ),
        (
            good.replace("\"dynamic\"", "\"static\""),
            "method \"static\"",
        ),
        (good.replace('{', "{\"extra\": 1,"), "unknown field"),
    ] {
        std::fs::write(&marker, text).unwrap();
        let e = load_err(&out);
        assert!(
            e.contains(want) && e.contains(MARKER_FILE),
            "want {want:?}: {e}"
        );
    }
}

/// all-MiniLM-L6-v2 compressed: ≥ 0.995 mean cosine to f32 on the benchmark's kind of
/// sentences; the file is ≥ 1.5x smaller (the 30522 x 384 f32 word-embedding table, half of
/// the f32 file, stays f32).
#[test]
fn minilm_int8_agrees_with_f32() {
    let src = model_dir("all-MiniLM-L6-v2");
    let tmp = tempfile::tempdir().unwrap();
    let written = write_int8_encoder(&src, tmp.path()).unwrap();
    assert_eq!(written.linear_layers, 36);
    let ratio = written.source_bytes as f64 / written.output_bytes as f64;
    assert!(ratio >= 1.5, "only {ratio:.2}x smaller");
    let (f32m, int8) = (
        Embedder::load(&src).unwrap(),
        Embedder::load(tmp.path()).unwrap(),
    );
    let texts: Vec<String> = [
        "The new movie is awesome",
        "The cat sits outside",
        "A man is playing guitar.",
        "The quick brown fox jumps over the lazy dog near the old river bank.",
        "Quantization keeps embeddings close to their full-precision values.",
        "The busy teacher waits at the station while the young child plays.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mean, min) = agreement(&f32m, &int8, &texts);
    eprintln!(
        "all-MiniLM-L6-v2 int8: {ratio:.2}x smaller, cosine to f32 mean {mean:.5} min {min:.5}"
    );
    assert!(mean >= 0.995 && min >= 0.99, "cosine mean {mean} min {min}");
}
