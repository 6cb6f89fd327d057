//! Photon round trips and damaged files.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_data::Preprocessor;
use lepton_nn::{LossSpec, Model, ModelSpec};
use lepton_photon::{Error, Limits, Photon, PhotonContents, Prediction};
use rand::{Rng, SeedableRng};

mod explain;
mod text;

fn spec() -> ModelSpec {
    toml::from_str(r#"layers = [{ type = "flatten" }, { type = "linear", out-features = 3 }]"#)
        .unwrap()
}

fn write(path: &Path) -> (Model, HashMap<String, Tensor>) {
    let varmap = VarMap::new();
    let model = Model::new(
        &spec(),
        &[1, 2, 2],
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    lepton_nn::init_seeded(&varmap, 4).unwrap();
    let weights: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let pre = Preprocessor::Image {
        channels: 1,
        height: 2,
        width: 2,
        mean: vec![0.5],
        std: vec![0.25],
        class_names: vec!["a".into(), "b".into(), "c".into()],
    };
    let contents = PhotonContents {
        name: "tiny".into(),
        model: spec(),
        input_shape: vec![1, 2, 2],
        loss: LossSpec::default(),
        preprocessor: pre,
        metrics: serde_json::json!({"accuracy": 0.5}),
    };
    Photon::write(path, &contents, &weights).unwrap();
    (model, weights)
}

#[test]
fn round_trip_predicts_like_the_original_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.photon");
    let (model, _) = write(&path);
    let p = Photon::open(&path).unwrap();
    assert_eq!(p.manifest().name, "tiny");
    let x = Tensor::new(&[[[[0.1f32, -0.4], [1.0, 0.3]]]], &Device::Cpu).unwrap();
    let want = candle_nn::ops::softmax(&model.forward_t(&x, false).unwrap(), 1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let loaded = p.model().unwrap();
    assert_eq!(loaded.predict(&x).unwrap().to_vec2::<f32>().unwrap(), want);
    // Raw pixels go through the stored preprocessor: (p/255 - 0.5) / 0.25.
    let raw: Vec<f32> = [0.1f32, -0.4, 1.0, 0.3]
        .iter()
        .map(|v| (v * 0.25 + 0.5) * 255.0)
        .collect();
    let feats = loaded.preprocessor().raw_features(&raw).unwrap();
    match &loaded.predict_features(&[feats], 2).unwrap()[0] {
        Prediction::Classes { probabilities, top } => {
            for (a, b) in probabilities.iter().zip(&want[0]) {
                assert!((a - b).abs() < 1e-5);
            }
            assert_eq!(top.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    let text = p.inspect().unwrap().to_text();
    assert!(
        text.contains("parameters  15") && text.contains("layers.1.weight"),
        "{text}"
    );
}

#[test]
fn damaged_and_foreign_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.photon");
    write(&path);
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.photon");
    let check = |bytes: &[u8], needle: &str| {
        std::fs::write(&bad, bytes).unwrap();
        let e = Photon::open(&bad)
            .err()
            .unwrap_or_else(|| panic!("accepted a file that should fail with {needle}"));
        let msg = e.to_string();
        assert!(
            msg.contains("bad.photon") && msg.contains(needle),
            "{msg} should mention {needle}"
        );
        e
    };
    check(&good[..good.len() - 10], "truncated");
    check(&good[..30], "truncated");
    let mut w = good.clone();
    let last = w.len() - 5;
    w[last] ^= 1;
    assert!(matches!(
        check(&w, "weights checksum"),
        Error::Checksum {
            section: "weights",
            ..
        }
    ));
    let mut h = good.clone();
    h[60] ^= 1;
    assert!(matches!(
        check(&h, "header checksum"),
        Error::Checksum {
            section: "header",
            ..
        }
    ));
    let mut v = good.clone();
    v[8..12].copy_from_slice(&2u32.to_le_bytes());
    check(&v, "format version 2");
    check(
        b"\x89PNG\r\n\x1a\n0000000000000000000000000000000000000000000000000000",
        "not a photon file",
    );
    check(&[good.clone(), vec![0; 3]].concat(), "unexpected bytes");
    assert!(Photon::open(&dir.path().join("missing.photon"))
        .unwrap_err()
        .to_string()
        .contains("missing.photon"));
}

#[test]
fn random_damage_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.photon");
    write(&path);
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("fuzz.photon");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for _ in 0..300 {
        let mut b = good.clone();
        if rng.random_bool(0.3) {
            b.truncate(rng.random_range(0..good.len()));
        } else {
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
        }
        std::fs::write(&bad, &b).unwrap();
        if let Ok(p) = Photon::open(&bad) {
            // Only flips in the zero padding can leave a valid file, and then it must still work.
            p.model().unwrap();
        }
    }
}

/// Re-sign `good` after `edit` changes its manifest: both checksums are valid again.
fn resign(good: &Photon, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut manifest = serde_json::to_value(good.manifest()).unwrap();
    edit(&mut manifest);
    let header = serde_json::to_vec(&manifest).unwrap();
    lepton_photon::assemble(&header, good.weights())
}

/// Open `bytes` as `resigned.photon`; the error text.
fn refused(bytes: Vec<u8>) -> String {
    match Photon::from_bytes(Path::new("resigned.photon"), bytes, &Limits::default()) {
        Ok(_) => panic!("a photon whose parts disagree was accepted"),
        Err(e) => e.to_string(),
    }
}

/// Regression (issue 12, finding 7): a re-signed photon whose preprocessor makes 60000x60000
/// inputs for a 2x2 model opened fine and `predict` then resized every image to 3.6e9 pixels
/// (a hang, 14 GB). It is refused at open, naming the file and the field, before any model is
/// built.
#[test]
fn resigned_photon_with_a_huge_preprocessor_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.photon");
    write(&path);
    let good = Photon::open(&path).unwrap();
    let e = refused(resign(&good, |m| {
        m["preprocessor"]["height"] = 60000.into();
        m["preprocessor"]["width"] = 60000.into();
    }));
    assert!(
        e.contains("resigned.photon") && e.contains("preprocessor") && e.contains("budget"),
        "{e}"
    );
    // Within the budget but not the model's input: refused by the agreement check.
    let e = refused(resign(&good, |m| {
        m["preprocessor"]["height"] = 28.into();
        m["preprocessor"]["width"] = 28.into();
    }));
    assert!(
        e.contains("preprocessor: makes inputs of shape [1, 28, 28]")
            && e.contains("input_shape [1, 2, 2]"),
        "{e}"
    );
    // The input shape moved along with it: the preprocessor and the input shape agree, and the
    // per-sample budget refuses both before the spec's shape inference multiplies anything.
    let e = refused(resign(&good, |m| {
        m["preprocessor"]["height"] = 60000.into();
        m["preprocessor"]["width"] = 60000.into();
        m["input_shape"] = serde_json::json!([1, 60000, 60000]);
    }));
    assert!(e.contains("input_shape") && e.contains("budget"), "{e}");
    // Written to disk and opened by path, the same refusal.
    let file = dir.path().join("resigned.photon");
    std::fs::write(
        &file,
        resign(&good, |m| m["preprocessor"]["width"] = 60000.into()),
    )
    .unwrap();
    let e = Photon::open(&file).unwrap_err().to_string();
    assert!(
        e.contains("resigned.photon") && e.contains("preprocessor"),
        "{e}"
    );
}

/// Regression (issue 12, finding 7, the class): every part of the manifest that can disagree
/// with another is checked at open, with the field named.
#[test]
fn resigned_photons_whose_parts_disagree_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.photon");
    write(&path);
    let good = Photon::open(&path).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Edit, &str); 9] = [
        // One mean for... zero channels: `pixels_to_features` indexed past the end.
        (
            |m| m["preprocessor"]["mean"] = serde_json::json!([]),
            "preprocessor.mean",
        ),
        (
            |m| m["preprocessor"]["std"] = serde_json::json!([0.0]),
            "preprocessor.std",
        ),
        (
            |m| m["preprocessor"]["channels"] = 2.into(),
            "preprocessor.channels",
        ),
        // Four classes for a model with three outputs.
        (
            |m| m["preprocessor"]["class_names"] = serde_json::json!(["a", "b", "c", "d"]),
            "loss",
        ),
        (
            |m| m["model"]["input"] = serde_json::json!([1, 3, 3]),
            "model.input",
        ),
        (
            |m| m["model"]["layers"][1]["out-features"] = 1_000_000_000_000u64.into(),
            "model.layers[1].out-features",
        ),
        (
            |m| {
                m["model"]["layers"] =
                    serde_json::json!([{"type": "conv2d", "out-channels": 3, "kernel": 5}])
            },
            "model.layers[0]",
        ),
        (
            |m| m["input_shape"] = serde_json::json!([1, 0, 2]),
            "input_shape",
        ),
        (|m| m["format_version"] = 7.into(), "format_version"),
    ];
    for (edit, field) in cases {
        let e = refused(resign(&good, edit));
        assert!(
            e.contains("resigned.photon") && e.contains(field),
            "{e} should name {field}"
        );
    }
    // An unknown field is refused too (the header is a strict format).
    let e = refused(resign(&good, |m| m["extra"] = 1.into()));
    assert!(e.contains("unknown field `extra`"), "{e}");
}

