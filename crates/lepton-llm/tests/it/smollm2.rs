//! SmolLM2-135M-Instruct (GGUF Q4_1): loading, tokenizer, greedy decoding against llama.cpp, the
//! engine (batched = alone), and bad input.

use std::sync::{Arc, OnceLock};

use lepton_llm::llama::{Scratch, Step};
use lepton_llm::sampling::argmax;
use lepton_llm::{ChatMessage, TextModel};

pub fn model() -> Arc<TextModel> {
    static MODEL: OnceLock<Arc<TextModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = crate::model_dir("SmolLM2-135M-Instruct.Q4_1.gguf");
            Arc::new(TextModel::load(&path).expect("loading SmolLM2"))
        })
        .clone()
}

struct Golden {
    prompt: String,
    prompt_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    generated_ids_f32_kv_cache: Vec<u32>,
}

fn golden() -> Golden {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../bench/llm/smollm2_q4_1_greedy.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect(path)).unwrap();
    let ids = |k: &str| -> Vec<u32> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    Golden {
        prompt: v["prompt"].as_str().unwrap().to_owned(),
        prompt_ids: ids("prompt_ids"),
        generated_ids: ids("generated_ids"),
        generated_ids_f32_kv_cache: ids("generated_ids_f32_kv_cache"),
    }
}

/// Greedy decoding with the decoder directly: prefill in one pass, then one token per step.
fn greedy(model: &TextModel, prompt: &[u32], n: usize) -> Vec<u32> {
    let llama = model.llama();
    let mut cache = llama.new_cache(prompt.len() + n);
    let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
    let mut out = Vec::new();
    let mut input = prompt.to_vec();
    for _ in 0..n {
        llama
            .forward(
                &mut [Step {
                    tokens: &input,
                    cache: &mut cache,
                }],
                &mut scratch,
                &mut logits,
            )
            .unwrap();
        let t = argmax(&logits);
        out.push(t);
        input = vec![t];
    }
    out
}

#[test]
fn metadata_tokenizer_and_template() {
    let m = model();
    assert_eq!(m.context_length(), 8192);
    let c = m.llama().config();
    assert_eq!(
        (
            c.num_layers,
            c.hidden_size,
            c.num_heads,
            c.num_kv_heads,
            c.vocab_size
        ),
        (30, 576, 9, 3, 49152)
    );
    let g = golden();
    assert_eq!(
        m.tokenize(&g.prompt).unwrap(),
        g.prompt_ids,
        "prompt ids differ from llama.cpp's"
    );
    let chat = m
        .apply_chat_template(&[
            ChatMessage::new("system", "S"),
            ChatMessage::new("user", "Hi"),
        ])
        .unwrap();
    assert_eq!(
        chat,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        m.detokenize(&m.tokenize("Hello, world! 123 héllo").unwrap())
            .unwrap(),
        "Hello, world! 123 héllo"
    );
}

#[test]
fn greedy_matches_llama_cpp_first_64_tokens() {
    let m = model();
    let g = golden();
    let ours = greedy(&m, &g.prompt_ids, 64);
    let text = m.detokenize(&ours).unwrap();
    let first_diff = |reference: &[u32]| ours.iter().zip(reference).position(|(a, b)| a != b);
    assert_eq!(
        first_diff(&g.generated_ids_f32_kv_cache),
        None,
        "ours: {ours:?}\n{text}\nllama.cpp (f32 KV cache): {:?}\nllama.cpp (default): {:?}",
        g.generated_ids_f32_kv_cache,
        g.generated_ids
    );
    assert_eq!(
        first_diff(&g.generated_ids),
        None,
        "vs llama.cpp defaults (f16 KV cache)"
    );
}
