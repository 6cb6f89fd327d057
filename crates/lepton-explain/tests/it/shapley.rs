//! Acceptance 1: kernel SHAP on a linear model recovers the exact Shapley values
//! `w_i (x_i − E[x_i])` within 1e-3, by enumeration (≤ 12 features) and by sampling (above).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use lepton_explain::{kernel_shap, KernelShapConfig};
use lepton_nn::{Model, ModelSpec};
use rand::{Rng, SeedableRng};

fn case(f: usize, seed: u64) {
    let spec: ModelSpec = toml::from_str(&format!(
        r#"input = [{f}]
           layers = [{{ type = "linear", out-features = 3 }}]"#
    ))
    .unwrap();
    let varmap = VarMap::new();
    let model = Model::new(
        &spec,
        &[f],
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    lepton_nn::init_seeded(&varmap, seed).unwrap();
    let w = varmap.data().lock().unwrap()["layers.0.weight"]
        .as_tensor()
        .to_vec2::<f32>()
        .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-2.0..2.0)).collect() };
    let (m, target) = (30, 1);
    let bg = draw(m * f);
    let x = draw(f);
    let background = Tensor::from_vec(bg.clone(), (m, f), &Device::Cpu).unwrap();
    let input = Tensor::from_vec(x.clone(), f, &Device::Cpu).unwrap();
    let s = kernel_shap(
        &model,
        &input,
        &background,
        target,
        &KernelShapConfig::default(),
    )
    .unwrap();
    assert_eq!(s.params["exact"], f <= 12);
    for i in 0..f {
        let mean: f32 = (0..m).map(|r| bg[r * f + i]).sum::<f32>() / m as f32;
        let want = w[target][i] * (x[i] - mean);
        assert!(
            (s.attributions[i] - want).abs() < 1e-3,
            "{f} features, feature {i}: kernel SHAP {} vs w·(x − E[x]) {want}",
            s.attributions[i]
        );
    }
    assert!(s.checks["efficiency-error"].as_f64().unwrap() < 1e-4);
}

#[test]
fn kernel_shap_recovers_linear_shapley_values_exactly_and_by_sampling() {
    for (f, seed) in [(2, 1), (5, 2), (12, 3), (20, 4)] {
        case(f, seed);
    }
}
