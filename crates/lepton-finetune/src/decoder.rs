//! A trainable Llama-family decoder in f32 on candle autograd, laid out as Hugging Face's
//! `LlamaForCausalLM` (module names `model.layers.{i}.self_attn.q_proj`, ..., rotate-half RoPE),
//! so LoRA adapters map one to one onto PEFT's.
//!
//! # Maths (per layer; `x: [B·T, D]`)
//! ```text
//! h = RMSNorm(x)·w_in                       RMSNorm(x) = x / √(mean(x²) + ε)
//! q, k, v = h Wqᵀ, h Wkᵀ, h Wvᵀ             (each a [`LoraLinear`])
//! q, k = q·cos + rotate_half(q)·sin, ...    (HF's RoPE, θ_i = base^(−2i/d))
//! a = softmax(q kᵀ/√d + causal) v           (lepton-nn's fused attention; KV heads repeated)
//! x = x + a Woᵀ
//! x = x + down(SiLU(gate(h')) ⊙ up(h'))     h' = RMSNorm(x)·w_post
//! ```
//! then `logits = RMSNorm(x)·w_norm · Eᵀ` (`E` the embedding when tied).
//!
//! Gradients flow only to LoRA variables: base linears use [`FrozenWeight::linear`], norm
//! weights and embeddings are plain tensors (never variables). candle's `rms_norm`,
//! `softmax_last_dim` and `rotary_emb` ops have no backward: RMSNorm, RoPE and SwiGLU run as
//! [`crate::fused`] ops with their own backward.
//!
//! Training steps run [`crate::step::loss_and_grads`] instead: the same forward operation for
//! operation (the same loss bit for bit), with a hand-written backward and no autograd graph.
//! This path serves validation, inference and the merge checks, and is the step's reference.

use candle_core::{DType, Device, Tensor};
use lepton_nn::kernels::{attention, AttentionMask};
use rand_chacha::ChaCha8Rng;

use crate::error::{CandleContext, Error, Result};
use crate::fused;
use crate::lora::LoraLinear;
use crate::weight::FrozenWeight;

/// The module names of one layer, in PEFT's spelling.
pub const MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Hyper-parameters of the decoder, all resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    /// Longest sequence the base was trained for (`max_position_embeddings`).
    pub context_length: usize,
}

/// One transformer block.
#[derive(Clone)]
pub struct Block {
    pub attn_norm: Tensor,
    pub q: LoraLinear,
    pub k: LoraLinear,
    pub v: LoraLinear,
    pub o: LoraLinear,
    pub ffn_norm: Tensor,
    pub gate: LoraLinear,
    pub up: LoraLinear,
    pub down: LoraLinear,
}

impl Block {
    /// The linear called `name` (one of [`MODULES`]).
    pub fn module(&self, name: &str) -> Option<&LoraLinear> {
        Some(match name {
            "q_proj" => &self.q,
            "k_proj" => &self.k,
            "v_proj" => &self.v,
            "o_proj" => &self.o,
            "gate_proj" => &self.gate,
            "up_proj" => &self.up,
            "down_proj" => &self.down,
            _ => return None,
        })
    }

    pub fn module_mut(&mut self, name: &str) -> Option<&mut LoraLinear> {
        Some(match name {
            "q_proj" => &mut self.q,
            "k_proj" => &mut self.k,
            "v_proj" => &mut self.v,
            "o_proj" => &mut self.o,
            "gate_proj" => &mut self.gate,
            "up_proj" => &mut self.up,
            "down_proj" => &mut self.down,
            _ => return None,
        })
    }

    /// HF's prefix of module `name` inside a layer (`self_attn.` or `mlp.`).
    pub fn parent(name: &str) -> &'static str {
        if matches!(name, "gate_proj" | "up_proj" | "down_proj") {
            "mlp"
        } else {
            "self_attn"
        }
    }
}

/// The decoder: frozen f32 base weights, LoRA pairs where attached.
#[derive(Clone)]
pub struct Decoder {
    pub config: DecoderConfig,
    /// `[V, D]`.
    pub embed: FrozenWeight,
    pub layers: Vec<Block>,
    pub norm: Tensor,
    /// `[V, D]`; `None` when tied to [`Decoder::embed`].
    pub lm_head: Option<FrozenWeight>,
}

