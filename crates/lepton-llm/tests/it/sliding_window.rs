//! Sliding-window layers keep only their window: on the random-weight Gemma 2 and Gemma 3 files
//! (window 16), a cache whose local layers are rings of `2 · 16` positions gives the same logits,
//! bit for bit, as a cache that keeps every position, for a prompt far past the window in one
//! pass, one token per step after it, a prefix copied into a fresh cache, and two sequences
//! batched together; and it holds less.

use lepton_llm::llama::{KvCache, Llama, Scratch, Step};
use lepton_llm::TextModel;

fn load(arch: &str) -> TextModel {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/llm/archs");
    TextModel::load(dir.join(format!("{arch}.gguf"))).expect(arch)
}

fn prompt(len: usize, vocab: usize, seed: usize) -> Vec<u32> {
    (0..len)
        .map(|i| ((i * 37 + seed * 101 + 5) % vocab) as u32)
        .collect()
}

/// Logits after `prompt[..prefill]` in one pass, then after each further token alone.
fn greedy_logits(
    model: &Llama,
    cache: &mut KvCache,
    prompt: &[u32],
    prefill: usize,
) -> Vec<Vec<f32>> {
    let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
    let mut out = Vec::new();
    let mut at = 0;
    while at < prompt.len() {
        let n = if at == 0 { prefill } else { 1 };
        model
            .forward(
                &mut [Step {
                    tokens: &prompt[at..at + n],
                    cache,
                }],
                &mut scratch,
                &mut logits,
            )
            .unwrap();
        at += n;
        out.push(logits.clone());
    }
    out
}

fn same_bits(a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let xb: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
        let yb: Vec<u32> = y.iter().map(|v| v.to_bits()).collect();
        assert!(xb == yb, "{what}: step {i} differs");
    }
}

#[test]
fn ring_caches_equal_full_caches_past_the_window() {
    for arch in ["gemma2", "gemma3"] {
        let m = load(arch);
        let model = m.llama();
        let c = model.config();
        let w = c.arch.sliding_window.expect("a window");
        assert_eq!(w, 16, "{arch}");
        let p = prompt(100, c.vocab_size, 1);
        for prefill in [1, 15, 17, 40, 90] {
            let mut full = model.new_full_cache(p.len());
            let mut ring = model.new_cache(p.len());
            assert!(
                ring.bytes() < full.bytes(),
                "{arch}: ring {} vs full {}",
                ring.bytes(),
                full.bytes()
            );
            let want = greedy_logits(model, &mut full, &p, prefill);
            let got = greedy_logits(model, &mut ring, &p, prefill);
            same_bits(&got, &want, &format!("{arch}, prefill {prefill}"));
            assert_eq!(ring.len(), p.len());
        }
        // Greedy continuation past the window: the same tokens.
        let mut tokens = [prompt(20, c.vocab_size, 2), prompt(20, c.vocab_size, 2)];
        let mut caches = [model.new_full_cache(80), model.new_cache(80)];
        for (t, cache) in tokens.iter_mut().zip(caches.iter_mut()) {
            let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
            let mut input = t.clone();
            for _ in 0..50 {
                model
                    .forward(
                        &mut [Step {
                            tokens: &input,
                            cache,
                        }],
                        &mut scratch,
                        &mut logits,
                    )
                    .unwrap();
                let next = lepton_llm::sampling::argmax(&logits);
                t.push(next);
                input = vec![next];
            }
        }
        assert_eq!(tokens[0], tokens[1], "{arch}: greedy tokens");
    }
}

