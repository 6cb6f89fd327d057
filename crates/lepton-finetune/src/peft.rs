//! LoRA adapters in PEFT's layout: a folder with `adapter_model.safetensors` (keys
//! `base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A,B}.weight`, A `[r, in]`,
//! B `[out, r]`, f32, metadata `{"format": "pt"}`) and `adapter_config.json` with the field set
//! PEFT 0.21.2 writes (copied from a `LoraConfig(...).save_pretrained` run, so `PeftModel.
//! from_pretrained` reads it unchanged).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use serde::Deserialize;
use serde_json::json;

use crate::decoder::{Block, Decoder, MODULES};
use crate::error::{CandleContext, Error, Result};
use crate::lora::LoraPair;

pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
pub const CONFIG_FILE: &str = "adapter_config.json";

/// PEFT's key of `layer`'s `module`, `part` = `"A"` or `"B"`.
pub fn key(layer: usize, module: &str, part: &str) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{module}.lora_{part}.weight",
        Block::parent(module)
    )
}

/// The fields of `adapter_config.json` that Lepton reads.
#[derive(Debug, Clone, Deserialize)]
pub struct AdapterConfig {
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f32,
    pub target_modules: TargetModules,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub peft_type: Option<String>,
}

/// PEFT writes a list; a regex string is also allowed there.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    List(Vec<String>),
    Pattern(String),
}

/// Write `decoder`'s adapters into `dir` (created) in PEFT's layout.
pub fn save(
    dir: &Path,
    decoder: &Decoder,
    alpha: f64,
    dropout: f32,
    base_name: &str,
) -> Result<()> {
    fs_err::create_dir_all(dir).map_err(Error::io("creating the adapter folder", dir))?;
    let adapters = decoder.adapters();
    let Some((_, _, first)) = adapters.first() else {
        return Err(Error::Adapter {
            path: dir.into(),
            message: "the model has no adapter to save".into(),
        });
    };
    let r = first.rank();
    let mut tensors = Vec::new();
    let mut targets = BTreeSet::new();
    for (layer, module, pair) in &adapters {
        targets.insert(*module);
        tensors.push((key(*layer, module, "A"), pair.a.as_tensor().clone()));
        tensors.push((key(*layer, module, "B"), pair.b.as_tensor().clone()));
    }
    let path = dir.join(WEIGHTS_FILE);
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    candle_core::safetensors::save(&tensors.into_iter().collect::<HashMap<_, _>>(), &path)
        .ctx("writing adapter_model.safetensors")?;
    // candle writes no metadata; rewrite with PEFT's {"format": "pt"} header.
    rewrite_with_metadata(&path, meta)?;
    let config = json!({
        "alora_invocation_tokens": null,
        "alpha_pattern": {},
        "arrow_config": null,
        "auto_mapping": null,
        "base_model_name_or_path": base_name,
        "bias": "none",
        "corda_config": null,
        "ensure_weight_tying": false,
        "eva_config": null,
        "exclude_modules": null,
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "kasa_config": null,
        "layer_replication": null,
        "layers_pattern": null,
        "layers_to_transform": null,
        "loftq_config": {},
        "lora_alpha": alpha,
        "lora_bias": false,
        "lora_dropout": dropout,
        "lora_ga_config": null,
        "megatron_config": null,
        "megatron_core": "megatron.core",
        "modules_to_save": null,
        "monteclora_config": null,
        "peft_type": "LORA",
        "peft_version": "0.21.2",
        "qalora_group_size": 16,
        "r": r,
        "rank_pattern": {},
        "revision": null,
        "target_modules": targets.into_iter().collect::<Vec<_>>(),
        "target_parameters": null,
        "task_type": "CAUSAL_LM",
        "trainable_token_indices": null,
        "use_bdlora": null,
        "use_dora": false,
        "use_qalora": false,
        "use_rslora": false,
        "velora_config": null
    });
    let cpath = dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config).map_err(|source| Error::Json {
        op: "writing",
        path: cpath.clone(),
        source,
    })?;
    fs_err::write(&cpath, text).map_err(Error::io("writing", &cpath))
}

