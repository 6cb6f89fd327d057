//! The frozen base: a GGUF file (dequantized to f32) or a Hugging Face Llama folder, read through
//! lepton-llm's [`WeightSource`] (GGUF tensor names, GGUF row order), turned into a [`Decoder`] in
//! Hugging Face's layout, plus its tokenizer and chat template.
//!
//! GGUF stores Wq and Wk with the rows of each head interleaved for llama.cpp's RoPE; the inverse
//! of `convert_hf_to_gguf.py`'s `permute` ([`unpermute_rope_rows`]) restores HF's order, so the
//! decoder runs HF's rotate-half RoPE and a LoRA B of `q_proj` has PEFT's rows.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use lepton_llm::chat_template::ChatTemplate;
use lepton_llm::gguf::{GgufFile, LlamaConfig, SpecialTokens};
use lepton_llm::llama::arch::{Arch, ArchParts};
use lepton_llm::llama::WeightSource;

use crate::decoder::{Block, Decoder, DecoderConfig};
use crate::error::{CandleContext, Error, Result};
use crate::lora::LoraLinear;
use crate::qfrozen::QuantWeight;
use crate::weight::{BasePrecision, FrozenWeight};

/// A loaded base model.
pub struct Base {
    pub path: PathBuf,
    /// `general.name` of a GGUF file, or the folder name.
    pub name: String,
    pub decoder: Decoder,
    pub tokenizer: tokenizers::Tokenizer,
    pub special: SpecialTokens,
    pub template: Option<ChatTemplate>,
    /// The template's Jinja source (written into a merged folder).
    pub template_source: Option<String>,
}

