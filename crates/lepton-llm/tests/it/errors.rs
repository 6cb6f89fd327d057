//! Broken model folders get errors that name what is wrong.

use std::path::Path;

use lepton_llm::{Embedder, ModelPath};

use crate::model_dir;

fn copy_folder(to: &Path) {
    let from = model_dir("all-MiniLM-L6-v2");
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
    ] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    std::fs::create_dir_all(to.join("1_Pooling")).unwrap();
    std::fs::copy(
        from.join("1_Pooling/config.json"),
        to.join("1_Pooling/config.json"),
    )
    .unwrap();
}

fn err(dir: &Path) -> String {
    match Embedder::load(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => format!("{:#}", anyhow::Error::from(e)),
    }
}

#[test]
fn broken_folders_are_refused_by_name() {
    let tmp = tempdir();
    let d = tmp.path();
    copy_folder(d);
    assert!(Embedder::load(d).is_ok());

    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    assert!(err(d).contains("missing tokenizer.json"), "{}", err(d));

    copy_folder(d);
    let cfg = std::fs::read_to_string(d.join("config.json")).unwrap();
    std::fs::write(d.join("config.json"), cfg.replace("\"bert\"", "\"t5\"")).unwrap();
    assert!(
        err(d).contains("unknown architecture model_type \"t5\""),
        "{}",
        err(d)
    );

    std::fs::write(
        d.join("config.json"),
        cfg.replace("\"num_hidden_layers\": 6", "\"num_hidden_layers\": 7"),
    )
    .unwrap();
    assert!(
        err(d).contains("missing tensor encoder.layer.6."),
        "{}",
        err(d)
    );

    std::fs::write(
        d.join("config.json"),
        cfg.replace("\"intermediate_size\": 1536", "\"intermediate_size\": 1024"),
    )
    .unwrap();
    let e = err(d);
    assert!(
        e.contains(
            "encoder.layer.0.intermediate.dense.weight has shape [1536, 384], expected [1024, 384]"
        ),
        "{e}"
    );

    std::fs::write(d.join("config.json"), "{not json").unwrap();
    assert!(
        err(d).contains("parsing") && err(d).contains("config.json"),
        "{}",
        err(d)
    );

    std::fs::write(d.join("config.json"), &cfg).unwrap();
    std::fs::write(d.join("model.safetensors"), b"tiny").unwrap();
    assert!(err(d).contains("not a safetensors file"), "{}", err(d));

    let e = ModelPath::classify(&d.join("tokenizer.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a model"), "{e}");
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
