//! Central finite differences (f64) against candle autograd, for every layer type, on random
//! inputs, checking the gradients of the input and of every parameter.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_nn::{loss, LossSpec, Model, ModelSpec};
use rand::{Rng, SeedableRng};

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    Tensor::from_vec(
        (0..n)
            .map(|_| r.random_range(-1.0..1.0))
            .collect::<Vec<f64>>(),
        shape,
        &Device::Cpu,
    )
    .unwrap()
}

/// f(x, θ) = Σ model(x) ⊙ R, a scalar with a generic gradient.
pub fn check(layers: &str, input: &[usize], batch: usize, train: bool) {
    check_tol(layers, input, batch, train, 1e-5)
}

pub fn check_tol(layers: &str, input: &[usize], batch: usize, train: bool, tol: f64) {
    let spec: ModelSpec = toml::from_str(&format!("layers = [{layers}]")).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let model = Model::new(&spec, input, vb).unwrap();
    lepton_nn::init_seeded(&varmap, 5).unwrap();
    model.set_seed(3);
    let mut shape = vec![batch];
    shape.extend_from_slice(input);
    let x = Var::from_tensor(&random(&shape, 1)).unwrap();
    let out_shape = model
        .forward_t(x.as_tensor(), train)
        .unwrap()
        .dims()
        .to_vec();
    let r = random(&out_shape, 2);
    let f = || -> f64 {
        (model.forward_t(x.as_tensor(), train).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let y = (model.forward_t(x.as_tensor(), train).unwrap() * &r)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = y.backward().unwrap();

    let mut vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| !n.contains("running"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    vars.push(("input".into(), x.clone()));
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
        // Check up to 40 evenly spread entries per tensor to keep the test fast.
        let stride = (base.len() / 40).max(1);
        for i in (0..base.len()).step_by(stride) {
            let mut v = base.clone();
            v[i] = base[i] + h;
            var.set(&Tensor::from_vec(v.clone(), var.dims(), &Device::Cpu).unwrap())
                .unwrap();
            let up = f();
            v[i] = base[i] - h;
            var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap())
                .unwrap();
            let down = f();
            var.set(&Tensor::from_vec(base.clone(), var.dims(), &Device::Cpu).unwrap())
                .unwrap();
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

#[test]
fn linear() {
    check(r#"{ type = "linear", out-features = 5 }"#, &[7], 3, true);
    check(
        r#"{ type = "linear", out-features = 2, bias = false }"#,
        &[4, 3],
        2,
        true,
    );
}

#[test]
fn conv2d_with_stride_padding_dilation_groups() {
    check(
        r#"{ type = "conv2d", out-channels = 3, kernel = 3 }"#,
        &[2, 6, 5],
        2,
        true,
    );
    check(
        r#"{ type = "conv2d", out-channels = 4, kernel = 3, stride = 2, padding = 1 }"#,
        &[2, 7, 7],
        2,
        true,
    );
    check(
        r#"{ type = "conv2d", out-channels = 4, kernel = 2, groups = 2, dilation = 2 }"#,
        &[4, 6, 6],
        1,
        true,
    );
    // Strided windows that leave the last row and column uncovered (candle's own backward fails here).
    check(
        r#"{ type = "conv2d", out-channels = 2, kernel = 3, stride = 2 }"#,
        &[2, 8, 7],
        2,
        true,
    );
}

#[test]
fn pooling() {
    check(
        r#"{ type = "max-pool2d", kernel = 2 }"#,
        &[2, 6, 6],
        2,
        true,
    );
    check(
        r#"{ type = "max-pool2d", kernel = 3, stride = 2, padding = 1 }"#,
        &[1, 7, 7],
        2,
        true,
    );
    check(
        r#"{ type = "avg-pool2d", kernel = 2 }"#,
        &[2, 6, 5],
        2,
        true,
    );
    check(
        r#"{ type = "avg-pool2d", kernel = 3, stride = 2, padding = 1 }"#,
        &[1, 7, 7],
        1,
        true,
    );
    check(r#"{ type = "global-avg-pool" }"#, &[3, 4, 5], 2, true);
}

#[test]
fn normalisation() {
    check(r#"{ type = "batch-norm1d" }"#, &[4], 5, true);
    check(r#"{ type = "batch-norm1d" }"#, &[4], 5, false);
    check(r#"{ type = "batch-norm2d" }"#, &[3, 4, 4], 2, true);
    check(r#"{ type = "batch-norm2d" }"#, &[3, 4, 4], 2, false);
    check(r#"{ type = "layer-norm" }"#, &[6], 3, true);
}

#[test]
fn rms_norm_and_layer_norm_on_sequences() {
    check(r#"{ type = "rms-norm" }"#, &[6], 3, true);
    check(r#"{ type = "rms-norm", eps = 0.5 }"#, &[3, 4], 2, true);
    check(r#"{ type = "layer-norm" }"#, &[3, 4], 2, true);
}

#[test]
fn activations_dropout_flatten_residual() {
    // candle's erf is a piecewise approximation whose ~1e-13 ripples show in finite differences
    // with h = 1e-6, hence the looser tolerance for GELU.
    check_tol(r#"{ type = "gelu" }"#, &[2, 5], 3, true, 1e-4);
    for a in ["relu", "sigmoid", "tanh", "softmax", "flatten"] {
        check(&format!(r#"{{ type = "{a}" }}"#), &[2, 5], 3, true);
    }
    check(r#"{ type = "leaky-relu", slope = 0.1 }"#, &[9], 2, true);
    check(r#"{ type = "dropout", p = 0.3 }"#, &[20], 2, true);
    check(
        r#"{ type = "residual", layers = [{ type = "linear", out-features = 6 }, { type = "tanh" }] }"#,
        &[6],
        3,
        true,
    );
    check(
        r#"{ type = "conv2d", out-channels = 3, kernel = 3, padding = 1 }, { type = "batch-norm2d" }, { type = "relu" },
           { type = "max-pool2d", kernel = 2 }, { type = "flatten" }, { type = "linear", out-features = 4 }"#,
        &[2, 6, 6],
        3,
        true,
    );
}

#[test]
fn fused_relus_in_a_lenet_shaped_model() {
    // conv + relu and batch-norm + relu are fused into one kernel each (eval and train).
    for train in [true, false] {
        check(
            r#"{ type = "conv2d", out-channels = 3, kernel = 3 }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
               { type = "conv2d", out-channels = 4, kernel = 2, bias = false }, { type = "batch-norm2d" }, { type = "relu" },
               { type = "flatten" }, { type = "linear", out-features = 5 }, { type = "relu" }, { type = "linear", out-features = 2 }"#,
            &[2, 9, 9],
            3,
            train,
        );
    }
}

#[test]
fn losses() {
    let logits = Var::from_tensor(&random(&[4, 3], 9)).unwrap();
    let targets = Tensor::new(&[0u32, 2, 1, 2], &Device::Cpu).unwrap();
    let w = random(&[4], 11).abs().unwrap();
    for spec in [
        LossSpec::CrossEntropy {
            label_smoothing: 0.0,
        },
        LossSpec::CrossEntropy {
            label_smoothing: 0.2,
        },
    ] {
        let f = |t: &Tensor| {
            loss(&spec, t, &targets, Some(&w))
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let g = loss(&spec, logits.as_tensor(), &targets, Some(&w))
            .unwrap()
            .backward()
            .unwrap();
        let analytic: Vec<f64> = g
            .get(logits.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let base: Vec<f64> = logits.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        for i in 0..base.len() {
            let mut v = base.clone();
            v[i] += 1e-6;
            let up = f(&Tensor::from_vec(v.clone(), (4, 3), &Device::Cpu).unwrap());
            v[i] -= 2e-6;
            let down = f(&Tensor::from_vec(v, (4, 3), &Device::Cpu).unwrap());
            assert!(
                ((up - down) / 2e-6 - analytic[i]).abs() < 1e-7,
                "{spec:?} [{i}]"
            );
        }
    }
}

#[test]
fn recurrent_layers_unidirectional_and_bidirectional() {
    // Input and every weight_ih/weight_hh/bias of each layer and direction, through the time loop.
    for kind in ["lstm", "gru", "rnn"] {
        for (dirs, seqs) in [(false, true), (false, false), (true, true), (true, false)] {
            check(
                &format!(
                    r#"{{ type = "{kind}", hidden-size = 3, num-layers = 2, bidirectional = {dirs}, return-sequences = {seqs} }}"#
                ),
                &[4, 2],
                2,
                true,
            );
        }
    }
}

/// The input gradient of an eval-mode model whose weights are plain tensors (as a photon loads
/// them), against central finite differences: what explanations differentiate. No parameter
/// gets a gradient.
fn check_input_through_frozen_weights(layers: &str, input: &[usize], batch: usize) {
    let spec: ModelSpec = toml::from_str(&format!("layers = [{layers}]")).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    Model::new(&spec, input, vb).unwrap();
    lepton_nn::init_seeded(&varmap, 5).unwrap();
    let tensors: std::collections::HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
        .collect();
    let frozen: Vec<Tensor> = tensors.values().cloned().collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F64, &Device::Cpu);
    let model = Model::new(&spec, input, vb).unwrap();
    let mut shape = vec![batch];
    shape.extend_from_slice(input);
    let x = Var::from_tensor(&random(&shape, 1)).unwrap();
    let out = model.forward_t(x.as_tensor(), false).unwrap();
    let r = random(out.dims(), 2);
    let f = |t: &Tensor| -> f64 {
        (model.forward_t(t, false).unwrap() * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let grads = (out * &r).unwrap().sum_all().unwrap().backward().unwrap();
    for t in &frozen {
        assert!(
            grads.get(t).is_none(),
            "{layers}: a frozen weight got a gradient"
        );
    }
    let analytic: Vec<f64> = grads
        .get(x.as_tensor())
        .unwrap_or_else(|| panic!("{layers}: no input gradient through frozen weights"))
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let base: Vec<f64> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    let h = 1e-6;
    let stride = (base.len() / 60).max(1);
    for i in (0..base.len()).step_by(stride) {
        let at = |d: f64| {
            let mut v = base.clone();
            v[i] += d;
            f(&Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap())
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h);
        let err =
            (numeric - analytic[i]).abs() / (1e-3f64).max(numeric.abs().max(analytic[i].abs()));
        assert!(
            err < 1e-5,
            "{layers}: d/dinput[{i}]: autograd {} vs finite differences {numeric}",
            analytic[i]
        );
    }
}

#[test]
fn input_gradient_of_each_fused_kernel_through_frozen_weights() {
    for (layers, input) in [
        // Linear, alone and with the fused ReLU (an MLP).
        (
            r#"{ type = "linear", out-features = 6 }, { type = "relu" }, { type = "linear", out-features = 3, bias = false }"#,
            &[7][..],
        ),
        // Convolution: bias or not, stride, padding, dilation, groups, uncovered rows.
        (
            r#"{ type = "conv2d", out-channels = 3, kernel = 3 }"#,
            &[2, 6, 5],
        ),
        (
            r#"{ type = "conv2d", out-channels = 4, kernel = 3, stride = 2, padding = 1, bias = false }"#,
            &[2, 7, 7],
        ),
        (
            r#"{ type = "conv2d", out-channels = 4, kernel = 2, groups = 2, dilation = 2 }"#,
            &[4, 6, 6],
        ),
        (
            r#"{ type = "conv2d", out-channels = 2, kernel = 3, stride = 2 }"#,
            &[2, 8, 7],
        ),
        // Conv + ReLU, conv + ReLU + max-pool, conv + batch norm + ReLU + max-pool (all fused).
        (
            r#"{ type = "conv2d", out-channels = 3, kernel = 3, padding = 1 }, { type = "relu" }"#,
            &[1, 6, 6],
        ),
        (
            r#"{ type = "conv2d", out-channels = 3, kernel = 3, padding = 1 }, { type = "relu" }, { type = "max-pool2d", kernel = 2 }"#,
            &[2, 6, 6],
        ),
        (
            r#"{ type = "conv2d", out-channels = 3, kernel = 3, bias = false }, { type = "batch-norm2d" }, { type = "relu" }, { type = "max-pool2d", kernel = 2 }"#,
            &[2, 8, 8],
        ),
        // Stand-alone pools and the batch norm of an MLP.
        (
            r#"{ type = "max-pool2d", kernel = 3, stride = 2, padding = 1 }, { type = "avg-pool2d", kernel = 2 }"#,
            &[2, 9, 9],
        ),
        (
            r#"{ type = "linear", out-features = 5 }, { type = "batch-norm1d" }, { type = "relu" }, { type = "linear", out-features = 2 }"#,
            &[4],
        ),
        // The MNIST CNN's shape.
        (
            r#"{ type = "conv2d", out-channels = 4, kernel = 3 }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
               { type = "conv2d", out-channels = 4, kernel = 3 }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
               { type = "flatten" }, { type = "linear", out-features = 8 }, { type = "relu" }, { type = "linear", out-features = 3 }"#,
            &[1, 14, 14],
        ),
    ] {
        check_input_through_frozen_weights(layers, input, 2);
    }
}

/// The input gradient of `Model::piecewise` (batch norms folded into the weights, ReLUs merged
/// into the pools, leading affine ops run once per path) against central finite differences of
/// its own forward, for every output.
#[test]
fn piecewise_input_gradient_against_finite_differences() {
    for &(layers, input) in crate::piecewise::SPECS {
        let net = crate::piecewise::model(layers, input)
            .piecewise::<f64>()
            .unwrap()
            .unwrap();
        let x = crate::piecewise::values(net.input_len(), 4);
        let stride = (x.len() / 60).max(1);
        for target in 0..net.output_len() {
            let (analytic, _) = net.input_gradient(&x, 1, target).unwrap();
            let h = 1e-6;
            for i in (0..x.len()).step_by(stride) {
                let at = |d: f64| {
                    let mut v = x.clone();
                    v[i] += d;
                    net.forward(&v, 1).unwrap()[target]
                };
                let numeric = (at(h) - at(-h)) / (2.0 * h);
                let err = (numeric - analytic[i]).abs()
                    / (1e-3f64).max(numeric.abs().max(analytic[i].abs()));
                assert!(
                    err < 1e-5,
                    "{layers}: d y[{target}] / d x[{i}]: {} vs finite differences {numeric}",
                    analytic[i]
                );
            }
        }
    }
}
