//! `Model::piecewise`: the compiled eval-mode net (batch norms as the kernel computes them, ReLU
//! merged into pools) against the model's own forward and candle autograd, its path gradient
//! (the leading affine ops' input gradient once per path) against the sum of point gradients,
//! and max-pool near-ties decided as the model decides them.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_nn::kernels::PiecewiseNet;
use lepton_nn::{Model, ModelSpec};
use rand::{Rng, SeedableRng};

pub fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-1.0..1.0)).collect()
}

/// An f64 model of `layers` with seeded weights and batch-norm running statistics moved away
/// from (0, 1) by two training forwards, so that the batch norms are not identities.
pub fn model(layers: &str, input: &[usize]) -> Model {
    let spec: ModelSpec = toml::from_str(&format!("layers = [{layers}]")).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let model = Model::new(&spec, input, vb).unwrap();
    lepton_nn::init_seeded(&varmap, 5).unwrap();
    let mut shape = vec![6];
    shape.extend_from_slice(input);
    let n: usize = shape.iter().product();
    for seed in [11, 12] {
        let x = Tensor::from_vec(values(n, seed), shape.as_slice(), &Device::Cpu).unwrap();
        let x = x.affine(2.0, 0.5).unwrap();
        model.forward_t(&x, true).unwrap();
    }
    model
}

/// Conv (groups, stride, dilation, padding), batch norm after a conv and after a linear layer,
/// stand-alone batch norm (after a pool), ReLU before and after pools, padded pools, dropout,
/// flatten, MLP, and the MNIST CNN's shape.
pub const SPECS: &[(&str, &[usize])] = &[
    (
        r#"{ type = "conv2d", out-channels = 4, kernel = 3, padding = 1, bias = false }, { type = "batch-norm2d" }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
           { type = "conv2d", out-channels = 6, kernel = 3, padding = 1, bias = false }, { type = "batch-norm2d" }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
           { type = "flatten" }, { type = "dropout", p = 0.3 }, { type = "linear", out-features = 8 }, { type = "relu" }, { type = "dropout", p = 0.3 }, { type = "linear", out-features = 3 }"#,
        &[1, 8, 8],
    ),
    (
        r#"{ type = "conv2d", out-channels = 4, kernel = 2, groups = 2, dilation = 2, stride = 2, padding = 1 }, { type = "max-pool2d", kernel = 3, stride = 2, padding = 1 }, { type = "relu" },
           { type = "batch-norm2d" }, { type = "conv2d", out-channels = 3, kernel = 1 }, { type = "relu" }, { type = "flatten" }, { type = "linear", out-features = 2 }"#,
        &[2, 11, 10],
    ),
    (
        r#"{ type = "linear", out-features = 6 }, { type = "batch-norm1d" }, { type = "relu" }, { type = "linear", out-features = 5, bias = false }, { type = "relu" }, { type = "linear", out-features = 4 }"#,
        &[7],
    ),
    (
        r#"{ type = "relu" }, { type = "max-pool2d", kernel = 2 }, { type = "conv2d", out-channels = 2, kernel = 3 }, { type = "flatten" }"#,
        &[3, 8, 9],
    ),
];

fn net(model: &Model) -> PiecewiseNet<f64> {
    model.piecewise().unwrap().expect("a piecewise-linear spec")
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs() / scale))
}

#[test]
fn the_piecewise_net_equals_the_model_forward_and_its_autograd_input_gradient() {
    for &(layers, input) in SPECS {
        let model = model(layers, input);
        let net = net(&model);
        let n = 5;
        let mut shape = vec![n];
        shape.extend_from_slice(input);
        let xs = values(n * net.input_len(), 3);
        let x = Var::from_tensor(
            &Tensor::from_vec(xs.clone(), shape.as_slice(), &Device::Cpu).unwrap(),
        )
        .unwrap();
        let y = model.forward_t(x.as_tensor(), false).unwrap();
        let y = y.reshape((n, ())).unwrap();
        assert_eq!(net.output_len(), y.dim(1).unwrap(), "{layers}");
        let ours = net.forward(&xs, n).unwrap();
        assert!(max_rel(&ours, &flat(&y)) < 1e-12, "{layers}: forward");
        for target in [0, net.output_len() - 1] {
            let g = y
                .narrow(1, target, 1)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let want = flat(g.get(x.as_tensor()).unwrap());
            let (got, scores) = net.input_gradient(&xs, n, target).unwrap();
            assert!(max_rel(&got, &want) < 1e-12, "{layers}: target {target}");
            let col = flat(&y.narrow(1, target, 1).unwrap());
            assert!(max_rel(&scores, &col) < 1e-12, "{layers}: scores");
        }
    }
}

