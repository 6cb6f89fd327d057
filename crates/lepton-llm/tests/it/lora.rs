//! LoRA adapters in the decoder and the engine.
//!
//! - A tiny random f32 Llama (in memory) run with an adapter on every module equals the same model
//!   with the adapter merged into its weights (`W + s·B·A`, with Wq/Wk in GGUF's RoPE row order):
//!   this checks the maths, the scale and the row permutation of `B` for `q_proj`/`k_proj`.
//! - Mixed batches: rows without an adapter are bit-identical to a decoder run without adapters,
//!   and each sequence's logits are the same alone or batched with other adapters.
//! - The engine on SmolLM2 with random adapters (small non-zero `B`, written with the `safetensors`
//!   crate through [`PeftAdapter::save`]): a loaded adapter changes the answer; base requests equal
//!   an engine without adapters, also after an adapter ran the same prompt (the prefix cache is
//!   keyed by adapter); unloading restores that; concurrent requests on two adapters and the
//!   base each equal their solo outputs; bad adapters are refused naming the tensor or module.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use lepton_llm::gguf::LlamaConfig;
use lepton_llm::llama::arch::ArchParts;
use lepton_llm::llama::weights::permute_rope_rows;
use lepton_llm::llama::{Llama, Lora, Scratch, Step, WeightSource};
use lepton_llm::peft::{LoraModule, LoraPair, PeftAdapter, PeftConfig};
use lepton_llm::quant::QMatrix;
use lepton_llm::{Engine, EngineConfig, Error, GenerationRequest, SamplingParams};

use crate::engine::collect;
use crate::smollm2::model;

fn lcg(state: &mut u64) -> f32 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}

/// A random adapter for `c` on `modules`: A in [-0.5, 0.5), B in `b_scale`·[-0.5, 0.5).
fn random_adapter(
    c: &LlamaConfig,
    modules: &[LoraModule],
    r: usize,
    alpha: f32,
    b_scale: f32,
    seed: u64,
) -> PeftAdapter {
    let mut state = seed;
    let mut pairs = BTreeMap::new();
    for layer in 0..c.num_layers {
        for &m in modules {
            let (i, o) = m.features(c);
            pairs.insert(
                (layer, m),
                LoraPair {
                    a: (0..r * i).map(|_| lcg(&mut state)).collect(),
                    b: (0..o * r).map(|_| b_scale * lcg(&mut state)).collect(),
                    rank: r,
                    in_features: i,
                    out_features: o,
                },
            );
        }
    }
    PeftAdapter::new(PeftConfig::new(r, alpha, modules), pairs, c).unwrap()
}

/// Tensors by GGUF name, served as f32 matrices.
struct Mem(HashMap<String, Vec<f32>>);

