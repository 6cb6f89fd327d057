//! A small CNN trained in-process on the first MNIST images (seconds), shared by the tests.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, ModuleT, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use lepton_nn::{Model, ModelSpec};

pub const SPEC: &str = r#"
input = [1, 28, 28]
layers = [
  { type = "conv2d", out-channels = 8, kernel = 3, padding = 1 }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
  { type = "conv2d", out-channels = 16, kernel = 3, padding = 1 }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
  { type = "flatten" }, { type = "linear", out-features = 10 },
]"#;

pub struct Trained {
    pub spec: ModelSpec,
    pub tensors: HashMap<String, Tensor>,
    /// Test images `[N, 1, 28, 28]` in [0, 1] and their labels.
    pub images: Tensor,
    pub labels: Vec<u32>,
    pub accuracy: f32,
}

impl Trained {
    /// The trained model as inference loads it (weights are plain tensors, not `Var`s).
    pub fn model(&self) -> Model {
        let vb = VarBuilder::from_tensors(self.tensors.clone(), DType::F32, &Device::Cpu);
        Model::new(&self.spec, &[1, 28, 28], vb).unwrap()
    }

    pub fn image(&self, i: usize) -> Tensor {
        self.images.get(i).unwrap()
    }
}

fn load(prefix: &str, n: usize) -> (Tensor, Vec<u32>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    let d = lepton_data::idx::load_idx_pair(&dir, prefix)
        .unwrap_or_else(|e| panic!("MNIST under {}: {e}", dir.display()));
    let px: Vec<f32> = d.pixels[..n * 784]
        .iter()
        .map(|&p| f32::from(p) / 255.0)
        .collect();
    (
        Tensor::from_vec(px, (n, 1, 28, 28), &Device::Cpu).unwrap(),
        d.labels[..n].to_vec(),
    )
}

/// 4,000 training images, 2 epochs of AdamW: ~95 % test accuracy.
pub fn trained() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(|| {
        let spec: ModelSpec = toml::from_str(SPEC).unwrap();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Model::new(&spec, &[1, 28, 28], vb).unwrap();
        lepton_nn::init_seeded(&varmap, 1).unwrap();
        let (x, y) = load("train", 4000);
        let y = Tensor::new(y.as_slice(), &Device::Cpu).unwrap();
        let mut opt = AdamW::new(
            varmap.all_vars(),
            ParamsAdamW {
                lr: 3e-3,
                weight_decay: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        for _ in 0..2 {
            for b in 0..4000 / 50 {
                let xb = x.narrow(0, b * 50, 50).unwrap();
                let yb = y.narrow(0, b * 50, 50).unwrap();
                let logits = model.forward_t(&xb, true).unwrap();
                let loss = candle_nn::loss::cross_entropy(&logits, &yb).unwrap();
                opt.backward_step(&loss).unwrap();
            }
        }
        let tensors: HashMap<String, Tensor> = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect();
        let (images, labels) = load("t10k", 500);
        let pred: Vec<u32> = model
            .forward_t(&images, false)
            .unwrap()
            .argmax(D::Minus1)
            .unwrap()
            .to_vec1()
            .unwrap();
        let hits = pred.iter().zip(&labels).filter(|(a, b)| a == b).count();
        Trained {
            spec,
            tensors,
            images,
            labels,
            accuracy: hits as f32 / 500.0,
        }
    })
}
