//! `lepton inspect` on pretrained models: a GGUF file and a Hugging Face folder (issue 14), read
//! from their headers; a file that is neither is refused by the photon reader, named.

use crate::support::{lepton, model, s};

#[test]
fn inspect_prints_a_gguf_files_architecture_quantization_and_size() {
    let gguf = model("SmolLM2-135M-Instruct.Q4_K_M.gguf");
    let out = lepton(&["inspect", s(&gguf)]).success();
    for want in [
        "format        gguf",
        "architecture  llama",
        "runs here     yes",
        "quantization  Q4_K_M",
        "parameters    134515008 in",
        "context       8192",
        "Q4_K",
    ] {
        assert!(
            out.stdout.contains(want),
            "missing {want:?} in\n{}",
            out.stdout
        );
    }
}

#[test]
fn inspect_json_describes_an_hf_folder() {
    let dir = model("all-MiniLM-L6-v2");
    let v = lepton(&["--json", "inspect", s(&dir)]).success().json();
    assert_eq!(v["format"], "hf");
    assert_eq!(v["architecture"], "bert");
    assert_eq!(v["supported"], true);
    assert_eq!(v["layers"], 6);
    assert_eq!(v["types"][0]["type"], "F32");
    assert_eq!(v["quantization"], "F32");
    assert!(
        v["types"][0]["parameters"].as_u64().unwrap() > 22_000_000,
        "{v}"
    );
}

#[test]
fn inspect_refuses_a_file_that_is_no_model_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "hello").unwrap();
    let out = lepton(&["inspect", s(&junk)]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("notes.txt"), "{}", out.stderr);
}