impl WeightSource for Mem {
    fn has_tensor(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> lepton_llm::Result<QMatrix> {
        Ok(QMatrix::from_f32(rows, cols, &self.0[name]).unwrap())
    }
    fn vector(&mut self, name: &str, _len: usize) -> lepton_llm::Result<Vec<f32>> {
        Ok(self.0[name].clone())
    }
}

fn tiny_config() -> LlamaConfig {
    LlamaConfig {
        name: "tiny".into(),
        vocab_size: 96,
        hidden_size: 64,
        intermediate_size: 96,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        context_length: 128,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        arch: ArchParts::llama(),
    }
}

const MATRICES: [(&str, LoraModule); 7] = [
    ("attn_q", LoraModule::QProj),
    ("attn_k", LoraModule::KProj),
    ("attn_v", LoraModule::VProj),
    ("attn_output", LoraModule::OProj),
    ("ffn_gate", LoraModule::GateProj),
    ("ffn_up", LoraModule::UpProj),
    ("ffn_down", LoraModule::DownProj),
];

/// The tiny model's tensors (GGUF names and layout, tied output).
fn tiny_tensors(c: &LlamaConfig) -> HashMap<String, Vec<f32>> {
    let mut state = 11;
    let mut t = HashMap::new();
    let mut put = |name: String, len: usize, norm: bool| {
        let v = (0..len)
            .map(|_| {
                let x = lcg(&mut state);
                if norm {
                    1.0 + 0.2 * x
                } else {
                    0.3 * x
                }
            })
            .collect();
        t.insert(name, v);
    };
    put(
        "token_embd.weight".into(),
        c.vocab_size * c.hidden_size,
        false,
    );
    put("output_norm.weight".into(), c.hidden_size, true);
    for l in 0..c.num_layers {
        put(format!("blk.{l}.attn_norm.weight"), c.hidden_size, true);
        put(format!("blk.{l}.ffn_norm.weight"), c.hidden_size, true);
        for (n, m) in MATRICES {
            let (i, o) = m.features(c);
            put(format!("blk.{l}.{n}.weight"), i * o, false);
        }
    }
    t
}

/// `tensors` with `adapter` merged: `W += P(s·B·A)`, `P` the GGUF RoPE row order for Wq and Wk.
fn merged(
    c: &LlamaConfig,
    mut tensors: HashMap<String, Vec<f32>>,
    adapter: &PeftAdapter,
) -> HashMap<String, Vec<f32>> {
    let s = adapter.config.scale();
    for (l, m, p) in adapter.pairs() {
        let (i, o, r) = (p.in_features, p.out_features, p.rank);
        let mut delta = vec![0f32; o * i];
        for row in 0..o {
            for col in 0..i {
                let mut acc = 0f64;
                for k in 0..r {
                    acc += p.b[row * r + k] as f64 * p.a[k * i + col] as f64;
                }
                delta[row * i + col] = (s as f64 * acc) as f32;
            }
        }
        let delta = match m {
            LoraModule::QProj => permute_rope_rows(&delta, c.num_heads, i),
            LoraModule::KProj => permute_rope_rows(&delta, c.num_kv_heads, i),
            _ => delta,
        };
        let n = MATRICES.iter().find(|(_, mm)| *mm == m).unwrap().0;
        let w = tensors.get_mut(&format!("blk.{l}.{n}.weight")).unwrap();
        w.iter_mut().zip(&delta).for_each(|(w, d)| *w += d);
    }
    tensors
}

/// Logits of every step: a prefill of `prompt`, then `forced` one at a time.
fn run(model: &Llama, lora: Option<&Lora>, prompt: &[u32], forced: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = model.new_cache(prompt.len() + forced.len());
    let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
    let mut out = Vec::new();
    let mut input = prompt.to_vec();
    for &t in forced.iter().chain([&0]) {
        let mut steps = [Step {
            tokens: &input,
            cache: &mut cache,
        }];
        match lora {
            Some(l) => model.forward_with(&mut steps, &[Some(l)], &mut scratch, &mut logits),
            None => model.forward(&mut steps, &mut scratch, &mut logits),
        }
        .unwrap();
        out.push(logits.clone());
        input = vec![t];
    }
    out
}

fn range(v: &[f32]) -> f32 {
    let (lo, hi) = v
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    hi - lo
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    d / range(a)
}

#[test]
fn adapter_on_every_module_equals_the_merged_model() {
    let c = tiny_config();
    let adapter = random_adapter(&c, &LoraModule::ALL, 4, 8.0, 0.2, 3);
    let base = Llama::load(&mut Mem(tiny_tensors(&c)), c.clone()).unwrap();
    let merged = Llama::load(&mut Mem(merged(&c, tiny_tensors(&c), &adapter)), c.clone()).unwrap();
    let lora = Lora::new(&adapter, &c).unwrap();
    let prompt: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % 96).collect();
    let forced = [5, 17, 42];
    let with = run(&base, Some(&lora), &prompt, &forced);
    let want = run(&merged, None, &prompt, &forced);
    let plain = run(&base, None, &prompt, &forced);
    for (step, ((a, m), p)) in with.iter().zip(&want).zip(&plain).enumerate() {
        let d = max_rel_diff(m, a);
        // Only rounding differs (K and V are stored as f16 in the cache).
        assert!(d < 1e-3, "step {step}: adapter vs merged {d}");
        // And the adapter does change the model.
        assert!(
            max_rel_diff(p, a) > 2e-2,
            "step {step}: the adapter changed nothing"
        );
    }
}

