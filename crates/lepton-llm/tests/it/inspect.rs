//! `ModelSummary`: what a GGUF file or HF folder holds, read from headers only, checked against a
//! file written here with known contents and against the published facts of the real models.

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use lepton_llm::inspect::ModelSummary;

fn qtensor(rows: usize, cols: usize, dtype: GgmlDType) -> QTensor {
    let t = Tensor::zeros((rows, cols), candle_core::DType::F32, &Device::Cpu).unwrap();
    QTensor::quantize(&t, dtype).unwrap()
}

#[test]
fn a_gguf_summary_counts_types_and_names_what_has_no_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let meta = [
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String("tiny".into())),
        ("general.file_type", Value::U32(15)),
        ("llama.context_length", Value::U32(2048)),
        ("llama.block_count", Value::U32(1)),
        ("llama.embedding_length", Value::U32(256)),
        ("llama.attention.head_count", Value::U32(4)),
        ("llama.attention.head_count_kv", Value::U32(2)),
        (
            "tokenizer.ggml.tokens",
            Value::Array((0..7).map(|i| Value::String(format!("t{i}"))).collect()),
        ),
        ("tokenizer.chat_template", Value::String("{{ x }}".into())),
    ];
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensors = [
        ("a.weight", qtensor(4, 256, GgmlDType::Q4K)),
        ("b.weight", qtensor(2, 256, GgmlDType::Q4K)),
        ("c.weight", qtensor(1, 256, GgmlDType::Q2K)),
        ("norm.weight", qtensor(1, 32, GgmlDType::F32)),
    ];
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut f = std::fs::File::create(&path).unwrap();
    gguf_file::write(&mut f, &meta_refs, &refs).unwrap();
    drop(f);

    let s = ModelSummary::read(&path).unwrap();
    assert_eq!(s.format, "gguf");
    assert_eq!(s.name.as_deref(), Some("tiny"));
    assert_eq!(s.quantization.as_deref(), Some("Q4_K_M"));
    assert_eq!((s.parameters, s.tensors), (6 * 256 + 256 + 32, 4));
    let types: Vec<(&str, usize, u64, u64)> = s
        .types
        .iter()
        .map(|t| (t.dtype.as_str(), t.tensors, t.parameters, t.bytes))
        .collect();
    // Q4_K: 144 bytes per 256 values; Q2_K: 84; F32: 4 per value.
    assert_eq!(
        types,
        [
            ("Q4_K", 2, 1536, 6 * 144),
            ("Q2_K", 1, 256, 84),
            ("F32", 1, 32, 128)
        ]
    );
    assert_eq!(s.context_length, Some(2048));
    assert_eq!((s.layers, s.heads, s.kv_heads), (Some(1), Some(4), Some(2)));
    assert_eq!((s.hidden_size, s.vocab_size), (Some(256), Some(7)));
    assert_eq!(s.chat_template.as_deref(), Some("{{ x }}"));
    assert!(!s.supported);
    let why = s.unsupported.as_deref().unwrap();
    assert!(
        why.starts_with("tensor types without a kernel: Q2_K ("),
        "{why}"
    );
    assert_eq!(s.bytes, std::fs::metadata(&path).unwrap().len());
}

#[test]
fn the_real_models_match_their_published_facts() {
    // SmolLM2-135M: 134.5 M parameters, 30 layers, 9 heads (3 KV), 576 wide, 49,152 tokens,
    // 8,192 context (its model card and config.json).
    let s = ModelSummary::read(&crate::model_dir("SmolLM2-135M-Instruct.Q4_K_M.gguf")).unwrap();
    assert_eq!(s.architecture, "llama");
    assert!(s.supported, "{:?}", s.unsupported);
    assert_eq!(s.quantization.as_deref(), Some("Q4_K_M"));
    assert_eq!(s.parameters, 134_515_008);
    assert_eq!(
        (
            s.layers,
            s.heads,
            s.kv_heads,
            s.hidden_size,
            s.vocab_size,
            s.context_length
        ),
        (
            Some(30),
            Some(9),
            Some(3),
            Some(576),
            Some(49_152),
            Some(8_192)
        )
    );
    assert!(s.chat_template.as_deref().unwrap().contains("<|im_start|>"));
    assert!(s.types.iter().any(|t| t.dtype == "Q4_K"), "{:?}", s.types);

    // all-MiniLM-L6-v2: BERT, 22.7 M parameters in F32, 6 layers, 12 heads, 384 wide.
    let s = ModelSummary::read(&crate::model_dir("all-MiniLM-L6-v2")).unwrap();
    assert_eq!((s.format, s.architecture.as_str()), ("hf", "bert"));
    assert!(s.supported);
    assert_eq!(s.quantization.as_deref(), Some("F32"));
    assert_eq!(s.parameters / 100_000, 227, "{}", s.parameters);
    assert_eq!(
        (s.layers, s.heads, s.hidden_size, s.vocab_size),
        (Some(6), Some(12), Some(384), Some(30_522))
    );
    assert!(s.to_text().contains("runs here     yes"));
}
