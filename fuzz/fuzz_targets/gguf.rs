//! Fuzz the GGUF model loader (header, hyper-parameters, tokenizer, chat template, tensors), then
//! run one decode step on whatever loads. Every size in the file is checked against the file
//! length before allocation, so `-malloc_limit_mb` catches any allocation a file can inflate.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The loader reads a path: one file per fuzzing process.
    let path = std::env::temp_dir().join(format!("lepton-fuzz-{}.gguf", std::process::id()));
    std::fs::write(&path, data).expect("writing the input");
    if let Ok(model) = lepton_llm::TextModel::load(&path) {
        let llama = model.llama();
        let mut cache = llama.new_cache(4);
        let mut scratch = lepton_llm::llama::Scratch::default();
        let mut logits = Vec::new();
        let tokens = [0u32, 1];
        let mut steps = [lepton_llm::llama::Step {
            tokens: &tokens[..2.min(llama.config().vocab_size)],
            cache: &mut cache,
        }];
        let _ = llama.forward(&mut steps, &mut scratch, &mut logits);
        let _ = model.apply_chat_template(&[lepton_llm::ChatMessage::new("user", "hi")]);
    }
});
