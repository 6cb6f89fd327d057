//! `adapter_config.json`: the modules LoRA can adapt ([`LoraModule`]) and the resolved settings
//! ([`PeftConfig`]); see the parent module for what is checked.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{MAX_LAYERS, MAX_LORA_RANK};
use crate::gguf::LlamaConfig;
use crate::{Error, Result};

pub(super) const KEY_PREFIX: &str = "base_model.model.model.layers.";

/// A projection of a Llama-family decoder layer that LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoraModule {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
}

impl LoraModule {
    /// Every module, in layer order.
    pub const ALL: [LoraModule; 7] = [
        LoraModule::QProj,
        LoraModule::KProj,
        LoraModule::VProj,
        LoraModule::OProj,
        LoraModule::GateProj,
        LoraModule::UpProj,
        LoraModule::DownProj,
    ];

    /// The module names, as an error message lists them.
    pub const NAMES: &'static str = "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj";

    /// Position in [`LoraModule::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// PEFT's (and Hugging Face's) name of the module: `q_proj`, ...
    pub fn name(self) -> &'static str {
        match self {
            LoraModule::QProj => "q_proj",
            LoraModule::KProj => "k_proj",
            LoraModule::VProj => "v_proj",
            LoraModule::OProj => "o_proj",
            LoraModule::GateProj => "gate_proj",
            LoraModule::UpProj => "up_proj",
            LoraModule::DownProj => "down_proj",
        }
    }

    /// The module named `name`, if a decoder layer has it.
    pub fn from_name(name: &str) -> Option<LoraModule> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The sub-module the projection sits in: `self_attn` or `mlp`.
    pub fn group(self) -> &'static str {
        match self {
            LoraModule::QProj | LoraModule::KProj | LoraModule::VProj | LoraModule::OProj => {
                "self_attn"
            }
            _ => "mlp",
        }
    }

    /// `(in, out)` features of the projection in a decoder of configuration `c`.
    pub fn features(self, c: &LlamaConfig) -> (usize, usize) {
        let (hidden, q, kv, ff) = (
            c.hidden_size,
            c.num_heads * c.head_dim,
            c.num_kv_heads * c.head_dim,
            c.intermediate_size,
        );
        match self {
            LoraModule::QProj => (hidden, q),
            LoraModule::KProj | LoraModule::VProj => (hidden, kv),
            LoraModule::OProj => (q, hidden),
            LoraModule::GateProj | LoraModule::UpProj => (hidden, ff),
            LoraModule::DownProj => (ff, hidden),
        }
    }

    /// PEFT's key of this module's `lora_A` (`a == true`) or `lora_B` weight in `layer`.
    pub fn key(self, layer: usize, a: bool) -> String {
        format!(
            "{KEY_PREFIX}{layer}.{}.{}.lora_{}.weight",
            self.group(),
            self.name(),
            if a { "A" } else { "B" }
        )
    }
}

/// The resolved settings of an adapter (from `adapter_config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct PeftConfig {
    /// The rank `r`.
    pub r: usize,
    /// `lora_alpha` (PEFT's default 8).
    pub lora_alpha: f32,
    /// Scale by `alpha / sqrt(r)` instead of `alpha / r` (PEFT's `use_rslora`, default false).
    pub use_rslora: bool,
    /// The adapted modules, sorted, without repeats.
    pub target_modules: Vec<LoraModule>,
    /// The adapted layers (`layers_to_transform`); `None`: all of them.
    pub layers: Option<Vec<usize>>,
    /// `base_model_name_or_path`, as written by PEFT (informational).
    pub base_model: Option<String>,
}

impl PeftConfig {
    /// A plain LoRA configuration: rank `r`, `alpha`, the given modules, all layers.
    pub fn new(r: usize, lora_alpha: f32, target_modules: &[LoraModule]) -> Self {
        let mut target_modules = target_modules.to_vec();
        target_modules.sort();
        target_modules.dedup();
        Self {
            r,
            lora_alpha,
            use_rslora: false,
            target_modules,
            layers: None,
            base_model: None,
        }
    }

    /// The factor `s` of `y = W x + s · B (A x)`.
    pub fn scale(&self) -> f32 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f32).sqrt()
        } else {
            self.lora_alpha / self.r as f32
        }
    }

    /// Whether `layer` is adapted.
    pub fn adapts_layer(&self, layer: usize) -> bool {
        self.layers.as_ref().is_none_or(|l| l.contains(&layer))
    }

    /// The JSON PEFT reads back (`LoraConfig.from_pretrained`).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": 0.0,
            "use_rslora": self.use_rslora,
            "target_modules": self.target_modules.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "layers_to_transform": self.layers,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "base_model_name_or_path": self.base_model,
        })
    }
}

/// `adapter_config.json` as PEFT writes it; only the fields read here (unknown fields are
/// tolerated: PEFT adds some in every release).
#[derive(Deserialize)]
struct RawConfig {
    peft_type: Option<Value>,
    r: Option<Value>,
    lora_alpha: Option<Value>,
    use_rslora: Option<Value>,
    target_modules: Option<Value>,
    fan_in_fan_out: Option<Value>,
    bias: Option<Value>,
    layers_to_transform: Option<Value>,
    base_model_name_or_path: Option<Value>,
    /// Fields that change the maths: each must be absent, null, false or empty.
    use_dora: Option<Value>,
    rank_pattern: Option<Value>,
    alpha_pattern: Option<Value>,
    modules_to_save: Option<Value>,
    layer_replication: Option<Value>,
    lora_bias: Option<Value>,
    target_parameters: Option<Value>,
    exclude_modules: Option<Value>,
    trainable_token_indices: Option<Value>,
}

