//! The recurrent layers (`lstm`, `gru`, `rnn`): outputs equal PyTorch's `nn.LSTM` / `nn.GRU` /
//! `nn.RNN` on shared weights (the golden file `golden/recurrent.json`, made by
//! `golden/recurrent.py`), the char models of issue 13 equal PyTorch's logits, loss and gradients
//! (`golden/char_rnn.json` by `golden/char_rnn.py`), PyTorch's initialisation, and errors naming
//! the field.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_nn::{Model, ModelSpec};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    /// The layer spec (TOML inline table).
    layer: String,
    /// Per-sample input shape `[T, F]`.
    input_shape: Vec<usize>,
    /// `[B, T, F]`, flat.
    input: Vec<f64>,
    /// PyTorch `state_dict` (names without the `layers.0.` prefix): shape and flat values.
    weights: HashMap<String, (Vec<usize>, Vec<f64>)>,
    /// PyTorch's output `[B, T, H * dirs]`, flat.
    output: Vec<f64>,
    /// PyTorch's `h_n[-dirs:]` as `[B, H * dirs]`, flat.
    last: Vec<f64>,
}

fn cases() -> Vec<Case> {
    let text = include_str!("golden/recurrent.json");
    serde_json::from_str(text).expect("golden/recurrent.json parses")
}

