//! The parts in which the decoder architectures differ, resolved from a file's metadata into
//! plain values: the one decoder ([`super::Llama`]) reads them, no architecture has its own copy.
//!
//! | part | `llama` (Mistral) | `qwen2` | `qwen3` | `phi3` | `gemma2` | `gemma3` |
//! |---|---|---|---|---|---|---|
//! | input embedding | as stored | as stored | as stored | as stored | times `sqrt(hidden)` | times `sqrt(hidden)` |
//! | feed-forward | SwiGLU | SwiGLU | SwiGLU | SwiGLU, gate and up in one `ffn_up` | GeGLU | GeGLU |
//! | Q/K/V | separate | separate, with biases | separate | one `attn_qkv` (or separate) | separate | separate |
//! | norms | pre | pre | pre | pre | pre and post (`post_attention_norm`, `post_ffw_norm`) | pre and post |
//! | Q/K | — | — | RMSNorm per head | — | — | RMSNorm per head |
//! | RoPE pairs | interleaved | NeoX halves | NeoX | NeoX | NeoX | NeoX |
//! | attention | causal | causal | causal | causal | soft-capped scores; even layers local | odd ones: 5 local, 1 global |
//! | logits | — | — | — | — | soft-capped (`tanh(l / c) · c`) | — |
//!
//! `SwiGLU` is `SiLU(gate) ⊙ up`, `GeGLU` `GELU-tanh(gate) ⊙ up`. Mistral's GGUF files use the
//! `llama` architecture (llama.cpp reads them as Llama and ignores their sliding window); `mistral3`
//! (Ministral 3: YaRN RoPE and a position-dependent attention temperature) is not supported and is
//! refused by name. Phi-3's LongRoPE (`rope_factors_long`, the 128k-context files) is refused too.
//!
//! GGUF files store Gemma's norm weights with the `+1` already added (`convert_hf_to_gguf.py`
//! shifts them), so every norm here is a plain `x / rms · w`.

/// The architectures [`super::Llama`] runs, as `general.architecture` names them.
pub const SUPPORTED_ARCHITECTURES: &str = "llama, qwen2, qwen3, phi3, gemma2, gemma3";

/// A decoder architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Phi3,
    Gemma2,
    Gemma3,
}

impl Arch {
    /// The architecture named `name` in `general.architecture`, if supported.
    pub fn from_gguf(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            "qwen3" => Some(Arch::Qwen3),
            "phi3" => Some(Arch::Phi3),
            "gemma2" => Some(Arch::Gemma2),
            "gemma3" => Some(Arch::Gemma3),
            _ => None,
        }
    }

    /// The GGUF metadata prefix (`llama.`, `gemma3.`).
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Phi3 => "phi3",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma3 => "gemma3",
        }
    }
}

/// The feed-forward activation of the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfnActivation {
    /// `SiLU(g) · u` (SwiGLU).
    Silu,
    /// `GELU_tanh(g) · u` (GeGLU), GELU through ggml's f16 table as llama.cpp computes it.
    GeluTanh,
}

/// Which values RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeMode {
    /// `(x[2i], x[2i + 1])` (llama.cpp's "normal" mode, Llama GGUF files).
    Interleaved,
    /// `(x[i], x[i + d/2])` (llama.cpp's NeoX mode: Gemma, Qwen, Phi).
    Neox,
}

