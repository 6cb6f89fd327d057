//! LoRA adapters in PEFT's format: a folder with `adapter_config.json` and
//! `adapter_model.safetensors`, as `peft`'s `save_pretrained` writes them.
//!
//! # Maths and shapes
//! For a targeted projection `W` (`out × in`, PyTorch's `[out, in]`) the adapter holds
//! `A` (`[r, in]`) and `B` (`[out, r]`), and the adapted projection is
//! ```text
//! y = W x + s · B (A x),   s = lora_alpha / r   (lora_alpha / sqrt(r) with use_rslora)
//! ```
//! Tensors are named `base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A,B}.weight`
//! with `module` one of `q_proj k_proj v_proj o_proj` (under `self_attn`) and
//! `gate_proj up_proj down_proj` (under `mlp`). Rows of `B` are in Hugging Face order: a decoder
//! whose Wq/Wk rows are in GGUF's RoPE order permutes `B` for `q_proj`/`k_proj` itself.
//!
//! # What is checked
//! `adapter_config.json` (at most [`crate::hf::MAX_CONFIG_BYTES`]): `peft_type` is `"LORA"`,
//! `r` > 0 (at most [`MAX_LORA_RANK`]), `lora_alpha` a finite positive number (PEFT's default 8),
//! `target_modules` a list of the modules above (or `"all-linear"`), `fan_in_fan_out` false,
//! `bias` `"none"`, and the features that change the maths are absent or off (`use_dora`,
//! `rank_pattern`, `alpha_pattern`, `modules_to_save`, `layer_replication`, `lora_bias`,
//! `target_parameters`, `exclude_modules`, `trainable_token_indices`). Other fields are ignored:
//! PEFT adds new ones in every release, so unknown fields are tolerated on purpose.
//!
//! `adapter_model.safetensors` (at most [`MAX_ADAPTER_BYTES`], also as f32): every key must be a
//! LoRA tensor of a listed module; each `A` is `[r, in]`, each `B` is `[out, r]`, with `in`/`out`
//! the base model's when one is given ([`PeftAdapter::load_for`]); every targeted layer has both.
//! Shapes are checked from the header before any tensor is converted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

use crate::gguf::LlamaConfig;
use crate::{Error, Result};

mod config;

use config::KEY_PREFIX;
pub use config::{LoraModule, PeftConfig};

/// The configuration file of a PEFT adapter folder.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The weights file of a PEFT adapter folder.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Largest adapter weights file read, and largest f32 expansion of its tensors: 2 GiB.
pub const MAX_ADAPTER_BYTES: u64 = 2 << 30;
/// Largest LoRA rank accepted: 4096.
pub const MAX_LORA_RANK: usize = 4096;
/// Largest layer index accepted in a tensor name when no base model is given.
pub const MAX_LAYERS: usize = 4096;

/// One adapted projection: `A` (`rank × in`, row-major) and `B` (`out × rank`), as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub rank: usize,
    pub in_features: usize,
    pub out_features: usize,
}

impl LoraPair {
    /// Shape of `A`: `[rank, in]`.
    pub fn a_shape(&self) -> [usize; 2] {
        [self.rank, self.in_features]
    }
    /// Shape of `B`: `[out, rank]`.
    pub fn b_shape(&self) -> [usize; 2] {
        [self.out_features, self.rank]
    }
}

/// A PEFT LoRA adapter: its configuration and, per (layer, module), its `A` and `B`.
#[derive(Debug, Clone)]
pub struct PeftAdapter {
    /// The folder it was read from (empty for an adapter built in memory).
    pub dir: PathBuf,
    pub config: PeftConfig,
    pairs: BTreeMap<(usize, LoraModule), LoraPair>,
}

impl PeftAdapter {
    /// Read an adapter folder, checking every tensor against the configuration and against the
    /// other layers (the base model's shapes are checked by [`PeftAdapter::load_for`]).
    pub fn load(dir: &Path) -> Result<Self> {
        Self::read(dir, None)
    }

