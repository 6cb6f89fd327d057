//! SmolLM2-135M re-quantized by llama.cpp's `llama_model_quantize` into the Q4_K_M and Q6_K mixes
//! (`bench/llm/requantize.py`; Q4_K/Q6_K where rows allow, Q5_0/Q8_0 elsewhere): greedy decoding
//! equals llama.cpp's on the same files (`bench/llm/smollm2_{q4_k_m,q6_k}_greedy.json`).
//! The files are made by the bench scripts, not fetched: missing, the tests print why and return.

use crate::gemma3::{check_cases, golden, optional_model};

const HOW: &str = "bench/llm/requantize.py";

#[test]
fn smollm2_q4_k_m_greedy_matches_llama_cpp() {
    let Some(m) = optional_model("SmolLM2-135M-Instruct.Q4_K_M.gguf", HOW) else {
        return;
    };
    check_cases(&m, &golden("smollm2_q4_k_m_greedy.json"));
}

#[test]
fn smollm2_q6_k_greedy_matches_llama_cpp() {
    let Some(m) = optional_model("SmolLM2-135M-Instruct.Q6_K.gguf", HOW) else {
        return;
    };
    check_cases(&m, &golden("smollm2_q6_k_greedy.json"));
}
