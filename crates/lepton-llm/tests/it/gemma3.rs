//! Gemma 3 270M (GGUF Q4_K_M, architecture `gemma3`, Q5_0/Q4_K/Q6_K/Q8_0 tensors): metadata,
//! SentencePiece tokenizer and greedy decoding against llama.cpp's golden file
//! (`bench/llm/gemma3_greedy.json`, written by `bench/llm/llamacpp_greedy_cases.py`).
//!
//! The file is not part of the default assets (`scripts/fetch-assets.sh gemma` fetches it): when it
//! is missing these tests print why and return, unless `LEPTON_REQUIRE_GEMMA=1`, where they fail.

use std::sync::{Arc, OnceLock};

use lepton_llm::llama::{Scratch, Step};
use lepton_llm::sampling::argmax;
use lepton_llm::TextModel;

const FILE: &str = "gemma-3-270m-q4_k_m.gguf";
const GOLDEN: &str = "gemma3_greedy.json";

fn model() -> Option<Arc<TextModel>> {
    static MODEL: OnceLock<Option<Arc<TextModel>>> = OnceLock::new();
    MODEL
        .get_or_init(|| optional_model(FILE, "scripts/fetch-assets.sh gemma"))
        .clone()
}

/// A model that is not among the default assets: `None` (with the reason printed) when missing,
/// unless `LEPTON_REQUIRE_GEMMA=1`, where a missing file fails the test.
pub fn optional_model(file: &str, how: &str) -> Option<Arc<TextModel>> {
    let path = crate::models_root().join(file);
    if !path.exists() {
        assert!(
            std::env::var_os("LEPTON_REQUIRE_GEMMA").is_none(),
            "{} is missing: run `{how}`",
            path.display()
        );
        eprintln!("skipped: {} is missing (run `{how}`)", path.display());
        return None;
    }
    Some(Arc::new(TextModel::load(&path).expect(file)))
}

pub struct Case {
    prompt: String,
    prompt_ids: Vec<u32>,
    generated_ids: Vec<u32>,
}

/// The cases of a golden file in `bench/llm/` written by `llamacpp_greedy_cases.py`.
pub fn golden(name: &str) -> Vec<Case> {
    let path = format!("{}/../../bench/llm/{name}", env!("CARGO_MANIFEST_DIR"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).unwrap();
    let ids = |c: &serde_json::Value, k: &str| -> Vec<u32> {
        c[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            prompt: c["prompt"].as_str().unwrap().to_owned(),
            prompt_ids: ids(c, "prompt_ids"),
            generated_ids: ids(c, "generated_ids"),
        })
        .collect()
}

/// Greedy decoding: prefill in one pass, then one token per step.
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
fn gemma3_metadata_and_tokenizer_match_llama_cpp() {
    let Some(m) = model() else { return };
    let c = m.llama().config();
    assert_eq!(
        (
            c.num_layers,
            c.hidden_size,
            c.num_heads,
            c.num_kv_heads,
            c.head_dim,
            c.vocab_size
        ),
        (18, 640, 4, 1, 256, 262144)
    );
    assert_eq!(c.arch.sliding_window, Some(512));
    for case in golden(GOLDEN) {
        assert_eq!(
            m.tokenize(&case.prompt).unwrap(),
            case.prompt_ids,
            "prompt {:?}: ids differ from llama.cpp's",
            case.prompt
        );
    }
    let chat = m
        .apply_chat_template(&[
            lepton_llm::ChatMessage::new("system", "Be brief."),
            lepton_llm::ChatMessage::new("user", " Hi "),
            lepton_llm::ChatMessage::new("assistant", "Hello."),
            lepton_llm::ChatMessage::new("user", "Bye"),
        ])
        .unwrap();
    assert_eq!(
        chat,
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    );
    let ids = m.tokenize(&chat).unwrap();
    assert_eq!(ids.iter().filter(|&&t| t == 2).count(), 1, "one BOS");
    assert!(
        m.eos_token_ids().contains(&106),
        "<end_of_turn> ends a turn"
    );
    let text = "Hello, world! 123 héllo  two  spaces\n\tand 日本語";
    assert_eq!(m.detokenize(&m.tokenize(text).unwrap()[1..]).unwrap(), text);
}

#[test]
fn gemma3_greedy_matches_llama_cpp_32_tokens_on_every_prompt() {
    let Some(m) = model() else { return };
    check_cases(&m, &golden(GOLDEN));
}

/// Greedy decoding equals llama.cpp's on at least five prompts, token for token.
pub fn check_cases(m: &TextModel, cases: &[Case]) {
    assert!(cases.len() >= 5);
    for case in cases {
        assert_eq!(
            m.tokenize(&case.prompt).unwrap(),
            case.prompt_ids,
            "prompt {:?}: ids differ from llama.cpp's",
            case.prompt
        );
        let ours = greedy(m, &case.prompt_ids, case.generated_ids.len());
        assert_eq!(
            ours,
            case.generated_ids,
            "prompt {:?}: ours {:?}\nfirst difference at step {:?}",
            case.prompt,
            m.detokenize(&ours).unwrap(),
            ours.iter()
                .zip(&case.generated_ids)
                .position(|(a, b)| a != b)
        );
    }
}