/// Regression (issue 12, finding 7): lengths in the file are checked against the file and the
/// budget before anything is allocated or parsed.
#[test]
fn lengths_over_the_budget_or_the_file_are_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.photon");
    write(&path);
    let good = std::fs::read(&path).unwrap();
    let open = |bytes: Vec<u8>, limits: &Limits| {
        Photon::from_bytes(Path::new("x.photon"), bytes, limits)
            .unwrap_err()
            .to_string()
    };
    // A header length of 2^63 in a small file.
    let mut b = good.clone();
    b[12..20].copy_from_slice(&(1u64 << 63).to_le_bytes());
    let e = open(b, &Limits::default());
    assert!(
        e.contains("x.photon: header length") && e.contains("allowed"),
        "{e}"
    );
    // A header within the file but over a smaller budget.
    let e = open(good.clone(), &Limits::default().with_max_header_bytes(64));
    assert!(e.contains("header length"), "{e}");
    // A per-sample budget below this model's 4 input values.
    let e = open(good.clone(), &Limits::default().with_max_sample_values(3));
    assert!(e.contains("input_shape") && e.contains("budget"), "{e}");
    // Weights whose safetensors header claims 2^40 bytes, re-signed.
    let p = Photon::open(&path).unwrap();
    let mut blob = p.weights().to_vec();
    blob[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let mut m = serde_json::to_value(p.manifest()).unwrap();
    m["weights_sha256"] = hex_sha256(&blob).into();
    let bytes = lepton_photon::assemble(&serde_json::to_vec(&m).unwrap(), &blob);
    let e = open(bytes, &Limits::default());
    assert!(e.contains("weights header length"), "{e}");
    // A weights_len past the end of the file, re-signed.
    let mut m = serde_json::to_value(p.manifest()).unwrap();
    m["weights_len"] = u64::MAX.into();
    let bytes = lepton_photon::assemble(&serde_json::to_vec(&m).unwrap(), p.weights());
    let e = open(bytes, &Limits::default());
    assert!(e.contains("truncated") && e.contains("weights_len"), "{e}");
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
