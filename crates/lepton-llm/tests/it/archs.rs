//! Every decoder architecture lepton runs (`llama`, `qwen2`, `qwen3`, `phi3`, `gemma2`, `gemma3`)
//! against llama.cpp on a small random-weight GGUF file: the logits of a 64-token prompt equal
//! llama.cpp's to 1e-3 of the logit range, at every recorded position, through the prefill path
//! (the whole prompt in one pass) and the decode path (one token per step after a 16-token prefill),
//! each against llama.cpp's run of the same shape (its batched and one-row kernels round apart).
//!
//! The files and goldens are in `bench/llm/archs/`, written by `bench/llm/random_archs.py` (gguf-py's
//! writer, llama-cpp-python 0.3.36); each mixes F32, F16, Q8_0 and block types (Q4_1, Q5_0, Q5_1, Q4_K,
//! Q5_K, Q6_K) so the kernels are covered too.

use std::path::PathBuf;

use lepton_llm::gguf::GgufFile;
use lepton_llm::llama::{Llama, Scratch, Step};
use lepton_llm::TextModel;

const ARCHS: [&str; 6] = ["llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"];
const TOLERANCE: f32 = 1e-3;
/// One-token steps: two sides that round one operation a hair apart can put one activation on
/// different sides of a Q8 rounding boundary (a one-code flip moves these tiny models' logits by
/// up to ~1 % of the range from there on); at most two of the recorded positions may exceed
/// [`TOLERANCE`], none this.
const DECODE_WORST: f32 = 1e-2;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/llm/archs")
}

struct Golden {
    prompt: Vec<u32>,
    positions: Vec<usize>,
    logits: Vec<Vec<f32>>,
}

/// The golden's two runs: the prompt in one batch, and `decode_prefill` tokens then one per step.
fn goldens(arch: &str) -> (Golden, Golden, usize) {
    let path = dir().join(format!("{arch}.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file")).unwrap();
    let prefill = golden(arch);
    let n = v["decode_prefill"].as_u64().unwrap() as usize;
    let positions: Vec<usize> = prefill
        .positions
        .iter()
        .copied()
        .filter(|&p| p + 1 >= n)
        .collect();
    let decode = Golden {
        prompt: prefill.prompt.clone(),
        positions,
        logits: rows(&v["decode_logits"]),
    };
    (prefill, decode, n)
}