#[test]
fn ring_caches_grow_copy_prefixes_and_batch_like_full_caches() {
    let m = load("gemma3");
    let model = m.llama();
    let vocab = model.config().vocab_size;
    let (a, b) = (prompt(70, vocab, 3), prompt(45, vocab, 4));
    let mut want = Vec::new();
    for p in [&a, &b] {
        let mut full = model.new_full_cache(p.len());
        want.push(greedy_logits(model, &mut full, p, 30));
    }
    // Grown from a small capacity (the ring widens as the capacity passes its size).
    let mut ring = model.new_cache(10);
    let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
    let mut got = Vec::new();
    let mut at = 0;
    while at < a.len() {
        let n = if at == 0 { 30 } else { 1 };
        if ring.capacity() < at + n {
            ring.grow((at + n).max(2 * ring.capacity()).min(a.len()));
        }
        model
            .forward(
                &mut [Step {
                    tokens: &a[at..at + n],
                    cache: &mut ring,
                }],
                &mut scratch,
                &mut logits,
            )
            .unwrap();
        at += n;
        got.push(logits.clone());
    }
    same_bits(&got, &want[0], "grown ring");

    // A snapshot of the whole sequence serves its own prefix; the continuation is the same.
    let snap = ring.snapshot(a.len()).unwrap();
    assert!(snap.can_copy_prefix(a.len()));
    // Older prefixes are gone from the local layers' rings: refused, not wrong.
    assert!(!snap.can_copy_prefix(20));
    assert!(KvCache::snapshot(&snap, 20).is_err());
    let extra = prompt(10, vocab, 5);
    let cont = |cache: &mut KvCache| {
        let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
        model
            .forward(
                &mut [Step {
                    tokens: &extra,
                    cache,
                }],
                &mut scratch,
                &mut logits,
            )
            .unwrap();
        logits
    };
    let mut copied = model.new_cache(a.len() + extra.len());
    copied.copy_prefix_from(&snap, a.len()).unwrap();
    let mut full = model.new_full_cache(a.len() + extra.len());
    greedy_logits(model, &mut full, &a, 30);
    same_bits(&[cont(&mut copied)], &[cont(&mut full)], "copied prefix");

    // Two sequences in one batch: each as alone with a full cache.
    let (mut ra, mut rb) = (model.new_cache(a.len()), model.new_cache(b.len()));
    let (mut ga, mut gb) = (Vec::new(), Vec::new());
    let (mut at_a, mut at_b) = (0, 0);
    while at_a < a.len() || at_b < b.len() {
        let na = if at_a == 0 { 30 } else { 1 };
        let nb = if at_b == 0 { 30 } else { 1 };
        let mut steps = Vec::new();
        if at_a < a.len() {
            steps.push(Step {
                tokens: &a[at_a..at_a + na],
                cache: &mut ra,
            });
        }
        if at_b < b.len() {
            steps.push(Step {
                tokens: &b[at_b..at_b + nb],
                cache: &mut rb,
            });
        }
        let both = steps.len() == 2;
        let a_in = at_a < a.len();
        model
            .forward(&mut steps, &mut scratch, &mut logits)
            .unwrap();
        let v = model.config().vocab_size;
        if a_in {
            ga.push(logits[..v].to_vec());
            at_a += na;
        }
        if both || !a_in {
            let o = if both { v } else { 0 };
            gb.push(logits[o..o + v].to_vec());
            at_b += nb;
        }
    }
    same_bits(&ga, &want[0], "batched a");
    same_bits(&gb, &want[1], "batched b");
}

/// The engine on the Gemma 3 file: concurrent sequences past the window and a multi-turn
/// conversation reusing its prefix give the same tokens with the prefix cache on and off (ring
/// caches grown by the scheduler, prefixes copied between rings), and the prefix is reused.
#[test]
fn engine_with_rings_equals_itself_without_the_prefix_cache() {
    use lepton_llm::{Engine, EngineConfig, GenerationRequest, SamplingParams};
    let m = std::sync::Arc::new(load("gemma3"));
    let config = EngineConfig::default().with_max_batch(4);
    let off = Engine::new(m.clone(), config.clone().with_prefix_cache_tokens(0)).unwrap();
    let on = Engine::new(m.clone(), config.with_prefix_cache_tokens(4096)).unwrap();
    let params = |seed, max_tokens| SamplingParams {
        temperature: 0.8,
        seed: Some(seed),
        max_tokens,
        ..Default::default()
    };
    let prompts: Vec<String> = (0..3).map(|i| format!("a fox {i} jumps")).collect();
    let run_all = |e: &Engine, prompts: &[String], n: usize| -> Vec<Vec<u32>> {
        let rx: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                e.submit(GenerationRequest::new(p.clone(), params(i as u64, n)))
                    .unwrap()
            })
            .collect();
        rx.into_iter()
            .map(|r| crate::engine::collect(r).ids)
            .collect()
    };
    // Concurrent, past the window (prompt + 60 tokens > 4 · 16 positions: rings).
    let (a, b) = (run_all(&off, &prompts, 60), run_all(&on, &prompts, 60));
    assert_eq!(a, b);
    assert!(a.iter().all(|ids| ids.len() == 60));
    // A second turn: the first turn's text and a new question; on `on` its prefix is reused.
    let turn2: Vec<String> = prompts
        .iter()
        .zip(&a)
        .map(|(p, ids)| format!("{p}{} and then", m.detokenize(ids).unwrap()))
        .collect();
    let hits = on.stats().prefix_cache_hits;
    assert_eq!(run_all(&off, &turn2, 16), run_all(&on, &turn2, 16));
    assert!(
        on.stats().prefix_cache_hits > hits,
        "the second turn reused a prefix"
    );
}
