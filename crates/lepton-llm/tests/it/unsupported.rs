//! GGUF files we cannot run are refused at load with the exact name of what is unsupported and the
//! list of what is, and a tensor type without a kernel is never expanded to f32 beyond a budget.

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use lepton_llm::gguf::{GgufFile, DEQUANTIZE_BUDGET};

fn write(path: &std::path::Path, arch: &str, tensors: &[(&str, QTensor)]) {
    let arch_v = Value::String(arch.into());
    let meta = [("general.architecture", &arch_v)];
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &meta, &refs).unwrap();
}

fn qtensor(rows: usize, cols: usize, dtype: GgmlDType) -> QTensor {
    let t = Tensor::zeros((rows, cols), candle_core::DType::F32, &Device::Cpu).unwrap();
    QTensor::quantize(&t, dtype).unwrap()
}

#[test]
fn unknown_architecture_is_refused_with_the_supported_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write(&path, "mamba", &[("w", qtensor(2, 32, GgmlDType::F32))]);
    let e = GgufFile::open(&path)
        .unwrap()
        .llama_config()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "unknown architecture mamba (supported: llama, qwen2, qwen3, phi3, gemma2, gemma3)"
        ),
        "{e}"
    );
}

#[test]
fn tensor_type_without_a_kernel_is_refused_above_the_f32_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    // 4 Mi + 256 values: one tensor whose f32 expansion is just over the 16 MiB budget, and a
    // small one within it (both F16, which has no kernel).
    let cols = 256;
    let rows = DEQUANTIZE_BUDGET / 4 / cols + 1;
    write(
        &path,
        "llama",
        &[
            ("big", qtensor(rows, cols, GgmlDType::F16)),
            ("small", qtensor(4, cols, GgmlDType::F16)),
            ("k", qtensor(4, cols, GgmlDType::Q4K)),
        ],
    );
    let mut f = GgufFile::open(&path).unwrap();
    let e = f.matrix("big", rows, cols).unwrap_err().to_string();
    assert!(e.contains("tensor big has type F16"), "{e}");
    assert!(e.contains(&format!("budget {DEQUANTIZE_BUDGET}")), "{e}");
    assert!(
        e.contains("types kept quantized: F32, Q4_1, Q8_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K"),
        "{e}"
    );
    let small = f.matrix("small", 4, cols).unwrap();
    assert_eq!(small.qtype(), lepton_llm::quant::QType::F32);
    // A K-quant stays in its blocks: 4 rows of one 144-byte block each.
    let k = f.matrix("k", 4, cols).unwrap();
    assert_eq!(k.qtype().name(), "Q4_K");
    assert_eq!(k.bytes(), 4 * 144);
}

/// Mistral's GGUF files use `llama` (run); `mistral3` (Ministral 3: YaRN RoPE and an attention
/// temperature) is not a Llama with another name and is refused by name, not run wrongly.
#[test]
fn mistral3_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    write(&path, "mistral3", &[("w", qtensor(2, 32, GgmlDType::F32))]);
    let e = GgufFile::open(&path)
        .unwrap()
        .llama_config()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "unknown architecture mistral3 (supported: llama, qwen2, qwen3, phi3, gemma2, gemma3)"
        ),
        "{e}"
    );
}
