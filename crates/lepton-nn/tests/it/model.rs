use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_nn::{init_seeded, Model, ModelSpec};

fn spec() -> ModelSpec {
    toml::from_str(
        r#"layers = [{ type = "conv2d", out-channels = 4, kernel = 3 }, { type = "batch-norm2d" }, { type = "relu" },
        { type = "flatten" }, { type = "dropout", p = 0.5 }, { type = "linear", out-features = 3 }]"#,
    )
    .unwrap()
}

fn build(seed: u64) -> (VarMap, Model) {
    let varmap = VarMap::new();
    let model = Model::new(
        &spec(),
        &[1, 5, 5],
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    init_seeded(&varmap, seed).unwrap();
    (varmap, model)
}

fn values(varmap: &VarMap) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<_> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn pytorch_parameter_names_and_seeded_init() {
    let (a, _) = build(1);
    let (b, _) = build(1);
    let (c, _) = build(2);
    let names: Vec<String> = values(&a).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "layers.0.bias",
            "layers.0.weight",
            "layers.1.bias",
            "layers.1.running_mean",
            "layers.1.running_var",
            "layers.1.weight",
            "layers.5.bias",
            "layers.5.weight"
        ]
    );
    assert_eq!(values(&a), values(&b));
    assert_ne!(values(&a), values(&c));
    let w = &values(&a)[1].1; // conv weight, fan_in 9: |w| < 1/3
    assert!(w.iter().all(|v| v.abs() < 1.0 / 3.0) && w.iter().any(|v| v.abs() > 0.2));
    assert!(values(&a)[5].1.iter().all(|&v| v == 1.0)); // bn weight
}

#[test]
fn batch_norm_updates_running_stats_only_in_training_and_dropout_is_seeded() {
    let (varmap, model) = build(1);
    let x = Tensor::arange(0f32, 50.0, &Device::Cpu)
        .unwrap()
        .reshape((2, 1, 5, 5))
        .unwrap();
    let before = values(&varmap);
    model.forward_t(&x, false).unwrap();
    assert_eq!(
        values(&varmap),
        before,
        "eval mode must not change running stats"
    );
    model.set_step(7);
    let y1 = model.forward_t(&x, true).unwrap().to_vec2::<f32>().unwrap();
    assert_ne!(
        values(&varmap),
        before,
        "training must update running stats"
    );
    let y2 = model.forward_t(&x, true).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(y1, y2, "same step, same dropout mask");
    model.set_step(8);
    let y3 = model.forward_t(&x, true).unwrap().to_vec2::<f32>().unwrap();
    assert_ne!(y1, y3, "another step, another mask");
}

#[test]
fn saved_weights_load_into_an_immutable_model_with_the_same_output() {
    let (varmap, model) = build(3);
    let x = Tensor::arange(0f32, 75.0, &Device::Cpu)
        .unwrap()
        .reshape((3, 1, 5, 5))
        .unwrap()
        .affine(0.1, -2.0)
        .unwrap();
    model.forward_t(&x, true).unwrap(); // move the running stats away from their init
    let want = model
        .forward_t(&x, false)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    varmap.save(&path).unwrap();
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu).unwrap() };
    let loaded = Model::new(&spec(), &[1, 5, 5], vb).unwrap();
    assert_eq!(
        loaded
            .forward_t(&x, false)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap(),
        want
    );
    assert!(Model::new(&spec(), &[2, 5, 5], unsafe {
        VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu).unwrap()
    })
    .is_err());
}

/// A spec asking for a multi-terabyte layer is refused by name before any allocation (it used to
/// abort the process).
#[test]
fn a_huge_layer_is_an_error_before_allocation() {
    let spec: ModelSpec = toml::from_str(
        r#"layers = [{ type = "flatten" }, { type = "linear", out-features = 1000000000000 }]"#,
    )
    .unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let e = Model::new(&spec, &[1, 28, 28], vb).unwrap_err().to_string();
    assert!(e.contains("model.layers[1].out-features (linear)"), "{e}");
    assert!(varmap.all_vars().is_empty(), "nothing may be allocated");
    let e = Model::parameter_count(&spec, &[1, 28, 28])
        .unwrap_err()
        .to_string();
    assert!(e.contains("out-features"), "{e}");
}

/// Eval mode on loaded (untracked) weights computes each conv + batch norm (+ ReLU, max-pool)
/// block in one kernel (`kernels::conv2d_eval_block`); it must equal the layer-by-layer
/// forward (what runs whenever a gradient can be asked for, here through an input `Var`) bit
/// for bit, and the batch norm must still run on its own in training and on tracked inputs.
#[test]
fn eval_conv_batch_norm_blocks_equal_the_layer_by_layer_forward_bit_for_bit() {
    let layers = r#"layers = [
        { type = "conv2d", out-channels = 6, kernel = 3, padding = 1, bias = false }, { type = "batch-norm2d" }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
        { type = "conv2d", out-channels = 5, kernel = 3, padding = 1 }, { type = "batch-norm2d" }, { type = "relu" },
        { type = "conv2d", out-channels = 4, kernel = 1 }, { type = "batch-norm2d" },
        { type = "flatten" }, { type = "linear", out-features = 3 }]"#;
    let spec: ModelSpec = toml::from_str(layers).unwrap();
    let input = [2, 8, 8];
    let (varmap, trained) = {
        let varmap = VarMap::new();
        let model = Model::new(
            &spec,
            &input,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        )
        .unwrap();
        init_seeded(&varmap, 3).unwrap();
        // Running statistics away from (0, 1).
        let x = (Tensor::randn(0f32, 2.0, (8, 2, 8, 8), &Device::Cpu).unwrap() + 0.7).unwrap();
        model.forward_t(&x, true).unwrap();
        (varmap, model)
    };
    let tensors: std::collections::HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
        .collect();
    let loaded = Model::new(
        &spec,
        &input,
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let x = Tensor::randn(0f32, 1.0, (5, 2, 8, 8), &Device::Cpu).unwrap();
    let fused = loaded.forward_t(&x, false).unwrap();
    let var = candle_core::Var::from_tensor(&x).unwrap();
    let layered = loaded.forward_t(var.as_tensor(), false).unwrap();
    let on_vars = trained.forward_t(&x, false).unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(flat(&fused), flat(&layered));
    assert_eq!(flat(&fused), flat(&on_vars));
    // The fused path really ran: its result tracks no op (the layer-by-layer one does).
    assert!(!fused.track_op(), "fused tracks");
    assert!(layered.track_op(), "layered does not track");
}
