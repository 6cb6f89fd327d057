//! Explanations of a loaded photon: the loaded model keeps its compiled piecewise net across
//! explanations (served or not), and a reload of the file (what the server's admin reload does:
//! `PhotonBackend::open` again) answers with the new weights.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use lepton_data::Preprocessor;
use lepton_explain::{saliency, Scorer};
use lepton_infer::{Backend, ExplainLimits};
use lepton_nn::{LossSpec, Model, ModelSpec};
use lepton_photon::serving::PhotonBackend;
use lepton_photon::{Photon, PhotonContents};
use serde_json::json;

fn spec() -> ModelSpec {
    toml::from_str(
        r#"layers = [
            { type = "conv2d", out-channels = 2, kernel = 3, padding = 1 }, { type = "relu" },
            { type = "max-pool2d", kernel = 2 }, { type = "flatten" }, { type = "linear", out-features = 3 },
        ]"#,
    )
    .unwrap()
}

/// A 1x4x4 image photon with weights seeded by `seed`; the weights.
fn write(path: &Path, seed: u64) -> HashMap<String, Tensor> {
    let varmap = VarMap::new();
    Model::new(
        &spec(),
        &[1, 4, 4],
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    lepton_nn::init_seeded(&varmap, seed).unwrap();
    let weights: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect();
    let contents = PhotonContents {
        name: "img".into(),
        model: spec(),
        input_shape: vec![1, 4, 4],
        loss: LossSpec::default(),
        preprocessor: Preprocessor::Image {
            channels: 1,
            height: 4,
            width: 4,
            mean: vec![0.0],
            std: vec![1.0],
            class_names: vec!["a".into(), "b".into(), "c".into()],
        },
        metrics: json!({}),
    };
    Photon::write(path, &contents, &weights).unwrap();
    weights
}

fn features() -> Vec<f32> {
    (0..16).map(|i| ((i * 5 % 7) as f32 - 3.0) / 2.0).collect()
}

fn attributions(v: &serde_json::Value) -> Vec<f32> {
    serde_json::from_value(v["attributions"].clone()).unwrap()
}

#[test]
fn a_loaded_photon_keeps_its_compiled_net_across_explanations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img.photon");
    write(&path, 3);
    let loaded = Photon::open(&path).unwrap().model().unwrap();
    let e = loaded.explainer();
    assert!(e.kept_net().is_none());
    let x = Tensor::from_vec(features(), (1, 4, 4), &Device::Cpu).unwrap();
    let first = saliency(e, &x, 1, false).unwrap();
    let net = e.kept_net().expect("compiled by the first explanation");
    let second = saliency(e, &x, 1, false).unwrap();
    assert!(Arc::ptr_eq(&net, &e.piecewise_net().unwrap()));
    assert_eq!(first, second);
    // The same answer as a net compiled for this one call.
    assert_eq!(first, saliency(loaded.model(), &x, 1, false).unwrap());
}

#[test]
fn a_reloaded_photon_explains_with_its_new_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img.photon");
    write(&path, 3);
    let req = json!({ "method": "saliency", "target": 1 });
    let limits = ExplainLimits::default();
    let backend = PhotonBackend::open(&path, "img").unwrap();
    let old = backend.explain(&features(), &[], &req, &limits).unwrap();
    assert_eq!(
        old,
        backend.explain(&features(), &[], &req, &limits).unwrap()
    );
    // New weights in the same file, loaded again.
    let weights = write(&path, 4);
    let backend = PhotonBackend::open(&path, "img").unwrap();
    let new = backend.explain(&features(), &[], &req, &limits).unwrap();
    assert_ne!(attributions(&old), attributions(&new));
    let fresh = Model::new(
        &spec(),
        &[1, 4, 4],
        VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let x = Tensor::from_vec(features(), (1, 4, 4), &Device::Cpu).unwrap();
    let want = saliency(&fresh, &x, 1, false).unwrap();
    assert_eq!(attributions(&new), want.attributions);
}
