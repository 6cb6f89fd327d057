//! Acceptance 1: integrated gradients satisfies completeness, Σ IG = f(x) − f(baseline), within
//! 1 % at 256 steps on a trained MNIST CNN.

use lepton_explain::{integrated_gradients, Baseline, IgConfig, Rule};

use crate::mnist::trained;

#[test]
fn integrated_gradients_is_complete_within_one_percent_at_256_steps_on_the_mnist_cnn() {
    let t = trained();
    assert!(
        t.accuracy > 0.9,
        "the test CNN trained to only {}",
        t.accuracy
    );
    let model = t.model();
    eprintln!("test accuracy of the in-test CNN: {}", t.accuracy);
    for i in 0..6 {
        let x = t.image(i);
        let target = t.labels[i] as usize;
        for (baseline, rule) in [
            (Baseline::Zeros, Rule::GaussLegendre),
            (Baseline::Blur { sigma: 4.0 }, Rule::GaussLegendre),
            (Baseline::Zeros, Rule::Trapezoid),
        ] {
            let cfg = IgConfig {
                steps: 256,
                rule,
                batch: 64,
            };
            let ig = integrated_gradients(&model, &x, &baseline, target, &cfg).unwrap();
            let c = &ig.checks;
            let delta = c["score-input"].as_f64().unwrap() - c["score-baseline"].as_f64().unwrap();
            let sum: f64 = ig.attributions.iter().map(|&v| f64::from(v)).sum();
            let rel = (sum - delta).abs() / delta.abs();
            eprintln!("image {i} {baseline:?} {rule:?}: relative completeness error {rel:.2e}");
            assert!(
                rel < 0.01,
                "image {i} ({baseline:?}, {rule:?}): Σ IG = {sum}, f(x) − f(b) = {delta}"
            );
            assert!((c["completeness-relative-error"].as_f64().unwrap() - rel).abs() < 1e-6);
        }
    }
}
