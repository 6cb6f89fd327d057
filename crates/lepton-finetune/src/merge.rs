//! `lepton lora merge`: fold an adapter into its base (`W + (α/r)·B·A`) and write a Hugging Face
//! Llama folder: `config.json`, `model.safetensors` (f32), `tokenizer.json`,
//! `tokenizer_config.json` (special tokens and the chat template).

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde_json::json;

use crate::base::Base;
use crate::decoder::{Block, Decoder, MODULES};
use crate::error::{CandleContext, Error, Result};
use crate::lora::LoraLinear;

/// The decoder with every adapter folded into its base weight (no adapters left).
pub fn merged(decoder: &Decoder) -> Result<Decoder> {
    let mut out = decoder.clone();
    for layer in &mut out.layers {
        for m in MODULES {
            let lin = layer.module_mut(m).expect("known module");
            if let Some(pair) = lin.lora.take() {
                *lin = LoraLinear::frozen(
                    (&lin.base.to_f32().ctx("dequantizing a base weight")? + pair.delta()?)
                        .ctx("merging an adapter")?,
                );
            }
        }
    }
    Ok(out)
}

/// Write `base` with `decoder`'s weights (merged) as an HF folder `dir`.
pub fn write_hf_folder(dir: &Path, base: &Base, decoder: &Decoder) -> Result<()> {
    fs_err::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    let c = &decoder.config;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    tensors.insert(
        "model.embed_tokens.weight".into(),
        decoder.embed.to_f32().ctx("dequantizing the embedding")?,
    );
    tensors.insert("model.norm.weight".into(), decoder.norm.clone());
    if let Some(h) = &decoder.lm_head {
        tensors.insert(
            "lm_head.weight".into(),
            h.to_f32().ctx("dequantizing the LM head")?,
        );
    }
    for (i, l) in decoder.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        tensors.insert(format!("{p}.input_layernorm.weight"), l.attn_norm.clone());
        tensors.insert(
            format!("{p}.post_attention_layernorm.weight"),
            l.ffn_norm.clone(),
        );
        for m in MODULES {
            let lin = l.module(m).expect("known module");
            let w = match &lin.lora {
                Some(pair) => (&lin.base.to_f32().ctx("dequantizing a base weight")?
                    + pair.delta()?)
                .ctx("merging an adapter")?,
                None => lin.base.to_f32().ctx("dequantizing a base weight")?,
            };
            tensors.insert(format!("{p}.{}.{m}.weight", Block::parent(m)), w);
        }
    }
    let wpath = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &wpath)
        .ctx(&format!("writing {}", wpath.display()))?;
    let s = &base.special;
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": c.context_length,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "tie_word_embeddings": decoder.lm_head.is_none(),
        "bos_token_id": s.bos_id,
        "eos_token_id": s.eos_id,
        "attention_bias": false,
        "mlp_bias": false,
        "torch_dtype": "float32",
    });
    let write = |name: &str, v: &serde_json::Value| -> Result<()> {
        let p = dir.join(name);
        let text = serde_json::to_string_pretty(v).map_err(|source| Error::Json {
            op: "writing",
            path: p.clone(),
            source,
        })?;
        fs_err::write(&p, text).map_err(Error::io("writing", &p))
    };
    write("config.json", &config)?;
    let mut tc = json!({
        "bos_token": s.bos,
        "eos_token": s.eos,
        "add_bos_token": s.add_bos,
        "model_max_length": c.context_length,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    if let Some(t) = &base.template_source {
        tc["chat_template"] = json!(t);
    }
    write("tokenizer_config.json", &tc)?;
    let tpath = dir.join("tokenizer.json");
    base.tokenizer
        .save(&tpath, false)
        .map_err(|e| Error::Tokenizer {
            what: tpath.display().to_string(),
            message: format!("saving: {e}"),
        })
}