/// Row `h·d + s·d/2 + j` of the result is row `h·d + 2j + s` of the GGUF matrix (`s` ∈ {0, 1}):
/// the inverse of lepton-llm's `permute_rope_rows`.
pub fn unpermute_rope_rows(values: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let rows = values.len() / cols;
    let d = rows / heads;
    let mut out = vec![0f32; values.len()];
    for h in 0..heads {
        for j in 0..d / 2 {
            for s in 0..2 {
                let from = h * d + 2 * j + s;
                let to = h * d + s * (d / 2) + j;
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

fn decoder_config(c: &LlamaConfig, path: &Path) -> Result<DecoderConfig> {
    let llama = ArchParts::llama();
    if c.arch.arch != Arch::Llama || c.arch != llama {
        return Err(Error::Config {
            field: format!("base {}", path.display()),
            message: format!(
                "architecture {:?} is not supported for fine-tuning (supported: llama)",
                c.arch.arch
            ),
        });
    }
    Ok(DecoderConfig {
        vocab_size: c.vocab_size,
        hidden_size: c.hidden_size,
        intermediate_size: c.intermediate_size,
        num_layers: c.num_layers,
        num_heads: c.num_heads,
        num_kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        rope_theta: c.rope_theta as f64,
        rms_norm_eps: c.rms_norm_eps as f64,
        context_length: c.context_length,
    })
}

/// Read every weight of `config` from `src` in HF's layout: f32 tensors, or with
/// [`BasePrecision::Quantized`] the quantized matrices in their blocks.
fn read_decoder(
    src: &mut dyn WeightSource,
    config: DecoderConfig,
    path: &Path,
    precision: BasePrecision,
) -> Result<Decoder> {
    let base_err = |source| Error::Base {
        path: path.into(),
        source: Box::new(source),
    };
    let dev = Device::Cpu;
    let matrix = |src: &mut dyn WeightSource,
                  name: &str,
                  rows: usize,
                  cols: usize,
                  rope_heads: Option<usize>|
     -> Result<FrozenWeight> {
        let q = src.matrix(name, rows, cols).map_err(base_err)?;
        if precision == BasePrecision::Quantized && q.qtype() != lepton_quant::QType::F32 {
            let w = QuantWeight::new(q, rope_heads, &format!("{} {name}", path.display()))?;
            return Ok(FrozenWeight::Quantized(std::sync::Arc::new(w)));
        }
        let mut v = vec![0f32; rows * cols];
        for (r, out) in v.chunks_exact_mut(cols).enumerate() {
            q.dequantize_row(r, out);
        }
        if let Some(h) = rope_heads {
            v = unpermute_rope_rows(&v, h, cols);
        }
        Ok(Tensor::from_vec(v, (rows, cols), &dev)
            .ctx(&format!("storing {name}"))?
            .into())
    };
    let vector = |src: &mut dyn WeightSource, name: &str, len: usize| -> Result<Tensor> {
        let v = src.vector(name, len).map_err(base_err)?;
        Tensor::from_vec(v, len, &Device::Cpu).ctx(&format!("storing {name}"))
    };
    let c = &config;
    let (d, qd, kvd, ff) = (
        c.hidden_size,
        c.num_heads * c.head_dim,
        c.num_kv_heads * c.head_dim,
        c.intermediate_size,
    );
    let embed = matrix(src, "token_embd.weight", c.vocab_size, d, None)?;
    let mut layers = Vec::with_capacity(c.num_layers);
    for i in 0..c.num_layers {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        layers.push(Block {
            attn_norm: vector(src, &n("attn_norm"), d)?,
            q: LoraLinear::frozen(matrix(src, &n("attn_q"), qd, d, Some(c.num_heads))?),
            k: LoraLinear::frozen(matrix(src, &n("attn_k"), kvd, d, Some(c.num_kv_heads))?),
            v: LoraLinear::frozen(matrix(src, &n("attn_v"), kvd, d, None)?),
            o: LoraLinear::frozen(matrix(src, &n("attn_output"), d, qd, None)?),
            ffn_norm: vector(src, &n("ffn_norm"), d)?,
            gate: LoraLinear::frozen(matrix(src, &n("ffn_gate"), ff, d, None)?),
            up: LoraLinear::frozen(matrix(src, &n("ffn_up"), ff, d, None)?),
            down: LoraLinear::frozen(matrix(src, &n("ffn_down"), d, ff, None)?),
        });
    }
    let norm = vector(src, "output_norm.weight", d)?;
    let lm_head = if src.has_tensor("output.weight") {
        Some(matrix(src, "output.weight", c.vocab_size, d, None)?)
    } else {
        None
    };
    Ok(Decoder {
        config,
        embed,
        layers,
        norm,
        lm_head,
    })
}

fn template(
    src: Option<String>,
    special: &SpecialTokens,
    path: &Path,
) -> Result<Option<ChatTemplate>> {
    src.map(|s| {
        ChatTemplate::new(&s, &special.bos, &special.eos).map_err(|source| Error::Base {
            path: path.into(),
            source: Box::new(source),
        })
    })
    .transpose()
}

impl Base {
    /// Load a GGUF file or a Hugging Face Llama folder with an f32 base; errors name the file
    /// and the tensor or key.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, BasePrecision::F32)
    }

    /// [`Base::load`] with the base held in `precision`.
    pub fn load_with(path: &Path, precision: BasePrecision) -> Result<Self> {
        let base_err = |source| Error::Base {
            path: path.into(),
            source: Box::new(source),
        };
        if path.is_dir() {
            let folder = lepton_llm::hf_llama::open_llama_folder(path).map_err(base_err)?;
            let lc = lepton_llm::hf_llama::llama_config(&folder).map_err(base_err)?;
            let (tokenizer, special, tpl) =
                lepton_llm::hf_llama::tokenizer_and_template(&folder).map_err(base_err)?;
            let mut src =
                lepton_llm::hf_llama::SafetensorsWeights::open(&folder, &lc).map_err(base_err)?;
            let config = decoder_config(&lc, path)?;
            let decoder = read_decoder(&mut src, config, path, precision)?;
            let template = template(tpl.clone(), &special, path)?;
            let name = path
                .file_name()
                .map_or_else(|| lc.name.clone(), |n| n.to_string_lossy().into_owned());
            return Ok(Self {
                path: path.into(),
                name,
                decoder,
                tokenizer,
                special,
                template,
                template_source: tpl,
            });
        }
        let mut file = GgufFile::open(path).map_err(base_err)?;
        let lc = file.llama_config().map_err(base_err)?;
        let (tokenizer, special) = file.tokenizer().map_err(base_err)?;
        let template_source = file.chat_template();
        let template = template(template_source.clone(), &special, path)?;
        let config = decoder_config(&lc, path)?;
        let decoder = read_decoder(&mut file, config, path, precision)?;
        Ok(Self {
            path: path.into(),
            name: lc.name.clone(),
            decoder,
            tokenizer,
            special,
            template,
            template_source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_the_gguf_permutation() {
        let (heads, d, cols) = (3, 8, 2);
        let w: Vec<f32> = (0..heads * d * cols).map(|v| v as f32).collect();
        let gguf = lepton_llm::llama::weights::permute_rope_rows(&w, heads, cols);
        assert_ne!(gguf, w);
        assert_eq!(unpermute_rope_rows(&gguf, heads, cols), w);
    }
}