fn rows(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn golden(arch: &str) -> Golden {
    let path = dir().join(format!("{arch}.json"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file")).unwrap();
    assert_eq!(v["architecture"], arch);
    let list = |k: &str| -> Vec<u64> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    Golden {
        prompt: list("prompt_ids").into_iter().map(|t| t as u32).collect(),
        positions: list("positions").into_iter().map(|p| p as usize).collect(),
        logits: rows(&v["logits"]),
    }
}

/// The logits after each prompt position: the first `prefill` tokens in one pass (logits of the
/// last of them), then one token per step.
fn run(model: &Llama, prompt: &[u32], prefill: usize) -> Vec<Vec<f32>> {
    let mut cache = model.new_cache(prompt.len());
    let (mut scratch, mut logits) = (Scratch::default(), Vec::new());
    let mut out = vec![Vec::new(); prompt.len()];
    let mut at = 0;
    while at < prompt.len() {
        let n = if at == 0 { prefill } else { 1 };
        model
            .forward(
                &mut [Step {
                    tokens: &prompt[at..at + n],
                    cache: &mut cache,
                }],
                &mut scratch,
                &mut logits,
            )
            .unwrap();
        at += n;
        out[at - 1] = logits.clone();
    }
    out
}

/// Per golden position that `ours` has (empty rows are positions the run did not produce):
/// `max |ours − llama.cpp|` over the logit range.
fn errors(g: &Golden, ours: &[Vec<f32>]) -> Vec<f32> {
    let mut out = Vec::new();
    for (p, want) in g.positions.iter().zip(&g.logits) {
        let got = &ours[*p];
        if got.is_empty() {
            continue;
        }
        assert_eq!(got.len(), want.len(), "vocabulary size");
        let (lo, hi) = want
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        let err = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        out.push(err / (hi - lo));
    }
    out
}

/// The largest of [`errors`] and its position.
fn worst(g: &Golden, ours: &[Vec<f32>]) -> (f32, usize) {
    let positions: Vec<usize> = g
        .positions
        .iter()
        .copied()
        .filter(|&p| !ours[p].is_empty())
        .collect();
    errors(g, ours)
        .into_iter()
        .zip(positions)
        .fold((0f32, 0), |w, (e, p)| if e > w.0 { (e, p) } else { w })
}

fn g_len(g: &Golden) -> usize {
    g.prompt.len()
}

fn load(arch: &str) -> TextModel {
    TextModel::load(dir().join(format!("{arch}.gguf"))).expect(arch)
}

#[test]
fn each_architecture_equals_llama_cpp_logits_on_a_random_weight_file() {
    let mut failed = Vec::new();
    for arch in ARCHS {
        let (prefill, decode, n) = goldens(arch);
        let model = load(arch);
        assert_eq!(
            model.llama().config().arch.arch.gguf_name(),
            arch,
            "architecture read from the file"
        );
        // The whole prompt in one pass (position 63), then `n` tokens in one pass and one token
        // per step (positions n-1..63), each against the same path of llama.cpp.
        let (err, pos) = worst(
            &prefill,
            &run(model.llama(), &prefill.prompt, g_len(&prefill)),
        );
        eprintln!("{arch} prefill: error {err:.2e} of the logit range (position {pos})");
        if err > TOLERANCE {
            failed.push(format!("{arch} prefill: {err:.2e} at position {pos}"));
        }
        let ours = run(model.llama(), &decode.prompt, n);
        let (err, pos) = worst(&decode, &ours);
        let over = errors(&decode, &ours)
            .iter()
            .filter(|&&e| e > TOLERANCE)
            .count();
        eprintln!(
            "{arch} decode: worst error {err:.2e} of the logit range (position {pos}), {over} of {} positions above {TOLERANCE}",
            decode.positions.len()
        );
        if err > DECODE_WORST || over > 2 {
            failed.push(format!(
                "{arch} decode: {err:.2e} at position {pos}, {over} positions above {TOLERANCE}"
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "logits differ from llama.cpp's by more than {TOLERANCE} of the range: {failed:?}"
    );
}

/// Each architecture's own part matters on its file: without it the logits leave the tolerance
/// (by far for the structural parts), so the equality above is not reached by a decoder that
/// ignores the part.
#[test]
fn each_architecture_part_is_needed_to_match_llama_cpp() {
    type Flip = fn(&mut lepton_llm::llama::arch::ArchParts);
    // (architecture, part, switch it off, the error it must then exceed: structural parts by
    // far, the rounding order of the queries just past the tolerance)
    let flips: [(&str, &str, Flip, f32); 9] = [
        ("qwen2", "QKV biases", |a| a.qkv_bias = false, 1e-2),
        (
            "qwen2",
            "NeoX RoPE",
            |a| a.rope = lepton_llm::llama::arch::RopeMode::Interleaved,
            1e-2,
        ),
        ("qwen3", "QK-norm", |a| a.qk_norm = false, 1e-2),
        (
            "gemma2",
            "attention soft-cap",
            |a| a.attn_softcap = None,
            1e-2,
        ),
        ("gemma2", "final soft-cap", |a| a.final_softcap = None, 1e-2),
        (
            "gemma2",
            "sliding window",
            |a| a.sliding_window = None,
            1e-2,
        ),
        (
            "gemma3",
            "sliding window",
            |a| a.sliding_window = None,
            1e-2,
        ),
        (
            "gemma3",
            "queries scaled before f16",
            |a| a.scale_queries = false,
            TOLERANCE,
        ),
        (
            "phi3",
            "queries scaled before f16",
            |a| a.scale_queries = false,
            TOLERANCE,
        ),
    ];
    for (arch, part, flip, min) in flips {
        let g = golden(arch);
        let path = dir().join(format!("{arch}.gguf"));
        let mut file = GgufFile::open(&path).unwrap();
        let mut config = file.llama_config().unwrap();
        flip(&mut config.arch);
        let flipped = match Llama::load(&mut file, config) {
            Ok(m) => m,
            // QKV biases off: the same tensors, just not read.
            Err(e) => panic!("{arch} without {part}: {e}"),
        };
        let (err, _) = worst(&g, &run(&flipped, &g.prompt, g.prompt.len()));
        eprintln!("{arch} without {part}: {err:.2e}");
        assert!(
            err > min,
            "{arch} without {part}: error {err:.2e}, not detected"
        );
    }
}

#[test]
fn random_files_mix_native_tensor_types() {
    let mut seen = std::collections::BTreeSet::new();
    for arch in ARCHS {
        let file = GgufFile::open(&dir().join(format!("{arch}.gguf"))).unwrap();
        for info in file.content().tensor_infos.values() {
            seen.insert(lepton_llm::gguf::ggml_type_name(info.ggml_dtype));
        }
    }
    let seen: Vec<_> = seen.into_iter().collect();
    assert_eq!(
        seen,
        ["F16", "F32", "Q4_1", "Q4_K", "Q5_0", "Q5_1", "Q5_K", "Q6_K", "Q8_0"]
    );
}

/// A file without `tokenizer.chat_template` chats through its architecture's template, and the
/// turn's end token stops generation (Qwen's ChatML, Phi-3's, Gemma's).
#[test]
fn files_without_a_template_use_their_architectures_chat_template() {
    use lepton_llm::ChatMessage;
    let messages = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi"),
    ];
    let cases = [
        ("qwen2", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "<|im_end|>"),
        ("qwen3", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "<|im_end|>"),
        ("phi3", "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n", "<|end|>"),
        ("gemma2", "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n", "<end_of_turn>"),
    ];
    for (arch, want, end) in cases {
        let model = load(arch);
        let file = GgufFile::open(&dir().join(format!("{arch}.gguf"))).unwrap();
        assert!(
            file.chat_template().is_none(),
            "{arch} has its own template"
        );
        assert_eq!(
            model.apply_chat_template(&messages).unwrap(),
            want,
            "{arch}"
        );
        // The markers are single control tokens, and the turn's end stops generation.
        let ids = model.tokenize(end).unwrap();
        let end_id = *ids.last().unwrap();
        assert_eq!(ids.len(), 2, "{arch}: BOS and {end} as one token: {ids:?}");
        assert!(
            model.eos_token_ids().contains(&end_id),
            "{arch}: {end} ({end_id}) does not end generation: {:?}",
            model.eos_token_ids()
        );
    }
}

/// `arch.gguf` of `bench/llm/archs/` with metadata values replaced or added and tensors added,
/// written to a new file in `out`.
fn rewritten(
    arch: &str,
    edits: &[(&str, candle_core::quantized::gguf_file::Value)],
    extra: Vec<(String, candle_core::quantized::QTensor)>,
    out: &std::path::Path,
) -> PathBuf {
    use candle_core::quantized::gguf_file;
    let mut f = std::fs::File::open(dir().join(format!("{arch}.gguf"))).unwrap();
    let mut content = gguf_file::Content::read(&mut f).unwrap();
    let mut tensors: Vec<(String, candle_core::quantized::QTensor)> = content
        .tensor_infos
        .keys()
        .map(|n| {
            let t = content.tensor(&mut f, n, &candle_core::Device::Cpu);
            (n.clone(), t.unwrap())
        })
        .collect();
    tensors.extend(extra);
    for (k, v) in edits {
        content.metadata.insert(k.to_string(), v.clone());
    }
    let path = out.join(format!("{arch}-edited.gguf"));
    let meta: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<_> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    gguf_file::write(&mut std::fs::File::create(&path).unwrap(), &meta, &refs).unwrap();
    path
}

fn f32_tensor(n: usize) -> candle_core::quantized::QTensor {
    let t = candle_core::Tensor::ones(n, candle_core::DType::F32, &candle_core::Device::Cpu);
    candle_core::quantized::QTensor::quantize(&t.unwrap(), candle_core::quantized::GgmlDType::F32)
        .unwrap()
}

/// Phi-3's LongRoPE (the 128k-context files' `rope_factors_long`) is refused at load, named.
#[test]
fn phi3_long_rope_is_refused_by_name() {
    let out = tempfile::tempdir().unwrap();
    let extra = vec![("rope_factors_long.weight".to_string(), f32_tensor(32))];
    let path = rewritten("phi3", &[], extra, out.path());
    let e = GgufFile::open(&path)
        .unwrap()
        .llama_config()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rope_factors_long.weight") && e.contains("LongRoPE"),
        "{e}"
    );
    // The same file without the factors loads.
    let src = dir().join("phi3.gguf");
    GgufFile::open(&src).unwrap().llama_config().unwrap();
}

/// Gemma 2 27B (46 layers) scales queries by `1 / sqrt(hidden / heads)` as llama.cpp does (its
/// `query_pre_attn_scalar` is 144 with 128-wide heads); the other sizes by `1 / sqrt(head_dim)`.
#[test]
fn gemma2_27b_scales_queries_by_the_hidden_size_per_head() {
    use candle_core::quantized::gguf_file::Value;
    let out = tempfile::tempdir().unwrap();
    let config = |layers: u32| {
        // Heads of 16 in a hidden size of 64 over 2 heads, so the two rules differ.
        let edits = [
            ("gemma2.block_count", Value::U32(layers)),
            ("gemma2.attention.key_length", Value::U32(16)),
            ("gemma2.attention.value_length", Value::U32(16)),
            ("gemma2.rope.dimension_count", Value::U32(16)),
        ];
        let last = format!("blk.{}.attn_norm.weight", layers - 1);
        let path = rewritten("gemma2", &edits, vec![(last, f32_tensor(64))], out.path());
        GgufFile::open(&path).unwrap().llama_config().unwrap()
    };
    let big = config(46);
    assert_eq!(big.head_dim, 16);
    assert_eq!(big.arch.attn_scale, Some(1.0 / 32f32.sqrt()));
    assert_eq!(config(26).arch.attn_scale, None, "2B: 1 / sqrt(head_dim)");
}
