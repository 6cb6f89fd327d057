//! Adversarial specs: random layer stacks with sizes from 0 to `i64::MAX` (the largest TOML
//! integer). Shape inference must never panic or overflow, and for every spec it accepts, the
//! values it counts against the budget must be exactly what building the model allocates.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use lepton_nn::{Budget, Model, ModelSpec};
use rand::{Rng, SeedableRng};

/// A size: mostly small, sometimes 0, huge or just past a power of two.
fn size(r: &mut impl Rng) -> i64 {
    match r.random_range(0..10) {
        0 => 0,
        1 => i64::MAX,
        2 => 1 << r.random_range(31..63),
        3 => (1 << 32) + 1,
        _ => r.random_range(1..6),
    }
}

fn layer(r: &mut impl Rng) -> String {
    let (a, b, c) = (size(r), size(r), size(r));
    match r.random_range(0..12) {
        0 => format!(r#"{{ type = "linear", out-features = {a} }}"#),
        1 => format!(r#"{{ type = "conv2d", out-channels = {a}, kernel = {b}, padding = {c} }}"#),
        2 => format!(
            r#"{{ type = "conv2d", out-channels = {a}, kernel = {b}, dilation = {c}, stride = 2 }}"#
        ),
        3 => format!(r#"{{ type = "max-pool2d", kernel = {a}, padding = {b} }}"#),
        4 => format!(r#"{{ type = "avg-pool2d", kernel = {a}, stride = {b} }}"#),
        5 => r#"{ type = "batch-norm2d" }"#.into(),
        6 => r#"{ type = "flatten" }"#.into(),
        7 => r#"{ type = "relu" }"#.into(),
        8 => format!(r#"{{ type = "embedding", num-embeddings = {a}, embedding-dim = {b} }}"#),
        9 => r#"{ type = "layer-norm" }"#.into(),
        10 => format!(
            r#"{{ type = "residual", layers = [{{ type = "linear", out-features = {a} }}] }}"#
        ),
        _ => r#"{ type = "batch-norm1d" }"#.into(),
    }
}

#[test]
fn random_specs_never_panic_and_count_exactly_what_is_built() {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let budget = Budget::default()
        .with_max_parameters(20_000)
        .with_max_activations(20_000);
    let (mut accepted, mut built) = (0, 0);
    for _ in 0..3000 {
        let n = r.random_range(1..5);
        let layers: Vec<String> = (0..n).map(|_| layer(&mut r)).collect();
        let text = format!("layers = [{}]", layers.join(", "));
        let spec: ModelSpec = match toml::from_str(&text) {
            Ok(s) => s,
            Err(_) => continue, // a value past usize on this platform, say
        };
        let input: Vec<usize> = match r.random_range(0..3) {
            0 => vec![
                r.random_range(1..4),
                r.random_range(1..9),
                r.random_range(1..9),
            ],
            1 => vec![r.random_range(1..20)],
            _ => vec![1 << 40, 1 << 40],
        };
        // Default budget: any answer, but no panic.
        let default = spec.shapes(&input);
        let Ok(shapes) = spec.shapes_within(&input, &budget) else {
            continue;
        };
        accepted += 1;
        assert!(default.is_ok(), "{text}: accepted by the small budget only");
        let activations: u64 = shapes
            .iter()
            .map(|s| s.iter().product::<usize>() as u64)
            .sum();
        assert!(activations <= 20_000, "{text}: {shapes:?}");
        let counted = spec.parameter_count(&input).unwrap();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        Model::new(&spec, &input, vb).unwrap_or_else(|e| panic!("{text} on {input:?}: {e}"));
        let data = varmap.data().lock().unwrap();
        let trainable: usize = data
            .iter()
            .filter(|(n, _)| !n.contains("running"))
            .map(|(_, v)| v.elem_count())
            .sum();
        let all: usize = data.values().map(|v| v.elem_count()).sum();
        assert_eq!(counted, trainable as u64, "{text} on {input:?}");
        assert!(all <= 20_000, "{text} on {input:?}: {all} values built");
        built += 1;
    }
    // The generator reaches both outcomes often enough to mean something.
    assert!(
        accepted > 300 && built == accepted,
        "{accepted} accepted, {built} built"
    );
}