    /// Read an adapter folder for a base of configuration `base`: every tensor's shape is checked
    /// against the base's projection (the error names the tensor), and no layer index may exceed
    /// the base's.
    pub fn load_for(dir: &Path, base: &LlamaConfig) -> Result<Self> {
        Self::read(dir, Some(base))
    }

    /// An adapter built in memory (for a trainer to [`PeftAdapter::save`]); every pair is checked
    /// against `config` (rank, targeted module and layer) and `base`.
    pub fn new(
        config: PeftConfig,
        pairs: BTreeMap<(usize, LoraModule), LoraPair>,
        base: &LlamaConfig,
    ) -> Result<Self> {
        let adapter = Self {
            dir: PathBuf::new(),
            config,
            pairs,
        };
        for (&(layer, module), p) in &adapter.pairs {
            let name = module.key(layer, true);
            let bad = |message: String| Error::Config {
                path: PathBuf::from(WEIGHTS_FILE),
                message: format!("tensor {name}: {message}"),
            };
            if !adapter.config.target_modules.contains(&module) {
                return Err(bad("module not in target_modules".into()));
            }
            if layer >= base.num_layers || !adapter.config.adapts_layer(layer) {
                return Err(bad(format!("layer {layer} is not adapted")));
            }
            let (i, o) = module.features(base);
            if (p.rank, p.in_features, p.out_features) != (adapter.config.r, i, o)
                || p.a.len() != p.rank * i
                || p.b.len() != o * p.rank
            {
                return Err(bad(format!(
                    "A {:?} / B {:?} ({} / {} values), expected A [{}, {i}] and B [{o}, {}]",
                    p.a_shape(),
                    p.b_shape(),
                    p.a.len(),
                    p.b.len(),
                    adapter.config.r,
                    adapter.config.r
                )));
            }
        }
        adapter.check_complete(base.num_layers, &PathBuf::from(WEIGHTS_FILE))?;
        Ok(adapter)
    }

    /// The pair of `module` in `layer`, if adapted.
    pub fn pair(&self, layer: usize, module: LoraModule) -> Option<&LoraPair> {
        self.pairs.get(&(layer, module))
    }

