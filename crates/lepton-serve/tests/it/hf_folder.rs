//! A Hugging Face Llama folder (config.json + safetensors + tokenizer files) served through the
//! OpenAI-compatible routes, and a broken folder refused by name.

use lepton_serve::{AppState, Tokens};
use serde_json::json;

use crate::openai::{model_path, post};

/// Write `tensors` (name, shape, f32 values) as a safetensors file.
fn write_f32_safetensors(path: &std::path::Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let h = serde_json::to_vec(&header).unwrap();
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend(h);
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn hugging_face_llama_folder_serves_chat_completions() {
    // A tiny random 2-layer Llama with SmolLM2's tokenizer and chat template (from its GGUF).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gguf =
        lepton_llm::gguf::GgufFile::open(&model_path("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let (tok, special) = gguf.tokenizer().unwrap();
    tok.save(d.join("tokenizer.json"), false).unwrap();
    let tok_config = json!({"bos_token": special.bos, "eos_token": special.eos,
        "chat_template": gguf.chat_template().unwrap()});
    std::fs::write(d.join("tokenizer_config.json"), tok_config.to_string()).unwrap();
    let (hd, ff, vocab) = (64, 96, 49152);
    let config = json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": hd, "intermediate_size": ff, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "rms_norm_eps": 1e-5,
        "vocab_size": vocab, "max_position_embeddings": 256, "tie_word_embeddings": true});
    std::fs::write(d.join("config.json"), config.to_string()).unwrap();
    let mut seed = 1u32;
    let mut random = |shape: Vec<usize>| {
        let n = shape.iter().product();
        let v = (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
            })
            .collect();
        (shape, v)
    };
    let mut tensors = Vec::new();
    let mut add = |name: String, shape: Vec<usize>| {
        let (s, v) = random(shape);
        tensors.push((name, s, v));
    };
    add("model.embed_tokens.weight".into(), vec![vocab, hd]);
    add("model.norm.weight".into(), vec![hd]);
    for i in 0..2 {
        for (n, s) in [
            ("self_attn.q_proj", vec![hd, hd]),
            ("self_attn.k_proj", vec![32, hd]),
            ("self_attn.v_proj", vec![32, hd]),
            ("self_attn.o_proj", vec![hd, hd]),
            ("mlp.gate_proj", vec![ff, hd]),
            ("mlp.up_proj", vec![ff, hd]),
            ("mlp.down_proj", vec![hd, ff]),
            ("input_layernorm", vec![hd]),
            ("post_attention_layernorm", vec![hd]),
        ] {
            add(format!("model.layers.{i}.{n}.weight"), s);
        }
    }
    write_f32_safetensors(&d.join("model.safetensors"), &tensors);

    let st = AppState::new(
        crate::openai::real_model_config(),
        Tokens::load(None, None).unwrap(),
        None,
    );
    let model = lepton_llm::load_language_model(d, lepton_llm::EngineConfig::default()).unwrap();
    st.inner.llms.insert("tiny", model, 8);
    let msgs = json!([{"role": "user", "content": "Hi"}]);
    let (s, v) = post(
        &st,
        "/v1/chat/completions",
        json!({"model": "tiny", "messages": msgs, "max_tokens": 5, "temperature": 0}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let usage = &v["usage"];
    // "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n" after the template's system prompt.
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 8, "{usage}");
    let n = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=5).contains(&n), "{usage}");

    // A folder missing a tensor is refused with its name.
    tensors.retain(|(n, _, _)| n != "model.layers.1.mlp.up_proj.weight");
    write_f32_safetensors(&d.join("model.safetensors"), &tensors);
    let e = match lepton_llm::load_language_model(d, lepton_llm::EngineConfig::default()) {
        Ok(_) => panic!("loaded a folder without model.layers.1.mlp.up_proj.weight"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("missing tensor model.layers.1.mlp.up_proj.weight"),
        "{e}"
    );
}
