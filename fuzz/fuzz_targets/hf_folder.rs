//! Fuzz the Hugging Face folder loaders: `config.json` and the safetensors header, for BERT
//! encoders (`Embedder`) and Llama decoders (`TextModel`). The input is split in two: a u16
//! (little-endian) length, that many bytes of `config.json`, then `model.safetensors`; a fixed
//! small tokenizer completes the folder.
#![no_main]
use libfuzzer_sys::fuzz_target;

const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
"model":{"type":"WordLevel","vocab":{"[UNK]":0,"[CLS]":1,"[SEP]":2,"</s>":3,"a":4,"b":5},
"unk_token":"[UNK]"}}"#;
const TOKENIZER_CONFIG: &str = r#"{"eos_token": "</s>", "chat_template":
"{% for m in messages %}{{ m.content }}{% endfor %}"}"#;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (config, weights) = data[2..].split_at(n);
    let dir = std::env::temp_dir().join(format!("lepton-fuzz-hf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the folder");
    std::fs::write(dir.join("config.json"), config).expect("writing config.json");
    std::fs::write(dir.join("model.safetensors"), weights).expect("writing the weights");
    std::fs::write(dir.join("tokenizer.json"), TOKENIZER).expect("writing tokenizer.json");
    std::fs::write(dir.join("tokenizer_config.json"), TOKENIZER_CONFIG)
        .expect("writing tokenizer_config.json");
    if let Ok(e) = lepton_llm::Embedder::load(&dir) {
        let _ = e.embed(&["a b"]);
    }
    if let Ok(model) = lepton_llm::TextModel::load(&dir) {
        let _ = model.tokenize("a b");
    }
});