fn rewrite_with_metadata(path: &Path, meta: HashMap<String, String>) -> Result<()> {
    let bytes = fs_err::read(path).map_err(Error::io("reading back", path))?;
    let st =
        safetensors::SafeTensors::deserialize(&bytes).map_err(|source| Error::Safetensors {
            op: "reading back",
            path: path.into(),
            source,
        })?;
    let mut names: Vec<String> = st.names().into_iter().map(str::to_owned).collect();
    names.sort();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = names
        .iter()
        .map(|n| (n.clone(), st.tensor(n).expect("listed name")))
        .collect();
    safetensors::serialize_to_file(views, Some(meta), path).map_err(|source| Error::Safetensors {
        op: "writing",
        path: path.into(),
        source,
    })
}

/// A loaded adapter.
pub struct Adapter {
    pub path: PathBuf,
    pub config: AdapterConfig,
    /// `(layer, module, A [r, in], B [out, r])`.
    pub pairs: Vec<(usize, String, Tensor, Tensor)>,
}

impl Adapter {
    /// Read an adapter folder. The format (keys, PEFT config checks, size budget) is
    /// [`lepton_llm::peft::PeftAdapter`]'s, the reader the server uses; this adds the dropout a
    /// resumed run needs and turns the pairs into tensors.
    pub fn load(dir: &Path) -> Result<Self> {
        let peft = lepton_llm::peft::PeftAdapter::load(dir).map_err(|e| Error::Adapter {
            path: dir.into(),
            message: chain(&e),
        })?;
        let cpath = dir.join(CONFIG_FILE);
        let text = fs_err::read_to_string(&cpath).map_err(Error::io("reading", &cpath))?;
        let config: AdapterConfig = serde_json::from_str(&text).map_err(|source| Error::Json {
            op: "reading",
            path: cpath.clone(),
            source,
        })?;
        let tensor = |v: &[f32], shape: [usize; 2]| {
            Tensor::from_slice(v, shape.as_slice(), &Device::Cpu).ctx("loading a LoRA tensor")
        };
        let pairs = peft
            .pairs()
            .map(|(layer, module, p)| {
                Ok((
                    layer,
                    module.name().to_string(),
                    tensor(&p.a, p.a_shape())?,
                    tensor(&p.b, p.b_shape())?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            path: dir.into(),
            config,
            pairs,
        })
    }

    /// Attach the adapter to `decoder` as trainable pairs (replacing any); every tensor's shape
    /// is checked against the base, and a mismatch names the tensor and both shapes.
    pub fn apply(&self, decoder: &mut Decoder) -> Result<()> {
        let scale = self.config.lora_alpha / self.config.r as f64;
        let n_layers = decoder.layers.len();
        for (layer, module, a, b) in &self.pairs {
            let bad = |message: String| Error::Adapter {
                path: self.path.clone(),
                message,
            };
            if !MODULES.contains(&module.as_str()) {
                return Err(Error::UnknownTarget {
                    name: module.clone(),
                    existing: MODULES.join(", "),
                });
            }
            let block = decoder.layers.get_mut(*layer).ok_or_else(|| {
                bad(format!(
                    "tensor {} is for layer {layer}, the base has {n_layers} layers",
                    key(*layer, module, "A")
                ))
            })?;
            let lin = block.module_mut(module).expect("checked module name");
            let want_a = [self.config.r, lin.in_features()];
            let want_b = [lin.out_features(), self.config.r];
            for (t, want, part) in [(a, want_a, "A"), (b, want_b, "B")] {
                if t.dims() != want {
                    return Err(bad(format!(
                        "tensor {} has shape {:?}, the base needs {:?} (an adapter for another base model?)",
                        key(*layer, module, part),
                        t.dims(),
                        want
                    )));
                }
            }
            lin.lora = Some(LoraPair {
                a: Var::from_tensor(a).ctx("loading LoRA A")?,
                b: Var::from_tensor(b).ctx("loading LoRA B")?,
                scale,
                dropout: self.config.lora_dropout,
            });
        }
        Ok(())
    }
}

/// `e` and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