/// The architecture-dependent parts of a decoder, all resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchParts {
    pub arch: Arch,
    /// Multiply the token embeddings by this (Gemma: `sqrt(hidden)`).
    pub embed_scale: Option<f32>,
    pub ffn: FfnActivation,
    pub rope: RopeMode,
    /// Per-head RMSNorm of queries and keys (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// RMSNorm after attention and after the FFN (`post_attention_norm`, `post_ffw_norm`).
    pub post_norms: bool,
    /// Local layers attend to the last this many positions (`None`: every layer is global).
    pub sliding_window: Option<usize>,
    /// Every `swa_pattern`-th layer (1-based) is global when there is a sliding window.
    pub swa_pattern: usize,
    /// RoPE frequency base of the local layers.
    pub rope_theta_local: f32,
    /// Biases added to the Q, K and V projections (`attn_q.bias`, `attn_k.bias`, `attn_v.bias`).
    pub qkv_bias: bool,
    /// Gate and up projections stored as one `ffn_up` of `2 · ff` rows, gate first (Phi-3).
    pub fused_gate_up: bool,
    /// Attention scores `s` become `c · tanh(s / c)` before the softmax (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Logits `l` become `c · tanh(l / c)` (Gemma 2).
    pub final_softcap: Option<f32>,
    /// The factor on `q · k` when it is not `1 / sqrt(head_dim)` (Gemma 2 and 3 27B:
    /// `1 / sqrt(hidden / heads)`).
    pub attn_scale: Option<f32>,
    /// Multiply the queries by the attention scale before they are rounded to f16 for the dot
    /// products (llama.cpp's graphs for Phi-3 and Gemma: `Qcur = ggml_scale(Qcur, ..)`), rather
    /// than the scores after (Llama, Qwen). The same maths, rounded differently.
    pub scale_queries: bool,
}

impl ArchParts {
    /// Llama's parts: no embedding scale, SwiGLU, pre-norms only, interleaved RoPE, global layers.
    pub fn llama() -> Self {
        Self {
            arch: Arch::Llama,
            embed_scale: None,
            ffn: FfnActivation::Silu,
            rope: RopeMode::Interleaved,
            qk_norm: false,
            post_norms: false,
            sliding_window: None,
            swa_pattern: 1,
            rope_theta_local: 10_000.0,
            qkv_bias: false,
            fused_gate_up: false,
            attn_softcap: None,
            final_softcap: None,
            attn_scale: None,
            scale_queries: false,
        }
    }

    /// Qwen2 / Qwen2.5's parts (llama.cpp's `LLM_ARCH_QWEN2`): Llama's with biases on Q, K and V
    /// and NeoX RoPE.
    pub fn qwen2() -> Self {
        Self {
            arch: Arch::Qwen2,
            rope: RopeMode::Neox,
            qkv_bias: true,
            ..Self::llama()
        }
    }

    /// Qwen3's parts (`LLM_ARCH_QWEN3`): per-head RMSNorm of Q and K before NeoX RoPE, no biases.
    pub fn qwen3() -> Self {
        Self {
            arch: Arch::Qwen3,
            rope: RopeMode::Neox,
            qk_norm: true,
            ..Self::llama()
        }
    }

    /// Phi-3's parts (`LLM_ARCH_PHI3`): NeoX RoPE, gate and up in one matrix (Q, K and V are
    /// usually one `attn_qkv` too, which any architecture may have). llama.cpp disables Phi-3's
    /// sliding window, and so does this.
    pub fn phi3() -> Self {
        Self {
            arch: Arch::Phi3,
            rope: RopeMode::Neox,
            fused_gate_up: true,
            scale_queries: true,
            ..Self::llama()
        }
    }

    /// Gemma 2's parts (`LLM_ARCH_GEMMA2`): Gemma's embedding scale, GeGLU and post-norms, no
    /// QK-norm, a window of `sliding_window` positions on every other layer (the first local),
    /// soft-capped attention scores and logits, one RoPE base for all layers.
    pub fn gemma2(
        hidden: usize,
        sliding_window: usize,
        attn_softcap: f32,
        final_softcap: f32,
        rope_theta: f32,
    ) -> Self {
        Self {
            arch: Arch::Gemma2,
            embed_scale: Some((hidden as f32).sqrt()),
            ffn: FfnActivation::GeluTanh,
            rope: RopeMode::Neox,
            post_norms: true,
            sliding_window: Some(sliding_window),
            swa_pattern: 2,
            rope_theta_local: rope_theta,
            attn_softcap: Some(attn_softcap),
            final_softcap: Some(final_softcap),
            scale_queries: true,
            ..Self::llama()
        }
    }

