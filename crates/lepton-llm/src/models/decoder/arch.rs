//! The parts in which the decoder architectures differ, resolved from a file's metadata into
//! plain values: the one decoder ([`super::Llama`]) reads them, no architecture has its own copy.
//!
//! | part | `llama` | `gemma3` |
//! |---|---|---|
//! | input embedding | as stored | times `sqrt(hidden)` |
//! | feed-forward | `SiLU(gate) ⊙ up` | `GELU-tanh(gate) ⊙ up` (GeGLU) |
//! | norms | pre-attention, pre-FFN | also after attention and after the FFN (before the residual adds) |
//! | Q/K | — | RMSNorm per head (QK-norm) before RoPE |
//! | RoPE pairs | interleaved `(2i, 2i+1)` | halves `(i, i + d/2)` (NeoX) |
//! | attention | causal | local layers see the last `sliding_window` positions, RoPE base 10 000; every `pattern`-th layer global |
//!
//! GGUF files store Gemma's norm weights with the `+1` already added (`convert_hf_to_gguf.py`
//! shifts them), so every norm here is a plain `x / rms · w`.

/// The architectures [`super::Llama`] runs, as `general.architecture` names them.
pub const SUPPORTED_ARCHITECTURES: &str = "llama, gemma3";

/// A decoder architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Gemma3,
}

impl Arch {
    /// The architecture named `name` in `general.architecture`, if supported.
    pub fn from_gguf(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            "gemma3" => Some(Arch::Gemma3),
            _ => None,
        }
    }

    /// The GGUF metadata prefix (`llama.`, `gemma3.`).
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
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
        }
    }

    /// The chat template to use when the file has none (`tokenizer.chat_template`): Gemma's turns
    /// (`<start_of_turn>user … <end_of_turn>`, the assistant's role called `model`, a system
    /// message folded into the first user turn). No `bos_token`: tokenizing adds it.
    pub fn default_chat_template(&self) -> Option<&'static str> {
        match self.arch {
            Arch::Llama => None,
            Arch::Gemma3 => Some(GEMMA_TEMPLATE),
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
