//! Small models and datasets for the tests.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use lepton_compress::{finetune, Finetune, Net};
use lepton_data::{Dataset, Targets};
use lepton_nn::{LossSpec, Model, ModelSpec};
use rand::{Rng, SeedableRng};

/// `n` samples of `classes` Gaussian blobs in `shape` (flattened), seeded.
pub fn blobs(n: usize, classes: usize, shape: &[usize], seed: u64) -> Dataset {
    let per: usize = shape.iter().product();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let centers: Vec<Vec<f32>> = (0..classes)
        .map(|_| (0..per).map(|_| rng.random_range(-1.0..1.0f32)).collect())
        .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut features = Vec::with_capacity(n * per);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % classes;
        labels.push(c as u32);
        features.extend(
            centers[c]
                .iter()
                .map(|v| v + rng.random_range(-0.4..0.4f32)),
        );
    }
    Dataset {
        features,
        sample_shape: shape.to_vec(),
        targets: Targets::Classes {
            labels,
            class_names: (0..classes).map(|c| c.to_string()).collect(),
        },
        weights: None,
    }
}

pub fn loss() -> LossSpec {
    LossSpec::CrossEntropy {
        label_smoothing: 0.0,
    }
}

/// A freshly initialised model of `layers` (TOML array items) for `input`.
pub fn init(layers: &str, input: &[usize]) -> Net {
    let spec: ModelSpec = toml::from_str(&format!("layers = [{layers}]")).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    Model::new(&spec, input, vb).unwrap();
    let tensors: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    Net::new(spec, input.to_vec(), tensors)
}

/// [`init`] then trained for `epochs` on `data`.
pub fn trained(layers: &str, data: &Dataset, epochs: usize) -> Net {
    let mut net = init(layers, &data.sample_shape);
    finetune(
        &mut net,
        data,
        &loss(),
        &HashMap::new(),
        Finetune {
            epochs,
            lr: 1e-2,
            batch_size: 32,
            seed: 1,
        },
    )
    .unwrap();
    net
}

/// The model's outputs for the first `n` samples of `data`.
pub fn outputs(net: &Net, data: &Dataset, n: usize) -> Vec<f32> {
    use candle_nn::ModuleT;
    let per = data.sample_len();
    let mut shape = vec![n];
    shape.extend_from_slice(&data.sample_shape);
    let x = Tensor::from_slice(&data.features[..n * per], shape, &Device::Cpu).unwrap();
    net.model("test")
        .unwrap()
        .forward_t(&x, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}
