//! Finite-difference gradient checks (f64) of the sequence layers (`embedding`, `layer-norm`,
//! `rms-norm`) inside small models on token ids, as `gradcheck.rs` does for the other layers; ids
//! have no gradient, so only the parameters are checked (the norms' input gradients are checked in
//! `gradcheck.rs`).

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_nn::{Model, ModelSpec};
use rand::{Rng, SeedableRng};

/// d/dθ of Σ model(ids) ⊙ R against central differences, for every parameter θ.
pub fn check_params(layers: &str, ids: &Tensor, tol: f64) {
    let spec: ModelSpec = toml::from_str(&format!("layers = [{layers}]")).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let model = Model::new(&spec, &ids.dims()[1..], vb).unwrap();
    lepton_nn::init_seeded(&varmap, 5).unwrap();
    let out = model.forward_t(ids, true).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let r: Vec<f64> = (0..out.elem_count())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let r = Tensor::from_vec(r, out.dims(), &Device::Cpu).unwrap();
    let f = || -> f64 {
        (model.forward_t(ids, true).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let grads = (out * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let vars: Vec<_> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    assert!(!vars.is_empty());
    for (name, var) in vars {
        let analytic: Vec<f64> = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{layers}: no gradient for {name}"))
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let h = 1e-6;
        let set = |v: &[f64]| {
            var.set(&Tensor::from_slice(v, var.dims(), &Device::Cpu).unwrap())
                .unwrap()
        };
        for i in 0..base.len() {
            let mut v = base.clone();
            v[i] = base[i] + h;
            set(&v);
            let up = f();
            v[i] = base[i] - h;
            set(&v);
            let down = f();
            set(&base);
            let numeric = (up - down) / (2.0 * h);
            let err =
                (numeric - analytic[i]).abs() / (1e-3f64).max(numeric.abs().max(analytic[i].abs()));
            assert!(
                err < tol,
                "{layers}: d/d{name}[{i}]: autograd {} vs finite differences {numeric}",
                analytic[i]
            );
        }
    }
}

fn ids() -> Tensor {
    // Batch 2 of 5 tokens from a vocabulary of 7; id 3 repeats, so its row gathers two gradients.
    Tensor::new(
        &[[3f64, 0.0, 6.0, 3.0, 1.0], [2.0, 3.0, 5.0, 4.0, 0.0]],
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn embedding_then_norms_then_linear() {
    let embed = r#"{ type = "embedding", num-embeddings = 7, embedding-dim = 4 }"#;
    for norm in [
        r#"{ type = "layer-norm" }"#,
        r#"{ type = "rms-norm" }"#,
        r#"{ type = "rms-norm", eps = 0.1 }"#,
    ] {
        check_params(
            &format!(r#"{embed}, {norm}, {{ type = "linear", out-features = 3 }}"#),
            &ids(),
            1e-5,
        );
    }
    check_params(
        &format!(r#"{embed}, {{ type = "flatten" }}, {{ type = "linear", out-features = 2 }}"#),
        &ids(),
        1e-5,
    );
}

#[test]
fn bad_embedding_specs_and_ids_are_errors_naming_the_field() {
    let spec: ModelSpec = toml::from_str(
        r#"layers = [{ type = "embedding", num-embeddings = 100000000000, embedding-dim = 1024 }]"#,
    )
    .unwrap();
    let e = spec.shapes(&[8]).unwrap_err().to_string();
    assert!(
        e.contains("model.layers[0].num-embeddings (embedding)"),
        "{e}"
    );
    let spec: ModelSpec = toml::from_str(
        r#"layers = [{ type = "embedding", num-embeddings = 0, embedding-dim = 4 }]"#,
    )
    .unwrap();
    assert!(spec.shapes(&[8]).is_err());
    let spec: ModelSpec = toml::from_str(
        r#"layers = [{ type = "embedding", num-embeddings = 7, embedding-dim = 4 }]"#,
    )
    .unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let model = Model::new(&spec, &[5], vb).unwrap();
    let bad = Tensor::new(&[[3f64, 0.0, 7.0, 3.0, 1.0]], &Device::Cpu).unwrap();
    let e = model.forward_t(&bad, false).unwrap_err().to_string();
    assert!(
        e.contains("token id 7") && e.contains("num-embeddings = 7"),
        "{e}"
    );
}