    /// Every adapted (layer, module) with its pair, in layer order.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, LoraModule, &LoraPair)> {
        self.pairs.iter().map(|(&(l, m), p)| (l, m, p))
    }

    /// Number of trainable values (`Σ r·(in + out)`), as PEFT counts them.
    pub fn parameter_count(&self) -> usize {
        self.pairs.values().map(|p| p.a.len() + p.b.len()).sum()
    }

    /// Write `adapter_config.json` and `adapter_model.safetensors` (f32) into `dir`, as PEFT's
    /// `save_pretrained` does.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        fs_err::create_dir_all(dir).map_err(io(dir))?;
        let cfg_path = dir.join(CONFIG_FILE);
        let text = serde_json::to_string_pretty(&self.config.to_json()).expect("plain JSON");
        fs_err::write(&cfg_path, text).map_err(io(&cfg_path))?;
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut owned = Vec::new();
        for (&(layer, module), p) in &self.pairs {
            owned.push((module.key(layer, true), p.a_shape(), bytes(&p.a)));
            owned.push((module.key(layer, false), p.b_shape(), bytes(&p.b)));
        }
        let views = owned
            .iter()
            .map(|(name, shape, data)| {
                safetensors::tensor::TensorView::new(Dtype::F32, shape.to_vec(), data)
                    .map(|v| (name.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .expect("shapes match their data");
        let path = dir.join(WEIGHTS_FILE);
        safetensors::serialize_to_file(views, None, &path).map_err(|e| Error::Config {
            path: path.clone(),
            message: format!("writing the adapter weights: {e}"),
        })
    }

    fn read(dir: &Path, base: Option<&LlamaConfig>) -> Result<Self> {
        let missing = |file: &str| Error::MissingFile {
            dir: dir.to_path_buf(),
            file: file.into(),
        };
        let cfg_path = dir.join(CONFIG_FILE);
        if !cfg_path.is_file() {
            return Err(missing(CONFIG_FILE));
        }
        let config = PeftConfig::from_file(&cfg_path)?;
        let path = dir.join(WEIGHTS_FILE);
        if !path.is_file() {
            return Err(missing(WEIGHTS_FILE));
        }
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let bad = |message: String| Error::Config {
            path: path.clone(),
            message,
        };
        let file = fs_err::File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len > MAX_ADAPTER_BYTES {
            return Err(bad(format!(
                "the file has {len} bytes, more than the {MAX_ADAPTER_BYTES}-byte limit for adapters"
            )));
        }
        // SAFETY: the file is only read; an adapter changed while it is mapped is a user error
        // whose worst outcome is wrong weights (as with any reader).
        let map = unsafe { memmap2::Mmap::map(file.file()) }.map_err(io)?;
        let st = SafeTensors::deserialize(&map)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;

        // Header pass: names, shapes and the f32 budget, before converting anything.
        let r = config.r;
        let mut found: BTreeMap<(usize, LoraModule), [Option<String>; 2]> = BTreeMap::new();
        let mut features: BTreeMap<LoraModule, (usize, usize)> = BTreeMap::new();
        let mut f32_bytes: u64 = 0;
        // In name order, so that the tensor an error names does not depend on the file's order.
        let mut views: Vec<_> = st.iter().collect();
        views.sort_unstable_by_key(|(name, _)| *name);
        for (name, view) in views {
            let (layer, module, is_a) = parse_key(name).ok_or_else(|| {
                bad(format!(
                    "unexpected tensor {name} (expected {KEY_PREFIX}{{i}}.{{self_attn|mlp}}.{{module}}.lora_{{A,B}}.weight)"
                ))
            })?;
            if !config.target_modules.contains(&module) {
                return Err(bad(format!(
                    "tensor {name} adapts {}, which target_modules in {CONFIG_FILE} does not list",
                    module.name()
                )));
            }
            let max_layers = base.map_or(MAX_LAYERS, |b| b.num_layers);
            if layer >= max_layers {
                return Err(bad(format!(
                    "tensor {name} is for layer {layer}, but the base model has {max_layers} layers"
                )));
            }
            if !config.adapts_layer(layer) {
                return Err(bad(format!(
                    "tensor {name} is for layer {layer}, which layers_to_transform does not list"
                )));
            }
            if !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                return Err(bad(format!(
                    "tensor {name} has dtype {:?} (supported: F32, F16, BF16)",
                    view.dtype()
                )));
            }
            let shape = view.shape();
            let (fin, fout) = match base {
                Some(b) => module.features(b),
                None => {
                    // Without a base, every layer must agree with the first tensor of the module.
                    let e = features.entry(module).or_insert((0, 0));
                    if is_a && e.0 == 0 {
                        e.0 = shape.get(1).copied().unwrap_or(0);
                    }
                    if !is_a && e.1 == 0 {
                        e.1 = shape.first().copied().unwrap_or(0);
                    }
                    *e
                }
            };
            let expected = if is_a { vec![r, fin] } else { vec![fout, r] };
            if shape != expected.as_slice() || shape.contains(&0) {
                return Err(Error::TensorShape {
                    path: path.clone(),
                    name: name.to_owned(),
                    expected,
                    found: shape.to_vec(),
                });
            }
            let values = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
            f32_bytes = values
                .and_then(|v| v.checked_mul(4))
                .and_then(|b| f32_bytes.checked_add(b))
                .filter(|&b| b <= MAX_ADAPTER_BYTES)
                .ok_or_else(|| {
                    bad(format!(
                        "the tensors take more than {MAX_ADAPTER_BYTES} bytes as f32 (at tensor {name})"
                    ))
                })?;
            found.entry((layer, module)).or_default()[usize::from(!is_a)] = Some(name.to_owned());
        }

        // Conversion pass.
        let mut pairs = BTreeMap::new();
        for (&(layer, module), names) in &found {
            let [Some(a_name), Some(b_name)] = names else {
                let a_missing = names[0].is_none();
                return Err(Error::MissingTensor {
                    path: path.clone(),
                    name: module.key(layer, a_missing),
                    expected: vec![],
                });
            };
            let a = st
                .tensor(a_name)
                .map_err(|e| bad(format!("tensor {a_name}: {e}")))?;
            let b = st
                .tensor(b_name)
                .map_err(|e| bad(format!("tensor {b_name}: {e}")))?;
            let (in_features, out_features) = (a.shape()[1], b.shape()[0]);
            pairs.insert(
                (layer, module),
                LoraPair {
                    a: to_f32(&a),
                    b: to_f32(&b),
                    rank: r,
                    in_features,
                    out_features,
                },
            );
        }
        let adapter = Self {
            dir: dir.to_path_buf(),
            config,
            pairs,
        };
        let layers = match base {
            Some(b) => b.num_layers,
            None => adapter.pairs.keys().map(|&(l, _)| l + 1).max().unwrap_or(0),
        };
        if adapter.pairs.is_empty() {
            return Err(bad("the file holds no LoRA tensors".into()));
        }
        adapter.check_complete(layers, &path)?;
        Ok(adapter)
    }

    /// Every adapted layer below `layers` has every targeted module.
    fn check_complete(&self, layers: usize, path: &Path) -> Result<()> {
        for layer in (0..layers).filter(|&l| self.config.adapts_layer(l)) {
            for &module in &self.config.target_modules {
                if !self.pairs.contains_key(&(layer, module)) {
                    return Err(Error::MissingTensor {
                        path: path.to_path_buf(),
                        name: module.key(layer, true),
                        expected: vec![],
                    });
                }
            }
        }
        Ok(())
    }
}

/// `(layer, module, is_a)` of a PEFT LoRA key.
fn parse_key(name: &str) -> Option<(usize, LoraModule, bool)> {
    let rest = name.strip_prefix(KEY_PREFIX)?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) || layer.len() > 6 {
        return None;
    }
    let layer: usize = layer.parse().ok()?;
    let (group, rest) = rest.split_once('.')?;
    let (module, rest) = rest.split_once('.')?;
    let module = LoraModule::from_name(module)?;
    if module.group() != group {
        return None;
    }
    let is_a = match rest {
        "lora_A.weight" => true,
        "lora_B.weight" => false,
        _ => return None,
    };
    Some((layer, module, is_a))
}