fn is_off(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

impl PeftConfig {
    /// Parse and check `adapter_config.json`; errors name the file and the field.
    pub fn from_file(path: &Path) -> Result<Self> {
        let raw: RawConfig = crate::hf::parse_json_file(path)?;
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        match &raw.peft_type {
            Some(Value::String(s)) if s == "LORA" => {}
            None => return Err(bad("missing field peft_type (expected \"LORA\")".into())),
            Some(v) => {
                return Err(bad(format!(
                    "field peft_type is {v}; only \"LORA\" adapters are supported"
                )))
            }
        }
        for (field, v) in [
            ("use_dora", &raw.use_dora),
            ("rank_pattern", &raw.rank_pattern),
            ("alpha_pattern", &raw.alpha_pattern),
            ("modules_to_save", &raw.modules_to_save),
            ("layer_replication", &raw.layer_replication),
            ("lora_bias", &raw.lora_bias),
            ("target_parameters", &raw.target_parameters),
            ("exclude_modules", &raw.exclude_modules),
            ("trainable_token_indices", &raw.trainable_token_indices),
        ] {
            if !is_off(v) {
                return Err(bad(format!(
                    "field {field} is {}; adapters using it are not supported (it must be absent, null, false or empty)",
                    v.as_ref().expect("not off")
                )));
            }
        }
        if !matches!(raw.fan_in_fan_out, None | Some(Value::Bool(false))) {
            return Err(bad(format!(
                "field fan_in_fan_out is {}; only false (PyTorch Linear layout) is supported",
                raw.fan_in_fan_out.as_ref().expect("present")
            )));
        }
        match &raw.bias {
            None => {}
            Some(Value::String(s)) if s == "none" => {}
            Some(v) => {
                return Err(bad(format!(
                    "field bias is {v}; only \"none\" is supported (adapters with trained biases are not)"
                )))
            }
        }
        let r = match &raw.r {
            None => return Err(bad("missing field r (the LoRA rank)".into())),
            Some(v) => v
                .as_u64()
                .filter(|&r| r > 0 && r as usize <= MAX_LORA_RANK)
                .ok_or_else(|| {
                    bad(format!(
                        "field r is {v}, expected an integer from 1 to {MAX_LORA_RANK}"
                    ))
                })? as usize,
        };
        let lora_alpha = match &raw.lora_alpha {
            None | Some(Value::Null) => 8.0,
            Some(v) => v
                .as_f64()
                .filter(|a| a.is_finite() && *a > 0.0)
                .ok_or_else(|| {
                    bad(format!(
                        "field lora_alpha is {v}, expected a positive number"
                    ))
                })? as f32,
        };
        let use_rslora = match &raw.use_rslora {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(bad(format!(
                    "field use_rslora is {v}, expected true or false"
                )))
            }
        };
        let target_modules = match &raw.target_modules {
            None | Some(Value::Null) => {
                return Err(bad(format!(
                    "missing field target_modules (a list of: {})",
                    LoraModule::NAMES
                )))
            }
            Some(Value::String(s)) if s == "all-linear" => LoraModule::ALL.to_vec(),
            Some(Value::String(s)) => {
                return Err(bad(format!(
                    "field target_modules is the pattern {s:?}; list the module names instead ({}), or \"all-linear\"",
                    LoraModule::NAMES
                )))
            }
            Some(Value::Array(items)) if !items.is_empty() => {
                let mut out = Vec::new();
                for item in items {
                    let name = item.as_str().ok_or_else(|| {
                        bad(format!("field target_modules has {item}, expected a module name"))
                    })?;
                    out.push(LoraModule::from_name(name).ok_or_else(|| {
                        bad(format!(
                            "target module {name:?} (field target_modules) does not exist in a Llama-family decoder layer (modules: {})",
                            LoraModule::NAMES
                        ))
                    })?);
                }
                out
            }
            Some(v) => {
                return Err(bad(format!(
                    "field target_modules is {v}, expected a non-empty list of module names"
                )))
            }
        };
        let layers = match &raw.layers_to_transform {
            None | Some(Value::Null) => None,
            Some(v) => {
                let list: Option<Vec<usize>> = match v {
                    Value::Number(_) => v.as_u64().map(|l| vec![l as usize]),
                    Value::Array(a) if !a.is_empty() => {
                        a.iter().map(|l| l.as_u64().map(|l| l as usize)).collect()
                    }
                    _ => None,
                };
                let mut list = list
                    .filter(|l| l.iter().all(|&l| l < MAX_LAYERS))
                    .ok_or_else(|| {
                        bad(format!(
                            "field layers_to_transform is {v}, expected a layer index or a non-empty list of them (below {MAX_LAYERS})"
                        ))
                    })?;
                list.sort_unstable();
                list.dedup();
                Some(list)
            }
        };
        let mut config = PeftConfig::new(r, lora_alpha, &target_modules);
        config.use_rslora = use_rslora;
        config.layers = layers;
        config.base_model = raw
            .base_model_name_or_path
            .as_ref()
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(config)
    }
}