#[test]
fn mixed_batches_keep_base_rows_bit_identical_and_each_row_as_alone() {
    let c = tiny_config();
    let model = Llama::load(&mut Mem(tiny_tensors(&c)), c.clone()).unwrap();
    let a = Lora::new(
        &random_adapter(&c, &[LoraModule::QProj, LoraModule::VProj], 2, 4.0, 0.3, 5),
        &c,
    )
    .unwrap();
    let b = Lora::new(&random_adapter(&c, &LoraModule::ALL, 8, 16.0, 0.1, 9), &c).unwrap();
    let prompts: Vec<Vec<u32>> = (0..4u32)
        .map(|k| (0..6 + k).map(|i| (i * 5 + k * 11) % 96).collect())
        .collect();
    let which: [Option<&Lora>; 4] = [None, Some(&a), Some(&b), None];
    let solo: Vec<Vec<f32>> = prompts
        .iter()
        .zip(which)
        .map(|(p, l)| run(&model, l, p, &[]).pop().unwrap())
        .collect();
    let mut caches: Vec<_> = prompts.iter().map(|p| model.new_cache(p.len())).collect();
    let mut steps: Vec<Step<'_>> = prompts
        .iter()
        .zip(caches.iter_mut())
        .map(|(p, cache)| Step { tokens: p, cache })
        .collect();
    let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
    model
        .forward_with(&mut steps, &which, &mut scratch, &mut logits)
        .unwrap();
    for (i, want) in solo.iter().enumerate() {
        assert_eq!(&logits[i * 96..(i + 1) * 96], want.as_slice(), "row {i}");
    }
    assert_ne!(solo[1], run(&model, None, &prompts[1], &[]).pop().unwrap());

    // An adapter made for another decoder, or a count that does not match the steps, is refused.
    let mut other = c.clone();
    other.intermediate_size = 32;
    let foreign = Lora::new(
        &random_adapter(&other, &[LoraModule::UpProj], 2, 4.0, 0.3, 5),
        &other,
    )
    .unwrap();
    let mut cache = model.new_cache(4);
    let err = model
        .forward_with(
            &mut [Step {
                tokens: &[1, 2],
                cache: &mut cache,
            }],
            &[Some(&foreign)],
            &mut scratch,
            &mut logits,
        )
        .unwrap_err();
    assert!(err.to_string().contains("another base model"), "{err}");
}

// --- The engine on SmolLM2 -------------------------------------------------------------------

const SEA: &str =
    "<|im_start|>user\nWrite one sentence about the sea.<|im_end|>\n<|im_start|>assistant\n";
const FRANCE: &str =
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

fn save(adapter: &PeftAdapter) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    adapter.save(dir.path()).unwrap();
    dir
}

fn smollm2_adapter(seed: u64) -> tempfile::TempDir {
    let c = model().llama().config().clone();
    save(&random_adapter(
        &c,
        &[LoraModule::QProj, LoraModule::VProj],
        8,
        16.0,
        0.1,
        seed,
    ))
}

fn greedy(e: &Engine, prompt: &str, adapter: Option<&str>) -> Vec<u32> {
    let mut req = GenerationRequest::new(prompt, SamplingParams::greedy(12));
    if let Some(a) = adapter {
        req = req.with_adapter(a);
    }
    collect(e.submit(req).unwrap()).ids
}

