//! Acceptance 1: the model-randomisation sanity check (Adebayo et al. 2018). Saliency maps that
//! explain the model must change when its weights are re-initialised: the rank correlation of
//! |saliency| between the trained and the randomised CNN is low, while two inputs explained by
//! the same trained model keep their own maps.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use lepton_explain::saliency;
use lepton_nn::Model;

use crate::mnist::trained;

/// Spearman's rank correlation (ties broken by position; a map has few exact ties).
fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let rank = |v: &[f32]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0f64; v.len()];
        for (k, &i) in idx.iter().enumerate() {
            r[i] = k as f64;
        }
        r
    };
    let (ra, rb) = (rank(a), rank(b));
    let n = a.len() as f64;
    let mean = (n - 1.0) / 2.0;
    let cov: f64 = ra
        .iter()
        .zip(&rb)
        .map(|(x, y)| (x - mean) * (y - mean))
        .sum();
    let var: f64 = ra.iter().map(|x| (x - mean).powi(2)).sum();
    cov / var
}

#[test]
fn saliency_maps_change_when_the_weights_are_randomised() {
    let t = trained();
    let model = t.model();
    let varmap = VarMap::new();
    let random = Model::new(
        &t.spec,
        &[1, 28, 28],
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    lepton_nn::init_seeded(&varmap, 99).unwrap();
    let mut rhos = Vec::new();
    for i in 0..5 {
        let x = t.image(i);
        let target = t.labels[i] as usize;
        let trained_map = saliency(&model, &x, target, false).unwrap().attributions;
        let random_map = saliency(&random, &x, target, false).unwrap().attributions;
        // The same model and input give the same map (the comparison itself is sound).
        let again = saliency(&model, &x, target, false).unwrap().attributions;
        assert_eq!(spearman(&trained_map, &again), 1.0);
        rhos.push(spearman(&trained_map, &random_map));
    }
    let mean = rhos.iter().sum::<f64>() / rhos.len() as f64;
    eprintln!("rank correlations trained vs randomised: {rhos:?} (mean {mean:.3})");
    assert!(
        mean < 0.5,
        "saliency barely changed under weight randomisation: rank correlations {rhos:?}"
    );
}