#[test]
fn the_path_gradient_is_the_weighted_sum_of_the_point_gradients() {
    for &(layers, input) in SPECS {
        let model = model(layers, input);
        let net = net(&model);
        let len = net.input_len();
        let (x, b) = (values(len, 7), values(len, 8));
        let alphas = [0.0, 0.1, 0.35, 0.5, 0.8, 0.95, 1.0];
        let weights = [0.05, 0.1, 0.2, 0.3, 0.2, 0.1, 0.05];
        let mut want = vec![0.0; len];
        for (&a, &w) in alphas.iter().zip(&weights) {
            let p: Vec<f64> = x.iter().zip(&b).map(|(x, b)| b + a * (x - b)).collect();
            let (g, _) = net.input_gradient(&p, 1, 1).unwrap();
            for (s, v) in want.iter_mut().zip(g) {
                *s += w * v;
            }
        }
        let ends = net.forward(&[x.clone(), b.clone()].concat(), 2).unwrap();
        let k = net.output_len();
        // Batches that do not divide the step count, and one pass for all.
        for batch in [1, 3, 7, 64] {
            let got = net
                .path_gradient(&x, &b, &alphas, &weights, 1, batch)
                .unwrap();
            assert!(
                max_rel(&got.gradient, &want) < 1e-12,
                "{layers}: batch {batch}"
            );
            assert!((got.score_input - ends[1]).abs() < 1e-12);
            assert!((got.score_baseline - ends[k + 1]).abs() < 1e-12);
        }
    }
}