#[test]
fn engine_adapters_change_answers_and_leave_the_base_bit_identical() {
    let plain = Engine::new(model(), EngineConfig::default()).unwrap();
    let base_sea = greedy(&plain, SEA, None);
    let base_france = greedy(&plain, FRANCE, None);

    let e = Engine::new(model(), EngineConfig::default()).unwrap();
    let (d1, d2) = (smollm2_adapter(1), smollm2_adapter(2));
    assert!(!e.load_adapter("one", d1.path()).unwrap());
    assert!(!e.load_adapter("two", d2.path()).unwrap());
    let names: Vec<_> = e.adapters().iter().map(|a| a.name.clone()).collect();
    assert_eq!(names, ["one", "two"]);

    // The adapter runs the prompt first; the base then must not reuse its prefix.
    let one_sea = greedy(&e, SEA, Some("one"));
    assert_ne!(one_sea, base_sea, "the adapter changed nothing");
    assert_eq!(greedy(&e, SEA, None), base_sea);
    let two_sea = greedy(&e, SEA, Some("two"));
    assert_ne!(two_sea, one_sea);
    // And an adapter does not reuse the base's or another adapter's prefix.
    assert_eq!(greedy(&e, SEA, Some("one")), one_sea);

    // Solo outputs, then the same requests at once (two adapters and the base, batched).
    let solo = [
        (FRANCE, Some("one")),
        (FRANCE, Some("two")),
        (SEA, None),
        (FRANCE, None),
    ];
    let want: Vec<_> = solo.iter().map(|&(p, a)| greedy(&e, p, a)).collect();
    assert_eq!(want[3], base_france);
    let rxs: Vec<_> = solo
        .iter()
        .map(|&(p, a)| {
            let mut req = GenerationRequest::new(p, SamplingParams::greedy(12));
            if let Some(a) = a {
                req = req.with_adapter(a);
            }
            e.submit(req).unwrap()
        })
        .collect();
    for (i, rx) in rxs.into_iter().enumerate() {
        assert_eq!(collect(rx).ids, want[i], "request {i}");
    }

    // Unloading: the name is unknown (naming what is loaded); the base is unchanged.
    assert!(e.unload_adapter("one"));
    assert!(!e.unload_adapter("one"));
    let err = e
        .submit(GenerationRequest::new(SEA, SamplingParams::greedy(4)).with_adapter("one"))
        .unwrap_err();
    assert!(matches!(err, Error::UnknownAdapter { .. }), "{err}");
    assert!(err.to_string().contains("loaded: two"), "{err}");
    assert_eq!(greedy(&e, SEA, None), base_sea);
    // Loading the same files under the name again gives the same answers.
    e.load_adapter("one", d1.path()).unwrap();
    assert_eq!(greedy(&e, SEA, Some("one")), one_sea);
}

fn load_err(e: &Engine, dir: &Path) -> String {
    format!(
        "{:#}",
        anyhow::Error::from(e.load_adapter("bad", dir).unwrap_err())
    )
}

#[test]
fn engine_refuses_adapters_for_another_base_and_bad_names() {
    let e = Engine::new(model(), EngineConfig::default()).unwrap();
    // An adapter for a model with another hidden size.
    let mut other = model().llama().config().clone();
    other.hidden_size = 512;
    other.head_dim = 512 / other.num_heads;
    let dir = save(&random_adapter(
        &other,
        &[LoraModule::VProj],
        4,
        8.0,
        0.1,
        1,
    ));
    let msg = load_err(&e, dir.path());
    assert!(
        msg.contains("base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight")
            && msg.contains("[4, 512]"),
        "{msg}"
    );
    // A target module that does not exist.
    let dir = smollm2_adapter(3);
    let cfg = dir.path().join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"v_proj\"", "\"c_attn\"");
    std::fs::write(&cfg, text).unwrap();
    let msg = load_err(&e, dir.path());
    assert!(
        msg.contains("\"c_attn\"") && msg.contains("target_modules"),
        "{msg}"
    );
    // Names that could not be told from `base:adapter`.
    let good = smollm2_adapter(4);
    for bad in ["", "a:b", ".hidden", "x/y"] {
        let err = e.load_adapter(bad, good.path()).unwrap_err();
        assert!(err.to_string().contains("adapter name"), "{bad}: {err}");
    }
    assert!(e.adapters().is_empty());
}
