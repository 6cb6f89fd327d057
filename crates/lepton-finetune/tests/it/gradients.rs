//! Finite-difference check of the adapter gradients through the whole decoder.

use candle_core::{Device, Tensor};
use lepton_finetune::loss::masked_cross_entropy;
use lepton_finetune::train::attach;
use lepton_finetune::Decoder;

use crate::support::{randomize_b, tiny_config, tiny_file};

#[test]
fn adapter_gradients_match_finite_differences() -> anyhow::Result<()> {
    let mut d = Decoder::random(tiny_config(), 3)?;
    let mut file = tiny_file(1);
    file.finetune.targets = vec!["q_proj".into(), "v_proj".into(), "down_proj".into()];
    attach(&mut d, &file)?;
    randomize_b(&d)?;
    let tokens: Vec<u32> = vec![1, 5, 9, 2, 33, 7, 4, 4, 12, 0, 3, 19];
    let ids = Tensor::from_vec(tokens.clone(), (2, 6), &Device::Cpu)?;
    let mut targets: Vec<u32> = Vec::new();
    let mut mask = Vec::new();
    for row in tokens.chunks(6) {
        targets.extend(row[1..].iter().copied().chain([0]));
        mask.extend([true, true, false, true, true, false]);
    }
    let loss_of = |d: &Decoder| -> anyhow::Result<f64> {
        let l = masked_cross_entropy(&d.logits(&ids, None)?, &targets, &mask)?;
        Ok(l.to_scalar::<f32>()? as f64)
    };
    let loss = masked_cross_entropy(&d.logits(&ids, None)?, &targets, &mask)?;
    let grads = loss.backward()?;
    let mut checked = 0;
    for (layer, module, pair) in d.adapters() {
        for var in [&pair.a, &pair.b] {
            let g = grads.get(var.as_tensor()).expect("adapter has a gradient");
            let g = g.flatten_all()?.to_vec1::<f32>()?;
            let orig = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            for idx in [0, orig.len() / 2, orig.len() - 1] {
                let eps = 1e-2f32;
                let at = |delta: f32| -> anyhow::Result<f64> {
                    let mut v = orig.clone();
                    v[idx] += delta;
                    var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu)?)?;
                    loss_of(&d)
                };
                let numeric = (at(eps)? - at(-eps)?) / (2.0 * eps as f64);
                var.set(&Tensor::from_vec(orig.clone(), var.shape(), &Device::Cpu)?)?;
                let analytic = g[idx] as f64;
                let tol = 2e-3 + 2e-2 * numeric.abs().max(analytic.abs());
                assert!(
                    (numeric - analytic).abs() < tol,
                    "layer {layer} {module} element {idx}: numeric {numeric} analytic {analytic}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * 3 * 2 * 3);
    // The check is not vacuous: some gradients are clearly non-zero.
    let any = d.adapters().iter().any(|(_, _, p)| {
        grads
            .get(p.a.as_tensor())
            .and_then(|g| g.abs().ok()?.max_all().ok()?.to_scalar::<f32>().ok())
            .is_some_and(|m| m > 1e-3)
    });
    assert!(any, "all adapter gradients are ~0");
    Ok(())
}

#[test]
fn base_weights_get_no_gradient() -> anyhow::Result<()> {
    let mut d = Decoder::random(tiny_config(), 4)?;
    attach(&mut d, &tiny_file(1))?;
    let ids = Tensor::from_vec(vec![1u32, 2, 3, 4], (1, 4), &Device::Cpu)?;
    let loss = masked_cross_entropy(
        &d.logits(&ids, None)?,
        &[2, 3, 4, 0],
        &[true, true, true, false],
    )?;
    let grads = loss.backward()?;
    let l0 = &d.layers[0];
    for w in [&l0.q.base, &l0.k.base, &l0.gate.base, &d.embed] {
        let t = w.as_tensor().expect("an f32 base");
        assert!(grads.get(t).is_none(), "a frozen tensor has a gradient");
    }
    assert!(grads
        .get(l0.q.lora.as_ref().unwrap().b.as_tensor())
        .is_some());
    Ok(())
}
