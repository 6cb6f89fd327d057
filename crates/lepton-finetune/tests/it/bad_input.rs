//! Acceptance 6: bad input is refused naming the line, key or tensor.

use lepton_finetune::config::FinetuneSpec;
use lepton_finetune::peft::Adapter;
use lepton_finetune::train::attach;
use lepton_finetune::{Decoder, DecoderConfig};

use crate::support::{tiny_config, tiny_file};

#[test]
fn rank_zero_is_refused() {
    let mut s = FinetuneSpec::new("m.gguf", "d.txt");
    s.lora_r = 0;
    let e = s.validate().unwrap_err().to_string();
    assert!(e.contains("lora-r"), "{e}");
}

#[test]
fn unknown_target_module_is_named_with_the_list() {
    let mut d = Decoder::random(tiny_config(), 1).unwrap();
    let mut f = tiny_file(1);
    f.finetune.targets = vec!["c_attn".into()];
    let e = attach(&mut d, &f).unwrap_err().to_string();
    assert!(e.contains("\"c_attn\"") && e.contains("gate_proj"), "{e}");
}

#[test]
fn adapter_of_another_base_names_the_tensor_and_shapes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut small = Decoder::random(tiny_config(), 1)?;
    attach(&mut small, &tiny_file(1))?;
    lepton_finetune::peft::save(dir.path(), &small, 4.0, 0.0, "tiny")?;
    let wide = DecoderConfig {
        hidden_size: 24,
        ..tiny_config()
    };
    let mut other = Decoder::random(wide, 1)?;
    let e = Adapter::load(dir.path())?
        .apply(&mut other)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
            && e.contains("[2, 16]")
            && e.contains("[2, 24]"),
        "{e}"
    );
    Ok(())
}

#[test]
fn chat_line_without_messages_names_the_line() -> anyhow::Result<()> {
    use lepton_llm::chat_template::ChatTemplate;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("chat.jsonl");
    std::fs::write(
        &path,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n\n{\"msgs\": []}\n",
    )?;
    let tok = tiny_tokenizer()?;
    let tpl = ChatTemplate::new(CHATML, "<s>", "</s>")?;
    let e = lepton_finetune::data::chat::load(&tok, Some(&tpl), &path, 16, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("chat.jsonl:3") && e.contains("messages"), "{e}");
    Ok(())
}

pub const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// A character-level tokenizer (every byte a token) built in memory.
pub fn tiny_tokenizer() -> anyhow::Result<tokenizers::Tokenizer> {
    let vocab: serde_json::Map<String, serde_json::Value> = (32u8..127)
        .chain([b'\n'])
        .enumerate()
        .map(|(i, c)| ((c as char).to_string(), serde_json::json!(i)))
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [
            {"id": 96, "content": "<|im_start|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 97, "content": "<|im_end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "."}, "behavior": "Isolated", "invert": false},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": " "}
    });
    tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&json)?)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

#[test]
fn chat_loss_mask_covers_only_assistant_tokens() -> anyhow::Result<()> {
    use lepton_llm::chat_template::{ChatMessage, ChatTemplate};
    let tok = tiny_tokenizer()?;
    let tpl = ChatTemplate::new(CHATML, "<s>", "</s>")?;
    let msgs = [
        ChatMessage::new("user", "hi"),
        ChatMessage::new("assistant", "yo"),
    ];
    let (ids, owner) = lepton_finetune::data::chat::render(&tok, &tpl, &msgs, "test")?;
    let text: Vec<String> = ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect();
    let trained: String = text
        .iter()
        .zip(&owner)
        .filter(|(_, o)| **o)
        .map(|(t, _)| t.as_str())
        .collect();
    // The assistant's content and its end marker, not the header nor the user turn.
    assert_eq!(trained, "yo<|im_end|>\n");
    Ok(())
}
