//! `base-precision = "quantized"` on a tiny random GGUF (Q8_0 and Q4_1 blocks): the base stays in
//! its blocks, holds the same weights as the f32 base (RoPE rows included), gives logits within
//! the activation-rounding error of the f32 base, and a short training reaches close losses.

use candle_core::{Device, Tensor};
use lepton_finetune::base::Base;
use lepton_finetune::config::{FinetuneFile, FinetuneSpec};
use lepton_finetune::{BasePrecision, FrozenWeight};
use lepton_quant::QType;

use crate::tiny_gguf;

const QTYPES: [QType; 2] = [QType::Q8_0, QType::Q4_1];

#[test]
fn quantized_base_holds_the_f32_weights_and_gives_close_logits() -> anyhow::Result<()> {
    for qt in QTYPES {
        let dir = tempfile::tempdir()?;
        let path = tiny_gguf::write(dir.path(), qt, 11);
        let f = Base::load_with(&path, BasePrecision::F32)?.decoder;
        let q = Base::load_with(&path, BasePrecision::Quantized)?.decoder;
        let (lf, lq) = (&f.layers[1], &q.layers[1]);
        for (a, b, what) in [
            (&lf.q.base, &lq.q.base, "q_proj"),
            (&lf.k.base, &lq.k.base, "k_proj"),
            (&lf.down.base, &lq.down.base, "down_proj"),
            (&f.embed, &q.embed, "embedding"),
        ] {
            assert!(
                matches!(b, FrozenWeight::Quantized(_)),
                "{qt:?} {what} is not quantized"
            );
            assert!(matches!(a, FrozenWeight::F32(_)));
            // Same values, same (HF) row order: the RoPE rows of Wq/Wk are gathered right.
            let d = (a.to_f32()? - b.to_f32()?)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert_eq!(
                d, 0.0,
                "{qt:?} {what}: the dequantized weights differ by {d}"
            );
        }
        let ids = Tensor::from_vec((1..=24u32).collect::<Vec<_>>(), (2, 12), &Device::Cpu)?;
        let (yf, yq) = (f.logits(&ids, None)?, q.logits(&ids, None)?);
        let scale = yf.abs()?.max_all()?.to_scalar::<f32>()?;
        let diff = (&yf - &yq)?.abs()?.max_all()?.to_scalar::<f32>()?;
        // 8-bit activations (half a step of max|x|/127 per value) through 2 layers: a few per
        // cent of the logit scale at most; a wrong row order or block layout gives O(1).
        assert!(
            diff < 0.03 * scale,
            "{qt:?}: logits differ by {diff} (scale {scale})"
        );
        assert!(
            diff > 0.0,
            "{qt:?}: quantized logits equal the f32 ones exactly"
        );
    }
    Ok(())
}

#[test]
fn short_training_reaches_close_losses_in_both_precisions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = tiny_gguf::write(dir.path(), QType::Q4_1, 12);
    let words = ["the cat sat", "on a mat", "and the dog ran", "to the cat"];
    let text: String = (0..400)
        .map(|i| words[(i * 7 + i / 3) % 4])
        .collect::<Vec<_>>()
        .join(" ");
    let data = dir.path().join("data.txt");
    std::fs::write(&data, text)?;
    let mut reports = Vec::new();
    for p in [BasePrecision::F32, BasePrecision::Quantized] {
        let mut spec = FinetuneSpec::new(&path, &data);
        spec.seq_len = 32;
        spec.batch_size = 4;
        spec.steps = Some(15);
        spec.max_val_windows = Some(8);
        spec.targets = vec!["q_proj".into(), "v_proj".into(), "down_proj".into()];
        spec.base_precision = p;
        let file = FinetuneFile {
            finetune: spec,
            optimizer: lepton_train::OptimizerSpec::AdamW(lepton_train::AdamConfig {
                lr: 1e-2,
                ..Default::default()
            }),
            schedule: Default::default(),
        };
        let out = dir.path().join(format!("{p:?}"));
        let r = lepton_finetune::train::finetune(&file, &out, false)?;
        assert_eq!(r.base_precision, p);
        reports.push(r);
    }
    let (f, q) = (&reports[0], &reports[1]);
    assert_eq!(f.trainable_params, q.trainable_params);
    assert!(f.val_loss_after < f.val_loss_before - 0.3, "{f:?}");
    assert!(q.val_loss_after < q.val_loss_before - 0.3, "{q:?}");
    assert!(
        (f.val_loss_before - q.val_loss_before).abs() < 0.02,
        "{f:?}\n{q:?}"
    );
    assert!(
        (f.val_loss_after - q.val_loss_after).abs() < 0.05,
        "{f:?}\n{q:?}"
    );
    Ok(())
}
