//! The engine's prefix cache on SmolLM2: outputs bit-identical with the cache on and off (alone,
//! concurrent, arriving together into an empty store, multi-turn), hits counted, the budget kept
//! under eviction, and cancellation.

use std::time::{Duration, Instant};

use lepton_llm::{
    ChatMessage, Engine, EngineConfig, EngineStats, GenerationEvent, GenerationRequest,
    SamplingParams,
};

use crate::engine::collect;
use crate::smollm2::model;

const SYSTEM: &str = "You are Lepton, a friendly assistant. Answer in one or two short sentences, \
                      plainly, and never make up facts you are not sure about.";

fn chat(messages: &[(&str, &str)]) -> String {
    let messages: Vec<ChatMessage> = std::iter::once(("system", SYSTEM))
        .chain(messages.iter().copied())
        .map(|(role, text)| ChatMessage::new(role, text))
        .collect();
    model().apply_chat_template(&messages).unwrap()
}

fn question(i: u64) -> String {
    chat(&[("user", &format!("Give me a fun fact about the number {i}."))])
}

fn sampled(seed: u64, max_tokens: usize) -> SamplingParams {
    SamplingParams {
        temperature: 0.9,
        top_p: 0.95,
        seed: Some(seed),
        max_tokens,
        repetition_penalty: 1.1,
        ..Default::default()
    }
}

fn run(e: &Engine, prompt: &str, params: SamplingParams) -> (Vec<u32>, String) {
    let out = collect(e.submit(GenerationRequest::new(prompt, params)).unwrap());
    (out.ids, out.text)
}

fn engines(prefix_cache_tokens: usize) -> (Engine, Engine) {
    let config = EngineConfig::default().with_max_batch(4);
    let off = Engine::new(model(), config.clone().with_prefix_cache_tokens(0)).unwrap();
    let on = Engine::new(
        model(),
        config.with_prefix_cache_tokens(prefix_cache_tokens),
    )
    .unwrap();
    (off, on)
}

