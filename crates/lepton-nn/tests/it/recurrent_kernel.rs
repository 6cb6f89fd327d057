//! The fused recurrent op ([`lepton_nn::kernels::recurrent`]) on its own: central finite
//! differences (f64) against its backward through time, for every input (the input projections,
//! `W_hh`, `b_hh`), each cell, both directions, batch 1 and a single step, and with large
//! pre-activations that saturate the gates.

use candle_core::{DType, Device, Tensor, Var};
use lepton_nn::kernels::{recurrent, RecurrentCell};
use rand::{Rng, SeedableRng};

fn random(shape: &[usize], scale: f64, seed: u64) -> Tensor {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| scale * r.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// `Σ recurrent(xp, w, b) ⊙ r` for the current values of the variables.
fn objective(xp: &Var, w: &Var, b: &Var, r: &Tensor, cell: RecurrentCell, reverse: bool) -> Tensor {
    (recurrent(xp, w, b, cell, reverse).unwrap() * r)
        .unwrap()
        .sum_all()
        .unwrap()
}

fn check(cell: RecurrentCell, reverse: bool, (bs, t, h): (usize, usize, usize), scale: f64) {
    let gh = cell.gates() * h;
    let xp = Var::from_tensor(&random(&[bs, t, gh], scale, 1)).unwrap();
    let w = Var::from_tensor(&random(&[gh, h], scale, 2)).unwrap();
    let b = Var::from_tensor(&random(&[gh], scale, 3)).unwrap();
    let r = random(&[bs, t, h], 1.0, 4);
    let grads = objective(&xp, &w, &b, &r, cell, reverse)
        .backward()
        .unwrap();
    for (name, var) in [("xp", &xp), ("w_hh", &w), ("b_hh", &b)] {
        let analytic: Vec<f64> = grads
            .get(var)
            .unwrap_or_else(|| panic!("no gradient for {name}"))
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let eps = 1e-6;
        for i in 0..base.len() {
            let at = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap())
                    .unwrap();
                objective(&xp, &w, &b, &r, cell, reverse)
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            at(0.0);
            let err =
                (numeric - analytic[i]).abs() / (1e-3f64).max(numeric.abs().max(analytic[i].abs()));
            assert!(
                err < 1e-5,
                "{cell:?} reverse={reverse} b={bs} t={t} h={h} scale={scale}: d/d{name}[{i}]: \
                 backward {} vs finite differences {numeric}",
                analytic[i]
            );
        }
    }
}

#[test]
fn fused_recurrent_op_gradients_equal_finite_differences() {
    for cell in [RecurrentCell::Lstm, RecurrentCell::Gru, RecurrentCell::Rnn] {
        for reverse in [false, true] {
            for dims in [(2, 5, 3), (1, 4, 2), (3, 1, 2), (1, 1, 1)] {
                check(cell, reverse, dims, 1.0);
            }
            // Saturated gates (pre-activations up to ±4).
            check(cell, reverse, (2, 4, 3), 4.0);
        }
    }
}

#[test]
fn fused_recurrent_op_refuses_mismatched_shapes() {
    let dev = Device::Cpu;
    let xp = Tensor::zeros((2, 3, 8), DType::F32, &dev).unwrap();
    let w = Tensor::zeros((8, 2), DType::F32, &dev).unwrap();
    let b = Tensor::zeros(8, DType::F32, &dev).unwrap();
    // 8 = 4 gates x 2 for an LSTM, but not 3 x H for a GRU.
    assert!(recurrent(&xp, &w, &b, RecurrentCell::Lstm, false).is_ok());
    let e = recurrent(&xp, &w, &b, RecurrentCell::Gru, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("recurrent kernel") && e.contains("do not fit"),
        "{e}"
    );
    let short_bias = Tensor::zeros(7, DType::F32, &dev).unwrap();
    assert!(recurrent(&xp, &w, &short_bias, RecurrentCell::Lstm, false).is_err());
    let halfs = xp.to_dtype(DType::F16).unwrap();
    let e = recurrent(
        &halfs,
        &w.to_dtype(DType::F16).unwrap(),
        &b.to_dtype(DType::F16).unwrap(),
        RecurrentCell::Lstm,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("F16"), "{e}");
}