    /// Gemma 3's parts (llama.cpp's `LLM_ARCH_GEMMA3`): a window of `sliding_window` positions on
    /// five layers of every six, local RoPE base 10 000.
    pub fn gemma3(hidden: usize, sliding_window: usize, swa_pattern: usize) -> Self {
        Self {
            arch: Arch::Gemma3,
            embed_scale: Some((hidden as f32).sqrt()),
            ffn: FfnActivation::GeluTanh,
            rope: RopeMode::Neox,
            qk_norm: true,
            post_norms: true,
            sliding_window: Some(sliding_window),
            swa_pattern,
            rope_theta_local: 10_000.0,
            scale_queries: true,
            ..Self::llama()
        }
    }

    /// The chat template to use when the file has none (`tokenizer.chat_template`): Qwen's ChatML
    /// (`<|im_start|>role\n … <|im_end|>\n`), Phi-3's (`<|user|>\n … <|end|>\n`, then
    /// `<|assistant|>\n`), Gemma's turns (`<start_of_turn>user … <end_of_turn>`, the assistant's
    /// role called `model`, a system message folded into the first user turn). No `bos_token`:
    /// tokenizing adds it where the file asks for it.
    pub fn default_chat_template(&self) -> Option<&'static str> {
        match self.arch {
            Arch::Llama => None,
            Arch::Qwen2 | Arch::Qwen3 => Some(CHATML_TEMPLATE),
            Arch::Phi3 => Some(PHI3_TEMPLATE),
            Arch::Gemma2 | Arch::Gemma3 => Some(GEMMA_TEMPLATE),
        }
    }

    /// Whether `layer` (0-based) attends through the sliding window.
    pub fn is_local(&self, layer: usize) -> bool {
        self.sliding_window.is_some() && (layer + 1) % self.swa_pattern != 0
    }

    /// The first key position a query at `pos` sees in `layer`.
    pub fn first_visible(&self, layer: usize, pos: usize) -> usize {
        match self.sliding_window {
            Some(w) if self.is_local(layer) => (pos + 1).saturating_sub(w),
            _ => 0,
        }
    }
}

const CHATML_TEMPLATE: &str = "{%- for m in messages -%}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}";

const PHI3_TEMPLATE: &str = "{%- for m in messages -%}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}";

const GEMMA_TEMPLATE: &str = "{%- if messages[0]['role'] == 'system' -%}{%- set prefix = messages[0]['content'] + '\n\n' -%}{%- set turns = messages[1:] -%}{%- else -%}{%- set prefix = '' -%}{%- set turns = messages -%}{%- endif -%}{%- for m in turns -%}{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\n' + (prefix if loop.first else '') + (m['content'] | trim) + '<end_of_turn>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}";

/// ggml's GELU (tanh approximation) as its CPU backend computes it: `x ≤ −10` gives 0, `x ≥ 10`
/// gives `x`, otherwise the f16 table entry at `f16(x)`, i.e. `f16(gelu(f16(x)))`.
pub fn gelu_ggml(x: f32) -> f32 {
    use half::f16;
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    let v = f16::from_f32(x).to_f32();
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const GELU_COEF_A: f32 = 0.044715;
    let g = 0.5 * v * (1.0 + (SQRT_2_OVER_PI * v * (1.0 + GELU_COEF_A * v * v)).tanh());
    f16::from_f32(g).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_layers_five_local_then_one_global() {
        let p = ArchParts::gemma3(640, 512, 6);
        let local: Vec<bool> = (0..12).map(|l| p.is_local(l)).collect();
        assert_eq!(
            local,
            [true, true, true, true, true, false, true, true, true, true, true, false]
        );
        assert_eq!(p.first_visible(0, 511), 0);
        assert_eq!(p.first_visible(0, 512), 1);
        assert_eq!(p.first_visible(5, 9000), 0, "global layer");
        assert!(!ArchParts::llama().is_local(0));
    }

    #[test]
    fn gelu_matches_the_tanh_formula_to_f16_precision() {
        for x in [-3.0f32, -0.5, 0.0, 0.1, 1.0, 2.5, 9.0] {
            let exact = 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044715 * x * x * x)).tanh());
            assert!(
                (gelu_ggml(x) - exact).abs() <= 2e-3 * exact.abs().max(1.0),
                "{x}"
            );
        }
        assert_eq!(gelu_ggml(-11.0), 0.0);
        assert_eq!(gelu_ggml(12.0), 12.0);
    }
}
