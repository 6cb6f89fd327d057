//! Photon round trips and damaged files.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_data::Preprocessor;
use lepton_nn::{LossSpec, Model, ModelSpec};
use lepton_photon::{Error, Photon, PhotonContents, Prediction};
use rand::{Rng, SeedableRng};

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
