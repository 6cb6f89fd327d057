use candle_core::{Tensor, Var};
use lepton_finetune::config::{FinetuneFile, FinetuneSpec};
use lepton_finetune::data::Example;
use lepton_finetune::{Decoder, DecoderConfig};

/// A 2-layer decoder with grouped-query attention (4 heads, 2 KV heads).
pub fn tiny_config() -> DecoderConfig {
    DecoderConfig {
        vocab_size: 37,
        hidden_size: 16,
        intermediate_size: 24,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 4,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        context_length: 64,
    }
}

pub fn tiny_file(steps: u64) -> FinetuneFile {
    let mut spec = FinetuneSpec::new("unused.gguf", "unused.txt");
    spec.lora_r = 2;
    spec.lora_alpha = 4.0;
    spec.seq_len = 8;
    spec.batch_size = 2;
    spec.steps = Some(steps);
    spec.seed = 7;
    FinetuneFile {
        finetune: spec,
        optimizer: lepton_train::OptimizerSpec::AdamW(lepton_train::AdamConfig {
            lr: 1e-2,
            ..Default::default()
        }),
        schedule: Default::default(),
    }
}

/// Windows of a repeating token pattern (learnable).
pub fn windows(n: usize, seq: usize, vocab: u32) -> Vec<Example> {
    (0..n)
        .map(|i| Example {
            tokens: (0..seq as u32)
                .map(|p| (p * 3 + i as u32) % vocab)
                .collect(),
            mask: vec![true; seq - 1],
        })
        .collect()
}

/// Give every B a random value so gradients of A are not all zero.
pub fn randomize_b(decoder: &Decoder) -> anyhow::Result<()> {
    for (_, _, pair) in decoder.adapters() {
        let b: &Var = &pair.b;
        b.set(&Tensor::randn(0f32, 0.3, b.shape(), b.device())?)?;
    }
    Ok(())
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}