fn to_f32(view: &safetensors::tensor::TensorView<'_>) -> Vec<f32> {
    let bytes = view.data();
    match view.dtype() {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => unreachable!("dtype checked in the header pass"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::decoder::arch::ArchParts;
    use serde_json::Value;

    /// 2 layers, hidden 8, 2 query heads and 1 KV head of 4, FFN 16.
    fn base() -> LlamaConfig {
        LlamaConfig {
            name: "tiny".into(),
            vocab_size: 32,
            hidden_size: 8,
            intermediate_size: 16,
            num_layers: 2,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 4,
            context_length: 64,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-5,
            arch: ArchParts::llama(),
        }
    }

    fn pair(r: usize, module: LoraModule, c: &LlamaConfig, seed: f32) -> LoraPair {
        let (i, o) = module.features(c);
        LoraPair {
            a: (0..r * i).map(|k| (k as f32 * 0.37 + seed).sin()).collect(),
            b: (0..o * r).map(|k| (k as f32 * 0.11 - seed).cos()).collect(),
            rank: r,
            in_features: i,
            out_features: o,
        }
    }

    fn adapter(c: &LlamaConfig, modules: &[LoraModule]) -> PeftAdapter {
        let config = PeftConfig::new(4, 8.0, modules);
        let mut pairs = BTreeMap::new();
        for l in 0..c.num_layers {
            for &m in modules {
                pairs.insert((l, m), pair(4, m, c, l as f32));
            }
        }
        PeftAdapter::new(config, pairs, c).unwrap()
    }

    fn saved(modules: &[LoraModule]) -> (tempfile::TempDir, PeftAdapter) {
        let dir = tempfile::tempdir().unwrap();
        let a = adapter(&base(), modules);
        a.save(dir.path()).unwrap();
        (dir, a)
    }

    /// Rewrite `adapter_config.json` with `edit` applied to its JSON.
    fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
        let p = dir.join(CONFIG_FILE);
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        edit(v.as_object_mut().unwrap());
        std::fs::write(&p, v.to_string()).unwrap();
    }

    /// Rewrite the weights with the given (name, shape, f32 values).
    fn write_tensors(dir: &Path, tensors: &[(String, Vec<usize>)]) {
        let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(n, s)| {
                let len: usize = s.iter().product();
                let bytes = (0..len)
                    .flat_map(|k| (k as f32 * 0.01).to_le_bytes())
                    .collect();
                (n.clone(), s.clone(), bytes)
            })
            .collect();
        let views = data.iter().map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        });
        safetensors::serialize_to_file(views, None, &dir.join(WEIGHTS_FILE)).unwrap();
    }

    fn all_tensors(c: &LlamaConfig, modules: &[LoraModule]) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for l in 0..c.num_layers {
            for &m in modules {
                let (i, o) = m.features(c);
                out.push((m.key(l, true), vec![4, i]));
                out.push((m.key(l, false), vec![o, 4]));
            }
        }
        out
    }

    fn err(dir: &Path) -> String {
        let e = PeftAdapter::load_for(dir, &base()).unwrap_err();
        format!("{e}")
    }

    const QV: [LoraModule; 2] = [LoraModule::QProj, LoraModule::VProj];

    #[test]
    fn saved_adapter_reads_back_equal_with_and_without_the_base() {
        let (dir, want) = saved(&LoraModule::ALL);
        for got in [
            PeftAdapter::load(dir.path()).unwrap(),
            PeftAdapter::load_for(dir.path(), &base()).unwrap(),
        ] {
            assert_eq!(got.config, want.config);
            assert_eq!(got.pairs().count(), 2 * 7);
            for (l, m, p) in want.pairs() {
                assert_eq!(got.pair(l, m), Some(p), "layer {l} {}", m.name());
            }
        }
        assert_eq!(want.config.scale(), 2.0);
        // q: 4·(8 + 8), k, v: 4·(8 + 4), o: 4·(8 + 8), gate, up, down: 4·(8 + 16); two layers.
        assert_eq!(want.parameter_count(), 2 * 4 * (16 + 12 + 12 + 16 + 3 * 24));
    }

    #[test]
    fn peft_config_fields_are_read_and_unknown_ones_tolerated() {
        let (dir, _) = saved(&QV);
        edit_config(dir.path(), |c| {
            c.insert("lora_alpha".into(), 16.into());
            c.insert("use_rslora".into(), true.into());
            c.insert("megatron_core".into(), "megatron.core".into());
            c.insert("some_future_field".into(), serde_json::json!({"x": 1}));
            c.insert("use_dora".into(), false.into());
            c.insert("rank_pattern".into(), serde_json::json!({}));
        });
        let a = PeftAdapter::load_for(dir.path(), &base()).unwrap();
        assert_eq!(a.config.lora_alpha, 16.0);
        assert_eq!(a.config.scale(), 16.0 / 2.0, "rsLoRA: alpha / sqrt(r)");
    }

    #[test]
    fn f16_and_bf16_tensors_become_f32() {
        let dir = tempfile::tempdir().unwrap();
        let c = base();
        PeftConfig::new(4, 8.0, &[LoraModule::VProj]);
        adapter(&c, &[LoraModule::VProj]).save(dir.path()).unwrap();
        let mut owned = Vec::new();
        for l in 0..2 {
            let a: Vec<u8> = (0..32)
                .flat_map(|k| half::f16::from_f32(k as f32 / 8.0).to_le_bytes())
                .collect();
            let b: Vec<u8> = (0..16)
                .flat_map(|k| half::bf16::from_f32(-(k as f32) / 4.0).to_le_bytes())
                .collect();
            owned.push((LoraModule::VProj.key(l, true), Dtype::F16, vec![4, 8], a));
            owned.push((LoraModule::VProj.key(l, false), Dtype::BF16, vec![4, 4], b));
        }
        let views = owned.iter().map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        });
        safetensors::serialize_to_file(views, None, &dir.path().join(WEIGHTS_FILE)).unwrap();
        let a = PeftAdapter::load_for(dir.path(), &c).unwrap();
        let p = a.pair(1, LoraModule::VProj).unwrap();
        assert_eq!(p.a[9], 9.0 / 8.0);
        assert_eq!(p.b[5], -5.0 / 4.0);
    }

    #[test]
    fn adapter_for_another_base_is_refused_naming_the_tensor() {
        let (dir, _) = saved(&QV);
        let mut other = base();
        other.hidden_size = 16;
        other.head_dim = 8;
        let e = PeftAdapter::load_for(dir.path(), &other).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, Error::TensorShape { .. }) && msg.contains("lora_A.weight"),
            "{msg}"
        );
        assert!(
            msg.contains("base_model.model.model.layers.0.self_attn."),
            "{msg}"
        );
        // A deeper adapter than the base: the tensor of the extra layer is named.
        let mut shallow = base();
        shallow.num_layers = 1;
        let msg = PeftAdapter::load_for(dir.path(), &shallow)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("layers.1.") && msg.contains("has 1 layers"),
            "{msg}"
        );
    }

    #[test]
    fn inconsistent_layers_are_refused_without_a_base() {
        let (dir, _) = saved(&QV);
        let mut tensors = all_tensors(&base(), &QV);
        tensors[7].1 = vec![12, 4]; // layer 1 v_proj B: 12 outputs where layer 0 has 4
        write_tensors(dir.path(), &tensors);
        let msg = PeftAdapter::load(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("layers.1.self_attn.v_proj.lora_B.weight") && msg.contains("[12, 4]"),
            "{msg}"
        );
    }

    #[test]
    fn a_target_module_that_does_not_exist_is_refused_naming_it() {
        let (dir, _) = saved(&QV);
        edit_config(dir.path(), |c| {
            c.insert(
                "target_modules".into(),
                serde_json::json!(["q_proj", "qkv_proj"]),
            );
        });
        let msg = err(dir.path());
        assert!(
            msg.contains("\"qkv_proj\"") && msg.contains("target_modules"),
            "{msg}"
        );
        edit_config(dir.path(), |c| {
            c.insert("target_modules".into(), "q_proj|v_proj".into());
        });
        assert!(err(dir.path()).contains("pattern"));
    }

    #[test]
    fn a_rank_of_zero_and_other_bad_fields_are_refused_naming_the_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("r", 0.into(), "field r is 0"),
            ("r", "8".into(), "field r is \"8\""),
            ("peft_type", "IA3".into(), "field peft_type is \"IA3\""),
            ("use_dora", true.into(), "field use_dora"),
            (
                "rank_pattern",
                serde_json::json!({"q_proj": 16}),
                "field rank_pattern",
            ),
            (
                "modules_to_save",
                serde_json::json!(["lm_head"]),
                "field modules_to_save",
            ),
            ("fan_in_fan_out", true.into(), "field fan_in_fan_out"),
            ("bias", "all".into(), "field bias"),
            ("lora_alpha", (-1).into(), "field lora_alpha"),
            (
                "layers_to_transform",
                "x".into(),
                "field layers_to_transform",
            ),
        ];
        for (field, value, want) in cases {
            let (dir, _) = saved(&QV);
            edit_config(dir.path(), |c| {
                c.insert(field.into(), value.clone());
            });
            let msg = err(dir.path());
            assert!(
                msg.contains(want) && msg.contains(CONFIG_FILE),
                "{field}: {msg}"
            );
        }
        let (dir, _) = saved(&QV);
        edit_config(dir.path(), |c| {
            c.remove("r");
        });
        assert!(err(dir.path()).contains("missing field r"));
    }

    #[test]
    fn tensor_keys_must_be_lora_weights_of_listed_modules() {
        let (dir, _) = saved(&QV);
        let mut tensors = all_tensors(&base(), &QV);
        tensors.push((
            "base_model.model.model.embed_tokens.lora_embedding_A".into(),
            vec![4, 32],
        ));
        write_tensors(dir.path(), &tensors);
        assert!(err(dir.path()).contains("unexpected tensor base_model.model.model.embed_tokens"));

        let mut tensors = all_tensors(&base(), &QV);
        tensors.push((LoraModule::UpProj.key(0, true), vec![4, 8]));
        write_tensors(dir.path(), &tensors);
        let msg = err(dir.path());
        assert!(
            msg.contains("mlp.up_proj.lora_A") && msg.contains("does not list"),
            "{msg}"
        );

        // q_proj under mlp is not a key PEFT writes.
        let mut tensors = all_tensors(&base(), &QV);
        tensors[0].0 = tensors[0].0.replace("self_attn", "mlp");
        write_tensors(dir.path(), &tensors);
        assert!(err(dir.path()).contains("unexpected tensor"));
    }

    #[test]
    fn a_missing_half_or_layer_is_named() {
        let (dir, _) = saved(&QV);
        let mut tensors = all_tensors(&base(), &QV);
        tensors.remove(3); // layer 0 v_proj B
        write_tensors(dir.path(), &tensors);
        let msg = err(dir.path());
        assert!(
            msg.contains(
                "missing tensor base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"
            ),
            "{msg}"
        );

        let tensors: Vec<_> = all_tensors(&base(), &QV).into_iter().take(4).collect();
        write_tensors(dir.path(), &tensors);
        let msg = err(dir.path());
        assert!(
            msg.contains("layers.1.self_attn.q_proj.lora_A.weight"),
            "{msg}"
        );
        // Unless layers_to_transform says only layer 0 is adapted.
        edit_config(dir.path(), |c| {
            c.insert("layers_to_transform".into(), serde_json::json!([0]));
        });
        let a = PeftAdapter::load_for(dir.path(), &base()).unwrap();
        assert_eq!(a.pairs().count(), 2);
    }

    #[test]
    fn missing_files_and_oversized_weights_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let msg = err(dir.path());
        assert!(msg.contains("missing adapter_config.json"), "{msg}");
        let (dir, _) = saved(&QV);
        // A sparse file declaring more than the budget: refused from its length alone.
        let f = std::fs::File::create(dir.path().join(WEIGHTS_FILE)).unwrap();
        f.set_len(MAX_ADAPTER_BYTES + 1).unwrap();
        let msg = err(dir.path());
        assert!(
            msg.contains("limit for adapters") && msg.contains(WEIGHTS_FILE),
            "{msg}"
        );
        std::fs::write(dir.path().join(WEIGHTS_FILE), b"not safetensors").unwrap();
        assert!(err(dir.path()).contains("not a valid safetensors file"));
    }

    #[test]
    fn a_config_as_peft_0_17_writes_it_is_read() {
        // adapter_config.json as `LoraModel.save_pretrained` writes it (peft 0.17, Llama, r=8).
        let text = r#"{
  "alpha_pattern": {}, "auto_mapping": null,
  "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "bias": "none",
  "corda_config": null, "eva_config": null, "exclude_modules": null, "fan_in_fan_out": false,
  "inference_mode": true, "init_lora_weights": true, "layer_replication": null,
  "layers_pattern": null, "layers_to_transform": null, "loftq_config": {}, "lora_alpha": 16,
  "lora_bias": false, "lora_dropout": 0.05, "megatron_config": null, "megatron_core": "megatron.core",
  "modules_to_save": null, "peft_type": "LORA", "qalora_group_size": 16, "r": 8,
  "rank_pattern": {}, "revision": null, "target_modules": ["v_proj", "q_proj"],
  "target_parameters": null, "task_type": "CAUSAL_LM", "trainable_token_indices": null,
  "use_dora": false, "use_qalora": false, "use_rslora": false
}"#;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(CONFIG_FILE);
        std::fs::write(&p, text).unwrap();
        let c = PeftConfig::from_file(&p).unwrap();
        assert_eq!((c.r, c.lora_alpha, c.scale()), (8, 16.0, 2.0));
        assert_eq!(c.target_modules, [LoraModule::QProj, LoraModule::VProj]);
        assert_eq!(
            c.base_model.as_deref(),
            Some("HuggingFaceTB/SmolLM2-135M-Instruct")
        );
        assert!(c.layers.is_none());
    }
}
