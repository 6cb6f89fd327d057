//! `lepton compress` on a Hugging Face encoder folder (issue 16, acceptance 5 and 6): dynamic int8
//! written as a folder `lepton embed` loads unchanged, the cosine gate, and nothing written on a
//! refusal.

use crate::support::{lepton_in, s};
use lepton_llm::testing::write_random_bert;

#[test]
fn an_encoder_folder_compresses_to_int8_that_lepton_embed_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("f32"), dir.path().join("int8"));
    write_random_bert(&src, 9).unwrap();
    let r = lepton_in(
        dir.path(),
        &[
            "--json",
            "compress",
            s(&src),
            "-o",
            s(&out),
            "--quantize",
            "dynamic-int8",
        ],
    )
    .success();
    let j = r.json();
    assert_eq!(j["accepted"], true, "{j}");
    assert!(j["mean_cosine"].as_f64().unwrap() >= 0.995, "{j}");
    assert!(out.join("compress_report.md").is_file());
    let embed = |m: &std::path::Path| {
        lepton_in(
            dir.path(),
            &["--json", "embed", s(m), "the cat sits in the garden"],
        )
        .success()
        .json_lines()[0]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect::<Vec<f32>>()
    };
    let (a, b) = (embed(&src), embed(&out));
    let c = lepton_llm::cosine(&a, &b);
    assert!(c > 0.99 && c < 1.0, "cosine {c}");

    // Compressing the int8 folder again is refused by name and writes nothing.
    let again = dir.path().join("again");
    let r = lepton_in(
        dir.path(),
        &[
            "compress",
            s(&out),
            "-o",
            s(&again),
            "--quantize",
            "dynamic-int8",
        ],
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("already int8"), "{r:?}");
    assert!(!again.exists());
}

#[test]
fn the_encoder_gate_refuses_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("f32"), dir.path().join("int8"));
    write_random_bert(&src, 10).unwrap();
    let sentences = dir.path().join("s.txt");
    std::fs::write(
        &sentences,
        "the cat sits\n\nthe old dog runs in the river\n",
    )
    .unwrap();
    let r = lepton_in(
        dir.path(),
        &[
            "compress",
            s(&src),
            "-o",
            s(&out),
            "--quantize",
            "dynamic-int8",
            "--min-cosine",
            "1",
            "--data",
            s(&sentences),
        ],
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("the gate refused") && r.stderr.contains("min-cosine"),
        "{r:?}"
    );
    assert!(r.stdout.contains("over 2 sentences"), "{r:?}");
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 2, "only f32/ and s.txt remain: {left:?}");
    let r = lepton_in(
        dir.path(),
        &["compress", s(&src), "-o", s(&out), "--quantize", "int8"],
    );
    assert!(
        r.stderr.contains("quantize") && r.stderr.contains("dynamic-int8"),
        "{r:?}"
    );
    assert!(!out.exists());
}
