//! SmolLM2-135M re-quantized by llama.cpp into the K-quant mix people download most (Q4_K_M:
//! Q5_0, Q4_K, Q6_K and Q8_0 tensors), greedy decoding against llama.cpp's golden file
//! (`bench/llm/smollm2_q4_k_m_greedy.json`, written by `bench/llm/llamacpp_greedy_cases.py`: only
//! prompts on which llama.cpp's own f16-KV, f32-KV and flash-attention runs agree with a margin).
//!
//! The all-Q6_K file's golden (`smollm2_q6_k_greedy.json`) is committed but not met (2 of its 6
//! prompts leave llama.cpp's tokens, at steps 28 and 1), and is not tested here: SmolLM2 turns
//! rounding differences into logit changes of ~0.3 among its best tokens, as large as between
//! llama.cpp's own f16-KV and f32-KV runs, so a golden kept at a 0.05 margin is decided by
//! rounding (`bench/llm/logits_vs_llamacpp.py`; issue 14's notes in `bench/RESULTS.md`).
//!
//! The files are made by `scripts/fetch-assets.sh kquants` (llama.cpp's quantizer on the Q4_1
//! file, pinned by SHA-256; deterministic); when missing these tests print why and return, unless
//! `LEPTON_REQUIRE_GEMMA=1`, where they fail.

use crate::gemma3::{check_cases, golden, optional_model};

#[test]
fn smollm2_q4_k_m_greedy_matches_llama_cpp_32_tokens_on_every_prompt() {
    let file = "SmolLM2-135M-Instruct.Q4_K_M.gguf";
    let Some(m) = optional_model(file, "scripts/fetch-assets.sh kquants") else {
        return;
    };
    check_cases(&m, &golden("smollm2_q4_k_m_greedy.json"));
}
