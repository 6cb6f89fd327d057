//! A short fine-tune after pruning: AdamW on the training samples (shuffled, seeded), the
//! model's own loss, and after every step the pruning masks re-applied so pruned weights stay
//! zero. Batch norms are folded before pruning ([`crate::fold`]), so every parameter the model
//! uses in evaluation mode is trained here and written back.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{ModuleT, Optimizer, VarBuilder, VarMap};
use lepton_data::{Dataset, Targets};
use lepton_nn::{LossSpec, Model};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::net::{check_shape, Net};

/// Fine-tune settings.
#[derive(Debug, Clone, Copy)]
pub struct Finetune {
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub seed: u64,
}

/// Train `net` on `data` for `cfg.epochs`, keeping `masks` (weight name → 0/1 tensor) applied.
pub fn finetune(
    net: &mut Net,
    data: &Dataset,
    loss: &LossSpec,
    masks: &HashMap<String, Tensor>,
    cfg: Finetune,
) -> Result<()> {
    check_shape(net, data, "fine-tune data")?;
    let step = "fine-tune";
    let varmap = VarMap::new();
    {
        let mut vars = varmap.data().lock().expect("varmap lock");
        for (name, t) in &net.tensors {
            vars.insert(
                name.clone(),
                Var::from_tensor(t).map_err(Error::tensor(step))?,
            );
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Model::new(&net.spec, &net.input, vb).map_err(|source| Error::Build {
        step: step.into(),
        source,
    })?;
    model.set_seed(cfg.seed);
    let params = candle_nn::ParamsAdamW {
        lr: cfg.lr,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut opt = candle_nn::AdamW::new(varmap.all_vars(), params).map_err(Error::tensor(step))?;
    let targets: Vec<f32> = match &data.targets {
        Targets::Classes { labels, .. } => labels.iter().map(|&l| l as f32).collect(),
        Targets::Regression { values } => values.clone(),
    };
    let per = data.sample_len();
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut t = 0u64;
    let vars = varmap.data().lock().expect("varmap lock").clone();
    for _ in 0..cfg.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(cfg.batch_size.max(1)) {
            let x: Vec<f32> = chunk
                .iter()
                .flat_map(|&i| data.features[i * per..(i + 1) * per].iter().copied())
                .collect();
            let y: Vec<f32> = chunk.iter().map(|&i| targets[i]).collect();
            let mut shape = vec![chunk.len()];
            shape.extend_from_slice(&data.sample_shape);
            let dev = Device::Cpu;
            let x = Tensor::from_vec(x, shape, &dev).map_err(Error::tensor(step))?;
            let y = Tensor::from_vec(y, chunk.len(), &dev).map_err(Error::tensor(step))?;
            model.set_step(t);
            t += 1;
            let logits = model.forward_t(&x, true).map_err(Error::tensor(step))?;
            let l = lepton_nn::loss(loss, &logits, &y, None).map_err(|source| Error::Build {
                step: "fine-tune loss".into(),
                source,
            })?;
            opt.backward_step(&l).map_err(Error::tensor(step))?;
            for (name, mask) in masks {
                if let Some(v) = vars.get(name) {
                    let m = (v.as_tensor() * mask).map_err(Error::tensor(step))?;
                    v.set(&m).map_err(Error::tensor(step))?;
                }
            }
        }
    }
    for (name, v) in vars {
        net.tensors.insert(name, v.as_tensor().detach());
    }
    Ok(())
}
