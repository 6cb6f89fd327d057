//! [`Explainer`]: the piecewise net of a loaded model is compiled once and reused by every
//! explanation after the first, with the answers of a net compiled per call; a model whose
//! weights change (training) never gets a stale net.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_explain::{
    integrated_gradients, predicted, saliency, Baseline, ExplainRequest, Explainer, IgConfig,
    Method, Scorer,
};
use lepton_nn::{Model, ModelSpec};

const CNN: &str = r#"
layers = [
  { type = "conv2d", out-channels = 4, kernel = 3, padding = 1, bias = false }, { type = "batch-norm2d" }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
  { type = "flatten" }, { type = "linear", out-features = 8 }, { type = "relu" }, { type = "linear", out-features = 3 },
]"#;

fn spec(text: &str) -> ModelSpec {
    toml::from_str(text).unwrap()
}

/// A model on a `VarMap` (as training builds it), seeded, its batch norms' running statistics
/// moved by two training-mode forwards.
fn training(spec: &ModelSpec, input: &[usize]) -> (VarMap, Model) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Model::new(spec, input, vb).unwrap();
    lepton_nn::init_seeded(&varmap, 7).unwrap();
    let mut shape = vec![4];
    shape.extend_from_slice(input);
    let n: usize = shape.iter().product();
    let x = Tensor::from_vec(
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect(),
        shape,
        &Device::Cpu,
    )
    .unwrap();
    for _ in 0..2 {
        model.forward_t(&x, true).unwrap();
    }
    (varmap, model)
}

/// The same weights as plain tensors, as a photon or a checkpoint loads them.
fn loaded(spec: &ModelSpec, input: &[usize], varmap: &VarMap) -> Model {
    let tensors = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
        .collect();
    Model::new(
        spec,
        input,
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
    )
    .unwrap()
}

fn image(seed: usize) -> Tensor {
    let v: Vec<f32> = (0..64)
        .map(|i| (((i + seed) * 29 % 53) as f32 - 26.0) / 13.0)
        .collect();
    Tensor::from_vec(v, (1, 8, 8), &Device::Cpu).unwrap()
}

/// Every weight of the model times `factor` (an optimizer step would move them in place too).
fn scale_weights(varmap: &VarMap, factor: f64) {
    for v in varmap.all_vars() {
        v.set(&v.as_tensor().affine(factor, 0.01).unwrap()).unwrap();
    }
}

#[test]
fn a_loaded_models_net_is_compiled_once_across_explain_calls() {
    let s = spec(CNN);
    let (varmap, _) = training(&s, &[1, 8, 8]);
    let model = loaded(&s, &[1, 8, 8], &varmap);
    let e = Explainer::new(&model);
    assert!(e.kept_net().is_none());
    let cfg = IgConfig {
        steps: 16,
        ..IgConfig::default()
    };
    for (i, seed) in [0, 5, 11].into_iter().enumerate() {
        let x = image(seed);
        let kept = saliency(&e, &x, 1, false).unwrap();
        let net = e.kept_net().expect("compiled on the first explanation");
        // The model itself compiles a net per call: the same answer, bit for bit.
        assert_eq!(kept, saliency(&model, &x, 1, false).unwrap(), "image {i}");
        let ig = integrated_gradients(&e, &x, &Baseline::Zeros, 2, &cfg).unwrap();
        let fresh = integrated_gradients(&model, &x, &Baseline::Zeros, 2, &cfg).unwrap();
        assert_eq!(ig.attributions, fresh.attributions, "image {i}");
        let req = ExplainRequest::new(Method::GradientXInput);
        assert_eq!(
            req.run(&e, &x, None).unwrap(),
            req.run(&model, &x, None).unwrap()
        );
        assert!(
            Arc::ptr_eq(&net, &e.kept_net().unwrap()),
            "image {i}: the net was compiled again"
        );
    }
}

/// Regression guard for the cache: a training model's weights move under it (`Var::set`, as
/// the optimizer does), and its explanations must follow them at once.
#[test]
fn a_training_models_explanations_follow_its_weight_updates() {
    // The CNN, and a model whose only trainable tensors are a batch norm's (its piece holds
    // computed values, not the tensors: the model reports them).
    let norm_only =
        r#"layers = [{ type = "batch-norm2d" }, { type = "relu" }, { type = "flatten" }]"#;
    for (name, text) in [("cnn", CNN), ("batch norm only", norm_only)] {
        let s = spec(text);
        let (varmap, model) = training(&s, &[1, 8, 8]);
        let e = Explainer::new(&model);
        let x = image(3);
        // The largest output: a ReLU passes its gradient.
        let t = predicted(&e, &x).unwrap();
        let before = saliency(&e, &x, t, false).unwrap();
        assert!(
            e.piecewise_net().is_some_and(|n| !n.frozen()),
            "{name}: trainable weights must not make a frozen net"
        );
        scale_weights(&varmap, 0.5);
        let after = saliency(&e, &x, t, false).unwrap();
        // What a model loaded from the updated weights says.
        let reloaded = loaded(&s, &[1, 8, 8], &varmap);
        let want = saliency(&Explainer::new(&reloaded), &x, t, false).unwrap();
        assert_ne!(before.attributions, after.attributions, "{name}");
        let err = after
            .attributions
            .iter()
            .zip(&want.attributions)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            err <= 1e-5,
            "{name}: stale or wrong after the update ({err})"
        );
        assert!(
            e.kept_net().is_none(),
            "{name}: a net of trainable weights was kept"
        );
    }
}