fn run(case: &Case, return_sequences: bool, dtype: DType) -> Vec<f64> {
    let layer = format!(
        "{}, return-sequences = {return_sequences} }}",
        case.layer.trim_end_matches('}').trim_end()
    );
    let spec: ModelSpec = toml::from_str(&format!("layers = [{layer}]")).unwrap();
    let dev = Device::Cpu;
    let tensors: HashMap<String, Tensor> = case
        .weights
        .iter()
        .map(|(name, (shape, v))| {
            let t = Tensor::from_slice(v, shape.as_slice(), &dev).unwrap();
            (format!("layers.0.{name}"), t.to_dtype(dtype).unwrap())
        })
        .collect();
    let vb = VarBuilder::from_tensors(tensors, dtype, &dev);
    let model = Model::new(&spec, &case.input_shape, vb).unwrap();
    let b = case.input.len() / case.input_shape.iter().product::<usize>();
    let mut shape = vec![b];
    shape.extend_from_slice(&case.input_shape);
    let x = Tensor::from_slice(&case.input, shape.as_slice(), &dev)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    model
        .forward_t(&x, false)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn assert_close(what: &str, ours: &[f64], torch: &[f64], tol: f64) {
    assert_eq!(ours.len(), torch.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(torch).enumerate() {
        assert!((a - b).abs() < tol, "{what}[{i}]: ours {a} vs PyTorch {b}");
    }
}

#[test]
fn outputs_equal_pytorch_on_shared_weights() {
    let cases = cases();
    assert!(cases.len() >= 2, "the golden file has lstm and gru cases");
    for case in &cases {
        for dtype in [DType::F64, DType::F32] {
            let what = format!("{} {dtype:?}", case.layer);
            assert_close(&what, &run(case, true, dtype), &case.output, 1e-5);
            assert_close(
                &format!("{what} last"),
                &run(case, false, dtype),
                &case.last,
                1e-5,
            );
        }
    }
}

#[test]
fn init_is_pytorch_uniform_over_sqrt_hidden() {
    let spec: ModelSpec = toml::from_str(
        r#"layers = [{ type = "lstm", hidden-size = 16, num-layers = 2, bidirectional = true }]"#,
    )
    .unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    Model::new(&spec, &[5, 3], vb).unwrap();
    lepton_nn::init_seeded(&varmap, 7).unwrap();
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<_> = data.keys().cloned().collect();
    names.sort();
    assert_eq!(names.len(), 16, "{names:?}");
    assert!(
        names.contains(&"layers.0.bias_hh_l1_reverse".to_string()),
        "{names:?}"
    );
    assert_eq!(data["layers.0.weight_ih_l1"].dims(), [64, 32]);
    for (name, var) in data.iter() {
        let v: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        // Bound 1/sqrt(16) = 0.25, and the values fill it (not constants).
        assert!(max <= 0.25 && max > 0.2, "{name}: max |v| = {max}");
    }
}

#[test]
fn bad_recurrent_specs_are_errors_naming_the_field() {
    let shapes = |layer: &str, input: &[usize]| {
        let spec: ModelSpec = toml::from_str(&format!("layers = [{layer}]")).unwrap();
        spec.shapes(input).map_err(|e| e.to_string())
    };
    let e = shapes(r#"{ type = "gru", hidden-size = 0 }"#, &[4, 2]).unwrap_err();
    assert!(e.contains("model.layers[0].hidden-size (gru)"), "{e}");
    let e = shapes(
        r#"{ type = "lstm", hidden-size = 4, num-layers = 0 }"#,
        &[4, 2],
    )
    .unwrap_err();
    assert!(e.contains("model.layers[0].num-layers (lstm)"), "{e}");
    let e = shapes(r#"{ type = "lstm", hidden-size = 4 }"#, &[8]).unwrap_err();
    assert!(
        e.contains("layers[0] (lstm)") && e.contains("[time steps, features]"),
        "{e}"
    );
    let e = shapes(r#"{ type = "rnn", hidden-size = 4 }"#, &[2, 3, 4]).unwrap_err();
    assert!(
        e.contains("layers[0] (rnn)") && e.contains("3 dimensions"),
        "{e}"
    );
    let e = shapes(
        r#"{ type = "lstm", hidden-size = 1000000, num-layers = 8 }"#,
        &[64, 32],
    )
    .unwrap_err();
    assert!(e.contains("model.layers[0].hidden-size (lstm)"), "{e}");
    assert!(
        toml::from_str::<ModelSpec>(r#"layers = [{ type = "lstm", hidden = 4 }]"#).is_err(),
        "unknown keys are refused"
    );
    let ok = shapes(
        r#"{ type = "lstm", hidden-size = 4, bidirectional = true, return-sequences = false }"#,
        &[6, 3],
    )
    .unwrap();
    assert_eq!(ok, [vec![8]]);
    let ok = shapes(
        r#"{ type = "gru", hidden-size = 4, bidirectional = true }"#,
        &[6, 3],
    )
    .unwrap();
    assert_eq!(ok, [vec![6, 8]]);
}

/// A case of `golden/char_rnn.json` (made by `golden/char_rnn.py`).
#[derive(Deserialize)]
struct CharCase {
    /// The model's layers (TOML array).
    layers: String,
    block: usize,
    ids: Vec<u32>,
    targets: Vec<u32>,
    /// PyTorch parameters under our names: shape and flat values.
    weights: HashMap<String, (Vec<usize>, Vec<f64>)>,
    logits: Vec<f64>,
    loss: f64,
    grads: HashMap<String, Vec<f64>>,
}

/// Issue 13's char-LSTM / char-GRU (embedding, 2 recurrent layers, linear) equals PyTorch's on
/// shared weights: logits, cross-entropy and the gradient of every parameter, with the
/// embedding folded into the recurrent layer (projected table, and plain lookup).
#[test]
fn char_models_equal_pytorch_logits_loss_and_gradients() {
    let cases: Vec<CharCase> =
        serde_json::from_str(include_str!("golden/char_rnn.json")).expect("char_rnn.json parses");
    assert_eq!(cases.len(), 3);
    let dev = Device::Cpu;
    for case in &cases {
        for dtype in [DType::F64, DType::F32] {
            let what = format!("{} {dtype:?}", case.layers);
            let spec: ModelSpec = toml::from_str(&format!("layers = {}", case.layers)).unwrap();
            let mut varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, dtype, &dev);
            let model = Model::new(&spec, &[case.block], vb).unwrap();
            for (name, (shape, v)) in &case.weights {
                let t = Tensor::from_slice(v, shape.as_slice(), &dev).unwrap();
                varmap.set_one(name, t.to_dtype(dtype).unwrap()).unwrap();
            }
            let b = case.ids.len() / case.block;
            let x = Tensor::from_slice(&case.ids, (b, case.block), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let logits = model.forward_t(&x, true).unwrap();
            let vocab = logits.dim(2).unwrap();
            let flat = |t: &Tensor| -> Vec<f64> {
                t.to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            };
            let tol = 1e-5;
            assert_close(&format!("{what} logits"), &flat(&logits), &case.logits, tol);
            let targets = Tensor::from_slice(&case.targets, case.targets.len(), &dev).unwrap();
            let ce = lepton_nn::LossSpec::CrossEntropy {
                label_smoothing: 0.0,
            };
            let loss = lepton_nn::loss(&ce, &logits.reshape(((), vocab)).unwrap(), &targets, None)
                .unwrap();
            assert_close(&format!("{what} loss"), &flat(&loss), &[case.loss], tol);
            let grads = loss.backward().unwrap();
            let vars = varmap.data().lock().unwrap();
            assert_eq!(vars.len(), case.grads.len(), "{what}: parameter count");
            for (name, expect) in &case.grads {
                let g = grads.get(vars[name].as_tensor()).unwrap();
                assert_close(&format!("{what} d/d{name}"), &flat(g), expect, tol);
            }
        }
    }
}