impl Decoder {
    /// The linear `module` of layer `layer`; `Error::UnknownTarget` names it and lists
    /// [`MODULES`] when it does not exist.
    pub fn check_target(name: &str) -> Result<()> {
        if MODULES.contains(&name) {
            Ok(())
        } else {
            Err(Error::UnknownTarget {
                name: name.into(),
                existing: MODULES.join(", "),
            })
        }
    }

    /// The final hidden states `[B·T, D]` of token ids `tokens: [B, T]` (u32).
    pub fn hidden(
        &self,
        tokens: &Tensor,
        mut train: Option<&mut ChaCha8Rng>,
    ) -> candle_core::Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let c = &self.config;
        let (h, kv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let mut x = self.embed.rows(&tokens.flatten_all()?)?;
        let (cos, sin) = fused::rope_angles(t, hd, c.rope_theta);
        let mask = AttentionMask {
            causal: true,
            keys: None,
        };
        let scale = 1.0 / (hd as f32).sqrt();
        let repeat = |z: Tensor| -> candle_core::Result<Tensor> {
            if kv == h {
                return Ok(z);
            }
            z.unsqueeze(3)?
                .broadcast_as((b, t, kv, h / kv, hd))?
                .contiguous()?
                .reshape((b, t, h, hd))
        };
        for l in &self.layers {
            let n = fused::rms_norm(&x, &l.attn_norm, c.rms_norm_eps)?;
            let q =
                l.q.forward(&n, train.as_deref_mut())?
                    .reshape((b, t, h, hd))?;
            let k =
                l.k.forward(&n, train.as_deref_mut())?
                    .reshape((b, t, kv, hd))?;
            let v =
                l.v.forward(&n, train.as_deref_mut())?
                    .reshape((b, t, kv, hd))?;
            let q = fused::rope(&q, &cos, &sin)?;
            let k = repeat(fused::rope(&k, &cos, &sin)?)?;
            let v = repeat(v)?;
            let a = attention(&q, &k, &v, scale, &mask)?.reshape((b * t, h * hd))?;
            x = (x + l.o.forward(&a, train.as_deref_mut())?)?;
            let n = fused::rms_norm(&x, &l.ffn_norm, c.rms_norm_eps)?;
            let g = l.gate.forward(&n, train.as_deref_mut())?;
            let u = l.up.forward(&n, train.as_deref_mut())?;
            x = (x + l
                .down
                .forward(&fused::swiglu(&g, &u)?, train.as_deref_mut())?)?;
        }
        fused::rms_norm(&x, &self.norm, c.rms_norm_eps)
    }

