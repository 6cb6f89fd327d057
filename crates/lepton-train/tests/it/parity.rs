//! PyTorch parity: a LeNet-style CNN trained with plain SGD from the same initial weights on the
//! same batches as `bench/parity/make_golden.py` (goldens committed beside it) gives the same
//! loss curve to 1e-4 relative over 50 steps.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_nn::{LossSpec, Model, ModelSpec};
use lepton_train::{OptimizerSpec, SgdConfig};

const LENET: &str = r#"
layers = [
  { type = "conv2d", out-channels = 6, kernel = 5 }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
  { type = "conv2d", out-channels = 16, kernel = 5 }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
  { type = "flatten" },
  { type = "linear", out-features = 120 }, { type = "relu" },
  { type = "linear", out-features = 84 }, { type = "relu" },
  { type = "linear", out-features = 10 },
]"#;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/parity")
}

#[test]
fn lenet_sgd_loss_curve_matches_pytorch() {
    let dir = golden_dir();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("lenet_golden.json")).unwrap())
            .unwrap();
    let want: Vec<f64> = meta["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let (batch, nbatch, lr) = (
        meta["batch"].as_u64().unwrap() as usize,
        meta["batches"].as_u64().unwrap() as usize,
        meta["lr"].as_f64().unwrap(),
    );
    assert_eq!(want.len(), 50);
    let arrays: HashMap<String, Tensor> = Tensor::read_npz(dir.join("lenet_golden.npz"))
        .unwrap()
        .into_iter()
        .collect();

    let spec: ModelSpec = toml::from_str(LENET).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Model::new(&spec, &[1, 28, 28], vb).unwrap();
    {
        let vars = varmap.data().lock().unwrap();
        assert_eq!(vars.len(), 10, "5 weighted layers, weight + bias each");
        for (name, var) in vars.iter() {
            let init = arrays
                .get(name)
                .unwrap_or_else(|| panic!("golden has no `{name}`"));
            var.set(&init.to_dtype(DType::F32).unwrap()).unwrap();
        }
    }
    let params = lepton_train::optim::trainable_params(&varmap);
    let mut sgd = OptimizerSpec::Sgd(SgdConfig {
        lr,
        ..Default::default()
    })
    .build(params);

    let x = &arrays["x"];
    let y = arrays["y"].to_dtype(DType::U32).unwrap();
    let loss_spec = LossSpec::CrossEntropy {
        label_smoothing: 0.0,
    };
    let mut got = Vec::new();
    for step in 0..want.len() {
        let b = step % nbatch;
        let xb = x.narrow(0, b * batch, batch).unwrap();
        let yb = y.narrow(0, b * batch, batch).unwrap();
        let logits = model.forward_t(&xb, true).unwrap();
        let loss = lepton_nn::loss(&loss_spec, &logits, &yb, None).unwrap();
        got.push(loss.to_scalar::<f32>().unwrap() as f64);
        let grads = loss.backward().unwrap();
        sgd.step(&grads, lr, 1.0).unwrap();
    }
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let rel = (g - w).abs() / w.abs();
        assert!(
            rel < 1e-4,
            "step {i}: lepton {g}, pytorch {w} (relative difference {rel:e})"
        );
    }
    // The curve moves (the comparison is not of a flat line) ...
    assert!(want[0] - want[49] > 0.1, "{} -> {}", want[0], want[49]);
    // ... and the final weights agree too.
    let vars = varmap.data().lock().unwrap();
    for (name, var) in vars.iter() {
        let w = arrays[&format!("final.{name}")]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let g = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let max = w
            .iter()
            .zip(&g)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max < 1e-4, "`{name}`: max abs difference {max}");
    }
}
