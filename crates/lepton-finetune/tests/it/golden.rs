//! The decoder on the real SmolLM2 base against transformers' logits on the same dequantized
//! weights (golden written by `bench/lora/golden.py`).

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use lepton_finetune::Base;

fn gguf() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".cache/lepton-assets/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    p.exists().then_some(p)
}

#[test]
fn smollm2_logits_equal_transformers_on_the_dequantized_base() -> anyhow::Result<()> {
    let Some(path) = gguf() else {
        eprintln!("skipped: SmolLM2 GGUF missing (run scripts/fetch-assets.sh models)");
        return Ok(());
    };
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("../golden/smollm2_logits.json"))?;
    let tokens: Vec<u32> = serde_json::from_value(golden["tokens"].clone())?;
    let head: Vec<Vec<f32>> = serde_json::from_value(golden["head"].clone())?;
    let lse: Vec<f32> = serde_json::from_value(golden["logsumexp"].clone())?;
    let argmax: Vec<u32> = serde_json::from_value(golden["argmax"].clone())?;
    let base = Base::load(&path)?;
    let n = tokens.len();
    let ids = Tensor::from_vec(tokens, (1, n), &Device::Cpu)?;
    let logits = base.decoder.logits(&ids, None)?;
    let mut worst = 0f32;
    for (i, row) in head.iter().enumerate() {
        let ours = logits.get(i)?.to_vec1::<f32>()?;
        for (a, b) in ours.iter().zip(row) {
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
        let m = ours.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let our_lse = m + ours.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
        worst = worst.max((our_lse - lse[i]).abs() / lse[i].abs().max(1.0));
        let am = ours
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (j, &v)| if v > b.1 { (j, v) } else { b },
            )
            .0;
        assert_eq!(am as u32, argmax[i], "argmax of position {i}");
    }
    // f32 sums over 30 layers in another order: absolute differences reach 1.5e-4 on logits of
    // magnitude ~15, i.e. 1e-5 relative.
    eprintln!("max relative logit difference against transformers: {worst:e}");
    assert!(
        worst < 1e-4,
        "logits differ from transformers by {worst} (relative)"
    );
    Ok(())
}
