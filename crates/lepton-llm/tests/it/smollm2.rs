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
    /// Per step, llama.cpp's five best (token, logit).
    top5: Vec<Vec<(u32, f32)>>,
}

/// bench/llm/smollm2_q4_1_greedy.json, written by bench/llm/llamacpp_golden.py.
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
    let top5 = v["top5_logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            step.as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32))
                .collect()
        })
        .collect();
    Golden {
        prompt: v["prompt"].as_str().unwrap().to_owned(),
        prompt_ids: ids("prompt_ids"),
        generated_ids: ids("generated_ids"),
        top5,
    }
}

/// Greedy decoding with the decoder directly: prefill in one pass, then one token per step.
/// Returns the tokens and each step's logits.
fn greedy(model: &TextModel, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let llama = model.llama();
    let mut cache = llama.new_cache(prompt.len() + n);
    let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
    let (mut out, mut all) = (Vec::new(), Vec::new());
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
        all.push(logits.clone());
        input = vec![t];
    }
    (out, all)
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
    let (ours, logits) = greedy(&m, &g.prompt_ids, 64);
    let text = m.detokenize(&ours).unwrap();
    assert_eq!(
        ours,
        g.generated_ids,
        "ours: {text:?}\nfirst difference at step {:?}",
        ours.iter().zip(&g.generated_ids).position(|(a, b)| a != b)
    );
    // The logits themselves, llama.cpp's five best at every step. This model is very sensitive to
    // rounding (activations are quantized to 8 bits per 32-value block, and outlier channels make the
    // blocks coarse): llama.cpp's own logits move by up to ~0.5 between its f16 and f32 KV cache
    // (see bench/RESULTS.md), so the bound is loose and the mean is checked too.
    let (mut worst, mut sum, mut n) = (0f32, 0f32, 0);
    for (step, (top5, ours)) in g.top5.iter().zip(&logits).enumerate() {
        for &(id, want) in top5 {
            let d = (ours[id as usize] - want).abs();
            assert!(
                d < 1.0,
                "step {step} token {id}: {} vs llama.cpp {want}",
                ours[id as usize]
            );
            worst = worst.max(d);
            sum += d;
            n += 1;
        }
    }
    let mean = sum / n as f32;
    assert!(mean < 0.3, "mean |logit - llama.cpp| {mean}");
    eprintln!("|logit - llama.cpp| over the top-5 of 64 steps: mean {mean}, max {worst}");
}