#[test]
fn other_layers_have_no_piecewise_net_and_bad_requests_are_errors() {
    for (layers, input) in [
        (r#"{ type = "avg-pool2d", kernel = 2 }"#, &[1, 4, 4][..]),
        (r#"{ type = "sigmoid" }"#, &[3]),
        (
            r#"{ type = "linear", out-features = 2 }, { type = "gelu" }"#,
            &[3],
        ),
        (
            r#"{ type = "residual", layers = [{ type = "linear", out-features = 3 }] }"#,
            &[3],
        ),
    ] {
        let model = model(layers, input);
        assert!(model.piecewise::<f32>().unwrap().is_none(), "{layers}");
    }
    let (layers, input) = SPECS[2];
    let net = net(&model(layers, input));
    let x = values(7, 1);
    let e = net.input_gradient(&x, 1, 4).unwrap_err().to_string();
    assert!(e.contains("target 4 out of range"), "{e}");
    let e = net.forward(&x, 2).unwrap_err().to_string();
    assert!(e.contains("7 input values for 2 samples"), "{e}");
}

/// Regression (issue 17, one MNIST image of 40 off captum by 2.8e-3): the piecewise net folded
/// a batch norm into the convolution before it, and `(W·s)·x` rounds differently from the
/// model's `(W·x)·s`; on a max-pool near-tie the two picked different window maxima, so the
/// gradient went to a different pixel. Here every sample is such a near-tie: two pixels of a
/// 2x2 window a few ulps apart (the other two far below), through a 1x1 convolution, a batch
/// norm with non-trivial statistics, ReLU, the pool and a linear layer, in f32. The net's input
/// gradient must be the model's own (candle autograd through its kernels) on every sample.
#[test]
fn max_pool_near_ties_are_decided_as_the_model_decides_them() {
    let spec: ModelSpec = toml::from_str(
        r#"layers = [{ type = "conv2d", out-channels = 1, kernel = 1, bias = false }, { type = "batch-norm2d" }, { type = "relu" }, { type = "max-pool2d", kernel = 2 }, { type = "flatten" }, { type = "linear", out-features = 2 }]"#,
    )
    .unwrap();
    let (w, gamma, beta, mean, var, eps) = (0.730_1f32, 1.37f32, 0.21f32, 0.05f32, 0.83f32, 1e-5);
    let t = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap();
    let tensors = [
        ("layers.0.weight", t(&[w]).reshape((1, 1, 1, 1)).unwrap()),
        ("layers.1.weight", t(&[gamma])),
        ("layers.1.bias", t(&[beta])),
        ("layers.1.running_mean", t(&[mean])),
        ("layers.1.running_var", t(&[var])),
        ("layers.5.weight", t(&[1.5, -0.5]).reshape((2, 1)).unwrap()),
        ("layers.5.bias", t(&[0.1, 0.2])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = Model::new(&spec, &[1, 2, 2], vb).unwrap();
    let net: PiecewiseNet<f32> = model.piecewise().unwrap().unwrap();

    // Pairs (x, x + k ulps) and how often the folded arithmetic orders them unlike the model's.
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let (s, sh) = (
        f64::from(gamma) / (f64::from(var) + eps).sqrt(),
        f64::from(beta) - f64::from(mean) * f64::from(gamma) / (f64::from(var) + eps).sqrt(),
    );
    let (a, b) = {
        let a = f64::from(gamma) * (1.0 / (f64::from(var) + eps).sqrt());
        (a as f32, (f64::from(beta) - f64::from(mean) * a) as f32)
    };
    let folded_w = (f64::from(w) * s) as f32;
    let (mut xs, mut flips) = (Vec::new(), 0);
    for _ in 0..400 {
        let x1: f32 = r.random_range(0.5..1.5);
        let x2 = f32::from_bits(x1.to_bits() + r.random_range(1..4));
        let model_y = |x: f32| (w * x) * a + b;
        let folded_y = |x: f32| folded_w * x + sh as f32;
        let order = |y: &dyn Fn(f32) -> f32| y(x2) > y(x1);
        if order(&model_y) != order(&folded_y) {
            flips += 1;
        }
        xs.extend([x1, x2, -5.0, -5.0]);
    }
    assert!(
        flips > 10,
        "the case must include near-ties that folding decides the other way ({flips})"
    );
    let n = xs.len() / 4;
    let x = Var::from_tensor(&Tensor::from_vec(xs.clone(), (n, 1, 2, 2), &Device::Cpu).unwrap())
        .unwrap();
    let y = model.forward_t(x.as_tensor(), false).unwrap();
    let grads = y
        .narrow(1, 0, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let want: Vec<f32> = grads
        .get(x.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let (got, _) = net.input_gradient(&xs, n, 0).unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (g, w)| m.max((g - w).abs()));
    assert!(worst <= 1e-6, "input gradient off by {worst}");
    // The path gradient along the same points (baseline: the inputs' near-tie pattern shrunk).
    for s in [0, 1, 2, n - 1] {
        let (xi, bi) = (&xs[4 * s..4 * s + 4], [0.25f32, 0.25, -5.0, -5.0]);
        let alphas = [0.2, 0.6, 1.0];
        let weights = [0.3, 0.3, 0.4];
        let mut want = [0f32; 4];
        for (&al, &wt) in alphas.iter().zip(&weights) {
            // The point as the autograd path forms it: `α·(x − b) + b` in f32.
            let p: Vec<f32> = xi
                .iter()
                .zip(&bi)
                .map(|(&x, &b)| (al as f32) * (x - b) + b)
                .collect();
            let v = Var::from_tensor(&Tensor::from_vec(p, (1, 1, 2, 2), &Device::Cpu).unwrap())
                .unwrap();
            let y = model.forward_t(v.as_tensor(), false).unwrap();
            let g = y
                .narrow(1, 0, 1)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g: Vec<f32> = g
                .get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (acc, gv) in want.iter_mut().zip(g) {
                *acc += wt as f32 * gv;
            }
        }
        let got = net.path_gradient(xi, &bi, &alphas, &weights, 0, 2).unwrap();
        for (g, w) in got.gradient.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-6,
                "sample {s}: path gradient {g} vs {w}"
            );
        }
    }
}

/// One sample (and any pass in a one-thread pool) runs on the calling thread with one-thread
/// GEMMs; several samples go to the pool. Both give the same answers as the batched pass.
#[test]
fn one_sample_and_one_thread_passes_equal_the_pooled_batch() {
    let pool = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    };
    let (one, two) = (pool(1), pool(2));
    for &(layers, input) in SPECS {
        let model = model(layers, input);
        let net = net(&model);
        let (len, n) = (net.input_len(), 4);
        let xs = values(n * len, 21);
        let (batched, _) = two.install(|| net.input_gradient(&xs, n, 1).unwrap());
        let (serial, _) = one.install(|| net.input_gradient(&xs, n, 1).unwrap());
        assert!(max_rel(&serial, &batched) < 1e-12, "{layers}: one thread");
        for (s, want) in batched.chunks(len).enumerate() {
            let x = &xs[s * len..(s + 1) * len];
            // From outside any pool (the global one) and from inside each.
            let (g, _) = net.input_gradient(x, 1, 1).unwrap();
            assert!(max_rel(&g, want) < 1e-12, "{layers}: sample {s}");
            for p in [&one, &two] {
                let (g, _) = p.install(|| net.input_gradient(x, 1, 1).unwrap());
                assert!(max_rel(&g, want) < 1e-12, "{layers}: sample {s} in a pool");
            }
        }
        let (x, b) = (&xs[..len], &xs[len..2 * len]);
        let (alphas, weights) = ([0.0, 0.3, 0.6, 1.0], [0.1, 0.4, 0.4, 0.1]);
        let a = two.install(|| net.path_gradient(x, b, &alphas, &weights, 0, 4).unwrap());
        let c = one.install(|| net.path_gradient(x, b, &alphas, &weights, 0, 4).unwrap());
        assert!(max_rel(&c.gradient, &a.gradient) < 1e-12, "{layers}: path");
    }
}