    /// The output projection's weight `[V, D]`.
    pub fn head(&self) -> &FrozenWeight {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// `logits: [B·T, V]` of `tokens: [B, T]`.
    pub fn logits(&self, tokens: &Tensor, train: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        let hidden = self.hidden(tokens, train).ctx("running the decoder")?;
        self.head()
            .linear(&hidden)
            .ctx("projecting to the vocabulary")
    }

    /// The mean next-token loss over the positions where `mask` is true (a scalar) of
    /// `tokens: [B, T]` against `targets` (`B·T` ids), through [`crate::loss::head_cross_entropy`]
    /// (the logits never exist in full). With `train` (the dropout generator) the op keeps the
    /// hidden states' gradient for `backward`; without, it computes the loss only.
    pub fn loss(
        &self,
        tokens: &Tensor,
        targets: &[u32],
        mask: &[bool],
        train: Option<&mut ChaCha8Rng>,
    ) -> Result<Tensor> {
        let grad = train.is_some();
        let hidden = self.hidden(tokens, train).ctx("running the decoder")?;
        crate::loss::head_cross_entropy(&hidden, self.head(), targets, mask, grad)
            .ctx("computing the loss over the vocabulary")
    }

    /// Every LoRA variable as `(layer, module, A, B)`, in layer then [`MODULES`] order.
    pub fn adapters(&self) -> Vec<(usize, &'static str, &crate::lora::LoraPair)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for m in MODULES {
                if let Some(pair) = l.module(m).and_then(|x| x.lora.as_ref()) {
                    out.push((i, m, pair));
                }
            }
        }
        out
    }

    /// Number of trainable parameters (`Σ r·(in + out)`) and of all parameters.
    pub fn parameter_counts(&self) -> (usize, usize) {
        let trainable: usize = self
            .adapters()
            .iter()
            .map(|(_, _, p)| p.a.elem_count() + p.b.elem_count())
            .sum();
        let mut base = self.embed.elem_count() + self.norm.elem_count();
        if let Some(h) = &self.lm_head {
            base += h.elem_count();
        }
        for l in &self.layers {
            base += l.attn_norm.elem_count() + l.ffn_norm.elem_count();
            for m in MODULES {
                base += l.module(m).map_or(0, |x| x.base.elem_count());
            }
        }
        (trainable, base + trainable)
    }

    /// This decoder with every f32 frozen matrix (linears, embedding, LM head) quantized to
    /// `qtype` (Q8_0 or Q4_1, as a GGUF file would store it) and held as
    /// [`FrozenWeight::Quantized`]: a quantized base without a file, for tests. Adapters are
    /// shared with `self`.
    pub fn quantized(&self, qtype: lepton_quant::QType) -> Result<Self> {
        use crate::qfrozen::{quantize_q4_1, quantize_q8_0, QuantWeight};
        let convert = |w: &FrozenWeight, what: &str| -> Result<FrozenWeight> {
            let FrozenWeight::F32(t) = w else {
                return Ok(w.clone());
            };
            let (n, k) = w.dims();
            let v = t
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .ctx("reading a weight")?;
            let bytes = match qtype {
                lepton_quant::QType::Q4_1 => quantize_q4_1(&v),
                _ => quantize_q8_0(&v),
            };
            let quant_err = |source| Error::Quantize {
                what: what.into(),
                source,
            };
            let q = lepton_quant::QMatrix::new(qtype, n, k, bytes).map_err(quant_err)?;
            Ok(FrozenWeight::Quantized(std::sync::Arc::new(
                QuantWeight::new(q, None, what)?,
            )))
        };
        let mut out = self.clone();
        out.embed = convert(&self.embed, "the embedding")?;
        if let Some(h) = &self.lm_head {
            out.lm_head = Some(convert(h, "the LM head")?);
        }
        for (i, l) in out.layers.iter_mut().enumerate() {
            for m in MODULES {
                let lin = l.module_mut(m).expect("known module");
                lin.base = convert(&lin.base, &format!("layer {i} {m}"))?;
            }
        }
        Ok(out)
    }

    /// A random decoder of `config` (weights N(0, 0.02), norms 1), for tests.
    pub fn random(config: DecoderConfig, seed: u64) -> Result<Self> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let dev = Device::Cpu;
        let mut mat = |rows: usize, cols: usize| -> Result<Tensor> {
            let v: Vec<f32> = (0..rows * cols)
                .map(|_| rng.random_range(-0.05f32..0.05))
                .collect();
            Tensor::from_vec(v, (rows, cols), &dev).ctx("creating a random weight")
        };
        let c = &config;
        let (d, qd, kvd) = (
            c.hidden_size,
            c.num_heads * c.head_dim,
            c.num_kv_heads * c.head_dim,
        );
        let ones = |n: usize| Tensor::ones(n, DType::F32, &Device::Cpu).ctx("creating a norm");
        let embed = mat(c.vocab_size, d)?.into();
        let mut layers = Vec::new();
        for _ in 0..c.num_layers {
            layers.push(Block {
                attn_norm: ones(d)?,
                q: LoraLinear::frozen(mat(qd, d)?),
                k: LoraLinear::frozen(mat(kvd, d)?),
                v: LoraLinear::frozen(mat(kvd, d)?),
                o: LoraLinear::frozen(mat(d, qd)?),
                ffn_norm: ones(d)?,
                gate: LoraLinear::frozen(mat(c.intermediate_size, d)?),
                up: LoraLinear::frozen(mat(c.intermediate_size, d)?),
                down: LoraLinear::frozen(mat(d, c.intermediate_size)?),
            });
        }
        Ok(Self {
            norm: ones(d)?,
            embed,
            layers,
            lm_head: None,
            config,
        })
    }
}
