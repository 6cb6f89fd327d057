//! The generation engine on SmolLM2: streaming, stop conditions, batched = alone, cancellation and
//! bad requests.

use std::time::{Duration, Instant};

use lepton_llm::{
    Engine, EngineConfig, Error, FinishReason, GenerationEvent, GenerationRequest, SamplingParams,
};

use crate::smollm2::model;

const FRANCE: &str =
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

/// What a finished request streamed (shared with the prefix-cache tests).
pub(crate) struct Output {
    pub(crate) ids: Vec<u32>,
    pub(crate) text: String,
    pub(crate) finish: FinishReason,
    pub(crate) completion_tokens: usize,
}

pub(crate) fn collect(rx: flume::Receiver<GenerationEvent>) -> Output {
    let (mut ids, mut text) = (Vec::new(), String::new());
    for ev in rx.iter() {
        match ev {
            GenerationEvent::Token { id, text: t } => {
                ids.push(id);
                text.push_str(&t);
            }
            GenerationEvent::Done {
                finish_reason,
                usage,
                ..
            } => {
                return Output {
                    ids,
                    text,
                    finish: finish_reason,
                    completion_tokens: usage.completion_tokens,
                }
            }
            GenerationEvent::Error(e) => panic!("generation failed: {e}"),
        }
    }
    panic!("no Done event")
}

fn engine(config: EngineConfig) -> Engine {
    Engine::new(model(), config).unwrap()
}

#[test]
fn greedy_stops_at_eos_and_on_stop_strings_and_length() {
    let e = engine(EngineConfig::default());
    let out = collect(
        e.submit(GenerationRequest::new(FRANCE, SamplingParams::greedy(32)))
            .unwrap(),
    );
    assert_eq!(out.text, "The capital of France is Paris.");
    assert_eq!(out.finish, FinishReason::Stop);
    // Seven tokens of text, then the end-of-sequence token (counted, not streamed).
    assert_eq!((out.ids.len(), out.completion_tokens), (7, 8));
    assert_eq!(model().detokenize(&out.ids).unwrap(), out.text);

    let stop = SamplingParams {
        stop: vec![" Paris".into()],
        ..SamplingParams::greedy(32)
    };
    let out = collect(e.submit(GenerationRequest::new(FRANCE, stop)).unwrap());
    assert_eq!(
        (out.text.as_str(), out.finish),
        ("The capital of France is", FinishReason::Stop)
    );

    let out = collect(
        e.submit(GenerationRequest::new(FRANCE, SamplingParams::greedy(3)))
            .unwrap(),
    );
    assert_eq!(
        (out.text.as_str(), out.finish, out.completion_tokens),
        ("The capital of", FinishReason::Length, 3)
    );
}

#[test]
fn batched_outputs_equal_outputs_alone() {
    let e = engine(EngineConfig::default().with_max_batch(4));
    let request = |i: u64| {
        let prompt = format!(
            "<|im_start|>user\nGive me a fun fact number {i}.<|im_end|>\n<|im_start|>assistant\n"
        );
        let params = SamplingParams {
            temperature: 0.9,
            top_p: 0.95,
            seed: Some(i),
            max_tokens: 20,
            repetition_penalty: 1.1,
            ..Default::default()
        };
        GenerationRequest::new(prompt, params)
    };
    let alone: Vec<Vec<u32>> = (0..4)
        .map(|i| collect(e.submit(request(i)).unwrap()).ids)
        .collect();
    let rxs: Vec<_> = (0..4).map(|i| e.submit(request(i)).unwrap()).collect();
    let together: Vec<Vec<u32>> = rxs.into_iter().map(|rx| collect(rx).ids).collect();
    assert_eq!(alone, together);
    assert!(e.stats().steps > 0);
}

#[test]
fn dropped_receiver_frees_the_sequence() {
    let e = engine(EngineConfig::default());
    let rx = e
        .submit(GenerationRequest::new(
            FRANCE,
            SamplingParams {
                max_tokens: 500,
                seed: Some(1),
                ..Default::default()
            },
        ))
        .unwrap();
    assert!(matches!(rx.recv().unwrap(), GenerationEvent::Token { .. }));
    drop(rx);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = e.stats();
        if s.active_sequences == 0 && s.kv_cache_tokens_used == 0 {
            assert_eq!(s.requests_cancelled, 1);
            break;
        }
        assert!(Instant::now() < deadline, "sequence not freed: {s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The engine still serves.
    let out = collect(
        e.submit(GenerationRequest::new(FRANCE, SamplingParams::greedy(3)))
            .unwrap(),
    );
    assert_eq!(out.completion_tokens, 3);
}

#[test]
fn bad_requests_are_rejected_with_the_field_named() {
    let e = engine(EngineConfig::default().with_kv_cache_tokens(4096));
    let err = |prompt: &str, params: SamplingParams| {
        e.submit(GenerationRequest::new(prompt, params))
            .unwrap_err()
    };
    let long = "word ".repeat(9000);
    assert!(matches!(
        err(&long, SamplingParams::greedy(1)),
        Error::ContextOverflow { .. }
    ));
    let absurd = err("Hi", SamplingParams::greedy(usize::MAX));
    assert!(matches!(absurd, Error::ContextOverflow { .. }), "{absurd}");
    let over_budget = err("Hi", SamplingParams::greedy(5000)).to_string();
    assert!(
        over_budget.contains("max_tokens") && over_budget.contains("4096"),
        "{over_budget}"
    );
    assert!(err("Hi", SamplingParams::greedy(0))
        .to_string()
        .contains("max_tokens"));
    assert!(err("", SamplingParams::greedy(4))
        .to_string()
        .contains("prompt"));
    let hot = SamplingParams {
        temperature: -1.0,
        ..Default::default()
    };
    assert!(err("Hi", hot).to_string().contains("temperature"));
    let stats = e.stats();
    assert_eq!((stats.queue_depth, stats.active_sequences), (0, 0));
}

#[test]
fn full_queue_rejects() {
    let e = engine(
        EngineConfig::default()
            .with_max_batch(1)
            .with_queue_capacity(1),
    );
    let long = SamplingParams {
        max_tokens: 200,
        seed: Some(2),
        ..Default::default()
    };
    let results: Vec<_> = (0..3)
        .map(|_| e.submit(GenerationRequest::new(FRANCE, long.clone())))
        .collect();
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(Error::QueueFull { capacity: 1 }))),
        "three requests into a queue of one with one slot running: one must be refused"
    );
}
