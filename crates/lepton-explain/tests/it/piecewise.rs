//! The piecewise-linear path of the gradient methods (lepton-nn's `PiecewiseNet`: no autograd,
//! rounding as the model's forward, the leading convolution's input gradient once per path) gives
//! the attributions of the
//! generic candle-autograd path, on the in-test trained CNN and on the shape of
//! `examples/mnist-cnn.toml` (conv-BN-ReLU-pool twice, dropout, linear-ReLU-linear).

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_explain::{integrated_gradients, saliency, Baseline, FnScorer, IgConfig, Rule, Scorer};
use lepton_nn::{Model, ModelSpec};

use crate::mnist::trained;

const MNIST_CNN: &str = r#"
input = [1, 28, 28]
layers = [
  { type = "conv2d", out-channels = 32, kernel = 3, padding = 1, bias = false }, { type = "batch-norm2d" }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
  { type = "conv2d", out-channels = 64, kernel = 3, padding = 1, bias = false }, { type = "batch-norm2d" }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
  { type = "flatten" }, { type = "dropout", p = 0.3 }, { type = "linear", out-features = 128 }, { type = "relu" },
  { type = "dropout", p = 0.3 }, { type = "linear", out-features = 10 },
]"#;

/// The mnist-cnn spec with seeded weights whose batch norms hold running statistics of real
/// images (three training-mode forwards), loaded as inference loads it (plain tensors).
fn mnist_cnn(images: &Tensor) -> Model {
    let spec: ModelSpec = toml::from_str(MNIST_CNN).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Model::new(&spec, &[1, 28, 28], vb).unwrap();
    lepton_nn::init_seeded(&varmap, 3).unwrap();
    for b in 0..3 {
        model
            .forward_t(&images.narrow(0, b * 8, 8).unwrap(), true)
            .unwrap();
    }
    let tensors = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
        .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    Model::new(&spec, &[1, 28, 28], vb).unwrap()
}

/// `max |a − b| / max |b|`.
fn rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs() / scale))
}

#[test]
fn integrated_gradients_and_saliency_through_the_piecewise_net_equal_the_autograd_path() {
    let t = trained();
    let cnn = mnist_cnn(&t.images);
    for (name, model) in [("in-test CNN", t.model()), ("mnist-cnn", cnn)] {
        assert!(model.piecewise_net().is_some(), "{name}");
        // The same model without the piecewise net: candle autograd through lepton-nn's kernels.
        let generic = FnScorer(|x: &Tensor| model.scores(x));
        assert!(generic.piecewise_net().is_none());
        for i in 0..3 {
            let x = t.image(i);
            let target = t.labels[i] as usize;
            // `Mean` with the trapezoid rule: its first point is a constant image, where max-pool
            // windows tie exactly; the piecewise net decides every tie and near-tie as the
            // model's forward does (same rounding, no folded batch norm, no shared prefix).
            let noise = t.image(i + 10).affine(0.5, 0.1).unwrap();
            for (baseline, rule, steps, batch) in [
                (Baseline::Zeros, Rule::GaussLegendre, 50, 64),
                (Baseline::Blur { sigma: 4.0 }, Rule::GaussLegendre, 256, 64),
                (Baseline::Mean, Rule::GaussLegendre, 20, 64),
                (Baseline::Given(noise.clone()), Rule::GaussLegendre, 37, 16),
                (Baseline::Given(noise.clone()), Rule::Trapezoid, 37, 16),
                (Baseline::Zeros, Rule::Trapezoid, 50, 64),
                (Baseline::Mean, Rule::Trapezoid, 20, 64),
            ] {
                let cfg = IgConfig { steps, rule, batch };
                let fast = integrated_gradients(&model, &x, &baseline, target, &cfg).unwrap();
                let slow = integrated_gradients(&generic, &x, &baseline, target, &cfg).unwrap();
                let r = rel(&fast.attributions, &slow.attributions);
                eprintln!("{name} image {i} {baseline:?} {rule:?} {steps}: {r:.1e}");
                // The untrained mnist-cnn's smooth baselines (blur, mean, a scaled image) put
                // pool windows within rounding of a tie along the path: the masks must still be
                // the model's (this bound was 1e-3 while the batch norm was folded into the
                // convolution and the first convolution shared along the path).
                assert!(
                    r < 1e-5,
                    "{name} image {i} {baseline:?}: relative difference {r}"
                );
                for key in ["score-input", "score-baseline"] {
                    let (f, s) = (
                        fast.checks[key].as_f64().unwrap(),
                        slow.checks[key].as_f64().unwrap(),
                    );
                    assert!(
                        (f - s).abs() < 1e-5 * s.abs().max(1.0),
                        "{name} {key}: {f} vs {s}"
                    );
                }
            }
            for times_input in [false, true] {
                let fast = saliency(&model, &x, target, times_input).unwrap();
                let slow = saliency(&generic, &x, target, times_input).unwrap();
                assert!(
                    rel(&fast.attributions, &slow.attributions) < 1e-5,
                    "{name} saliency"
                );
                assert!((fast.score - slow.score).abs() < 1e-5 * slow.score.abs().max(1.0));
            }
        }
        let e = integrated_gradients(
            &model,
            &t.image(0),
            &Baseline::Zeros,
            10,
            &IgConfig::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("invalid target"), "{e}");
    }
}

/// A model the piecewise net cannot express (an average pool, a GELU) takes the generic
/// candle-autograd path: integrated gradients still satisfy completeness on it.
#[test]
fn models_outside_the_piecewise_net_fall_back_to_autograd() {
    let t = trained();
    for layers in [
        r#"{ type = "conv2d", out-channels = 4, kernel = 3, padding = 1 }, { type = "relu" }, { type = "avg-pool2d", kernel = 2 }, { type = "flatten" }, { type = "linear", out-features = 10 }"#,
        r#"{ type = "flatten" }, { type = "linear", out-features = 16 }, { type = "gelu" }, { type = "linear", out-features = 10 }"#,
    ] {
        let spec: ModelSpec = toml::from_str(&format!("layers = [{layers}]")).unwrap();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Model::new(&spec, &[1, 28, 28], vb).unwrap();
        lepton_nn::init_seeded(&varmap, 9).unwrap();
        assert!(model.piecewise_net().is_none(), "{layers}");
        let cfg = IgConfig {
            steps: 256,
            ..IgConfig::default()
        };
        let ig = integrated_gradients(&model, &t.image(0), &Baseline::Zeros, 3, &cfg).unwrap();
        let err = ig.checks["completeness-relative-error"].as_f64().unwrap();
        assert!(err < 0.01, "{layers}: completeness off by {err}");
        assert!(ig.attributions.iter().any(|&v| v != 0.0), "{layers}");
    }
}