/// Wait until the engine has no running sequence, then return its stats.
fn idle(e: &Engine) -> EngineStats {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = e.stats();
        if s.active_sequences == 0 && s.kv_cache_tokens_used == 0 {
            return s;
        }
        assert!(Instant::now() < deadline, "sequences not freed: {s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn outputs_with_the_prefix_cache_equal_outputs_without_it() {
    let (off, on) = engines(4096);
    let system_tokens = model().tokenize(&chat(&[])).unwrap().len();

    // Alone: the first request fills the cache, the second reuses the system prompt.
    for i in 0..2 {
        assert_eq!(
            run(&on, &question(i), sampled(i, 12)).0,
            run(&off, &question(i), sampled(i, 12)).0
        );
    }
    let s = on.stats();
    assert_eq!(s.prefix_cache_hits, 1, "{s:?}");
    assert!(
        s.prefix_tokens_reused as usize >= system_tokens - 1,
        "{s:?}"
    );
    assert!(s.prefix_cache_tokens_used > 0);
    assert_eq!(s.prefix_cache_tokens_capacity, 4096);

    // Concurrent: three at once, then one arriving while another is running (it reuses the
    // prompt stored right after the running one's prefill).
    let expected: Vec<Vec<u32>> = (2..6)
        .map(|i| run(&off, &question(i), sampled(i, 12)).0)
        .collect();
    let rxs: Vec<_> = (2..5)
        .map(|i| {
            on.submit(GenerationRequest::new(question(i), sampled(i, 12)))
                .unwrap()
        })
        .collect();
    let first = rxs[0].recv().unwrap();
    let late = on
        .submit(GenerationRequest::new(question(5), sampled(5, 12)))
        .unwrap();
    let mut got: Vec<Vec<u32>> = rxs.into_iter().map(|rx| collect(rx).ids).collect();
    if let GenerationEvent::Token { id, .. } = first {
        got[0].insert(0, id);
    }
    got.push(collect(late).ids);
    assert_eq!(got, expected);
    let s = idle(&on);
    assert_eq!(s.prefix_cache_hits, 5, "{s:?}");

    // Multi-turn: the follow-up's prompt is the first turn's prompt, its answer and more; it
    // reuses the whole first turn, not only the system prompt.
    let turn1 = chat(&[("user", "What is the capital of France?")]);
    let (ids_on, answer) = run(&on, &turn1, SamplingParams::greedy(24));
    assert_eq!(ids_on, run(&off, &turn1, SamplingParams::greedy(24)).0);
    let turn2 = chat(&[
        ("user", "What is the capital of France?"),
        ("assistant", &answer),
        ("user", "And of Italy?"),
    ]);
    let before = on.stats().prefix_tokens_reused;
    assert_eq!(
        run(&on, &turn2, sampled(7, 16)).0,
        run(&off, &turn2, sampled(7, 16)).0
    );
    let reused = (on.stats().prefix_tokens_reused - before) as usize;
    let turn1_tokens = model().tokenize(&turn1).unwrap().len();
    assert!(
        reused > turn1_tokens,
        "the follow-up reused {reused} positions, the first turn's prompt alone has {turn1_tokens}"
    );
    let s = off.stats();
    assert_eq!(
        (
            s.prefix_cache_hits,
            s.prefix_tokens_reused,
            s.prefix_cache_tokens_used
        ),
        (0, 0, 0)
    );
}

#[test]
fn fresh_requests_arriving_together_share_the_system_prompt() {
    // An empty store: the requests admitted with the first one wait a step for its prefill.
    let (off, on) = engines(4096);
    let system_tokens = model().tokenize(&chat(&[])).unwrap().len();
    let expected: Vec<Vec<u32>> = (10..14)
        .map(|i| run(&off, &question(i), sampled(i, 10)).0)
        .collect();
    let rxs: Vec<_> = (10..14)
        .map(|i| {
            on.submit(GenerationRequest::new(question(i), sampled(i, 10)))
                .unwrap()
        })
        .collect();
    let got: Vec<Vec<u32>> = rxs.into_iter().map(|rx| collect(rx).ids).collect();
    assert_eq!(got, expected);
    let s = idle(&on);
    assert_eq!(s.prefix_cache_hits, 3, "{s:?}");
    assert!(
        s.prefix_tokens_reused as usize >= 3 * system_tokens,
        "{s:?}"
    );
}

#[test]
fn the_budget_holds_under_eviction() {
    // Room for one finished sequence (prompt + 8 tokens), not two.
    let prompt_tokens = model().tokenize(&question(0)).unwrap().len();
    let budget = prompt_tokens + 20;
    let (off, on) = engines(budget);
    for i in 0..4 {
        assert_eq!(
            run(&on, &question(i), sampled(i, 8)).0,
            run(&off, &question(i), sampled(i, 8)).0
        );
        let s = idle(&on);
        assert!(
            s.prefix_cache_tokens_used <= budget && s.prefix_cache_tokens_used > prompt_tokens,
            "{s:?}"
        );
    }
    // Each request after the first found the previous one's system prompt, the older ones
    // having been evicted.
    assert_eq!(on.stats().prefix_cache_hits, 3);
    // A prompt longer than the whole budget is served and not stored.
    let long = chat(&[("user", &"Tell me more about numbers. ".repeat(30))]);
    assert!(model().tokenize(&long).unwrap().len() > budget);
    assert_eq!(
        run(&on, &long, sampled(9, 4)).0,
        run(&off, &long, sampled(9, 4)).0
    );
    assert!(idle(&on).prefix_cache_tokens_used <= budget);
}

#[test]
fn a_cancelled_sequence_leaves_only_its_prompt() {
    let (off, on) = engines(4096);
    let prompt = question(3);
    let rx = on
        .submit(GenerationRequest::new(prompt.clone(), sampled(3, 200)))
        .unwrap();
    for _ in 0..3 {
        assert!(matches!(rx.recv().unwrap(), GenerationEvent::Token { .. }));
    }
    drop(rx);
    let s = idle(&on);
    assert_eq!(s.requests_cancelled, 1);
    let prompt_tokens = model().tokenize(&prompt).unwrap().len();
    assert_eq!(s.prefix_cache_tokens_used, prompt_tokens, "{s:?}");
    // The same prompt again reuses all of it but the last token, with the same output.
    assert_eq!(
        run(&on, &prompt, sampled(3, 12)).0,
        run(&off, &prompt, sampled(3, 12)).0
    );
    let s = on.stats();
    assert_eq!(
        (s.prefix_cache_hits, s.prefix_tokens_reused as usize),
        (1, prompt_tokens - 1)
    );
}
