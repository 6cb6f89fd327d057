//! The steps and the gate.

use lepton_compress::{
    accuracy, compress, fold_batch_norms, prune_structured, quantize, quantize_per_layer,
    quantize_with, quantize_with_codes, Calibration, CompressConfig, CompressData, Error, Quantize,
};
use lepton_nn::LayerSpec;

use crate::support::{blobs, init, loss, outputs, trained};

const MLP: &str = r#"{ type = "linear", out-features = 32 }, { type = "relu" },
    { type = "linear", out-features = 4 }"#;

const CNN: &str = r#"{ type = "conv2d", out-channels = 8, kernel = 3, padding = 1 },
    { type = "batch-norm2d" }, { type = "relu" }, { type = "max-pool2d", kernel = 2 },
    { type = "conv2d", out-channels = 8, kernel = 3, padding = 1, bias = false },
    { type = "relu" }, { type = "flatten" }, { type = "dropout", p = 0.1 },
    { type = "linear", out-features = 16 }, { type = "relu" }, { type = "linear", out-features = 3 }"#;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn the_gate_refuses_99_percent_pruning_and_says_why() {
    let train = blobs(400, 4, &[8], 1);
    let held = blobs(200, 4, &[8], 2);
    let net = trained(MLP, &train, 5);
    let base = accuracy(&net, &held, "t").unwrap();
    assert!(base > 95.0, "the test model must be accurate first: {base}");
    let cfg = CompressConfig {
        prune: Some(0.99),
        ..Default::default()
    };
    let data = CompressData {
        held_out: &held,
        train: Some(&train),
        loss: &loss(),
    };
    let out = compress("mlp", net, &cfg, data).unwrap();
    let r = &out.report;
    assert!(!r.accepted && !r.written, "{r:?}");
    let why = r.refusal.as_deref().unwrap();
    assert!(
        why.contains("after prune") && why.contains("max-drop = 0.5"),
        "{why}"
    );
    assert_eq!(r.steps.last().unwrap().decision, "refused");
    assert!(r.to_markdown().contains("nothing written"));
    // With force the package is written anyway, and the report says so.
    let cfg = CompressConfig { force: true, ..cfg };
    let out = compress("mlp", trained(MLP, &train, 5), &cfg, data).unwrap();
    assert!(!out.report.accepted && out.report.written);
}

#[test]
fn folding_batch_norms_keeps_the_function() {
    let data = blobs(64, 3, &[2, 6, 6], 3);
    let mut net = trained(CNN, &data, 1);
    // Make the running statistics non-trivial.
    for (name, t) in net.tensors.iter_mut() {
        if name.ends_with("running_var") {
            *t = (t.clone() + 0.7).unwrap();
        }
        if name.ends_with("running_mean") {
            *t = (t.clone() - 0.3).unwrap();
        }
    }
    let before = outputs(&net, &data, 16);
    assert_eq!(fold_batch_norms(&mut net).unwrap(), 1);
    assert!(!net
        .spec
        .layers
        .iter()
        .any(|l| matches!(l, LayerSpec::BatchNorm2d(_))));
    let after = outputs(&net, &data, 16);
    assert!(
        max_diff(&before, &after) < 1e-4,
        "{}",
        max_diff(&before, &after)
    );
}

#[test]
fn structured_pruning_removes_channels_and_shrinks_the_next_layers() {
    let data = blobs(32, 3, &[2, 6, 6], 4);
    let mut net = init(CNN, &[2, 6, 6]);
    fold_batch_norms(&mut net).unwrap();
    // Zero the first half of each prunable layer's channels: they are the smallest in L1, and
    // removing them must not change the function (ReLU(0) = 0 feeds nothing downstream).
    for (i, co) in [(0usize, 8usize), (3, 8), (7, 16)] {
        for name in ["weight", "bias"] {
            let key = format!("layers.{i}.{name}");
            let Some(t) = net.tensors.get(&key) else {
                continue;
            };
            let mut dims = t.dims().to_vec();
            let mut v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            let per = v.len() / co;
            v[..co / 2 * per].fill(0.0);
            let t = candle_core::Tensor::from_vec(
                v,
                dims.as_mut_slice().to_vec(),
                &candle_core::Device::Cpu,
            )
            .unwrap();
            net.tensors.insert(key, t);
        }
    }
    let before = outputs(&net, &data, 8);
    let removed = prune_structured(&mut net, 0.5).unwrap();
    assert_eq!(removed, 4 + 4 + 8);
    let after = outputs(&net, &data, 8);
    assert!(
        max_diff(&before, &after) < 1e-5,
        "{}",
        max_diff(&before, &after)
    );
    let l = &net.spec.layers;
    assert!(matches!(&l[0], LayerSpec::Conv2d(c) if c.out_channels == 4));
    assert!(matches!(&l[3], LayerSpec::Conv2d(c) if c.out_channels == 4));
    assert!(matches!(&l[7], LayerSpec::Linear(c) if c.out_features == 8));
    assert!(
        matches!(&l[9], LayerSpec::Linear(c) if c.out_features == 3),
        "classes stay"
    );
    assert_eq!(net.tensors["layers.3.weight"].dims(), &[4, 4, 3, 3]);
    assert_eq!(net.tensors["layers.7.weight"].dims(), &[8, 4 * 3 * 3]);
}

#[test]
fn int8_models_stay_within_quantization_error_and_are_int8() {
    let data = blobs(300, 3, &[2, 6, 6], 5);
    let net = trained(CNN, &data, 3);
    let want = outputs(&net, &data, 32);
    let base = accuracy(&net, &data, "t").unwrap();
    for mode in [Quantize::DynamicInt8, Quantize::Int8] {
        let mut q = net.clone();
        // Every conv and linear, the first conv (fan-in 2·3·3 = 18) too.
        assert_eq!(
            quantize(&mut q, mode, Some((&data, 128, Calibration::Mse))).unwrap(),
            4
        );
        assert!(q.is_int8());
        let got = outputs(&q, &data, 32);
        let range = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(
            max_diff(&want, &got) < 0.05 * range,
            "{mode:?}: {}",
            max_diff(&want, &got)
        );
        let acc = accuracy(&q, &data, "t").unwrap();
        assert!(base - acc <= 1.0, "{mode:?}: {acc} vs {base}");
        // int8 codes: about a quarter of the f32 bytes.
        assert!(q.size_bytes().unwrap() * 10 < net.size_bytes().unwrap() * 4);
    }
}

/// Per-channel means of `[n, c, ...]` outputs (`c` channels, `per` values each per sample).
fn channel_means(out: &[f32], c: usize, per: usize) -> Vec<f64> {
    let mut m = vec![0f64; c];
    for (i, &v) in out.iter().enumerate() {
        m[(i / per) % c] += v as f64;
    }
    let count = (out.len() / c) as f64;
    m.into_iter().map(|v| v / count).collect()
}

/// Bias correction (issue 16): on the calibration samples, each channel's mean output of the
/// static int8 model equals the f32 model's (up to f32 rounding), the later layers' too (they
/// are corrected on the inputs the corrected int8 layers before them give); without it the
/// means are off by the weight and input rounding. A strided, padded conv after a conv + ReLU,
/// and a linear layer after a linear + ReLU.
#[test]
fn bias_correction_matches_each_channels_mean_output_to_the_f32_model() {
    let cases = [
        (
            r#"{ type = "conv2d", out-channels = 4, kernel = 3, padding = 1 }, { type = "relu" },
               { type = "conv2d", out-channels = 5, kernel = 3, padding = 1, stride = 2, bias = false }"#,
            vec![2, 6, 6],
            5,
            9,
        ),
        (MLP, vec![8], 4, 1),
    ];
    for (spec, shape, c, per) in cases {
        let data = blobs(96, 3, &shape, 7);
        let net = init(spec, &shape);
        let want = channel_means(&outputs(&net, &data, 96), c, per);
        let range = want.iter().fold(0f64, |a, v| a.max(v.abs()));
        let mut err = [0f64; 2];
        for (on, err) in [false, true].into_iter().zip(&mut err) {
            let mut q = net.clone();
            quantize_with(
                &mut q,
                Quantize::Int8,
                Some((&data, 96, Calibration::Minmax)),
                on,
            )
            .unwrap();
            let got = channel_means(&outputs(&q, &data, 96), c, per);
            *err = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
        }
        assert!(err[1] < 1e-5 * range.max(1.0), "{spec}: corrected {err:?}");
        assert!(
            err[0] > 20.0 * err[1],
            "{spec}: the test must see a shift: {err:?}"
        );
    }
}

/// Calibration chosen per layer on the held-out samples: never worse there than `mse`
/// everywhere (where it starts), the accuracy it reports is the returned model's, one method per
/// int8 layer; through `compress` (spec key `calibration = "per-layer"`) the report names them.
#[test]
fn per_layer_calibration_is_chosen_on_the_held_out_samples() {
    let train = blobs(300, 3, &[2, 6, 6], 5);
    let held = blobs(150, 3, &[2, 6, 6], 6);
    let net = trained(CNN, &train, 3);
    let mut all_mse = net.clone();
    quantize(
        &mut all_mse,
        Quantize::Int8,
        Some((&train, 64, Calibration::Mse)),
    )
    .unwrap();
    let mut q = net.clone();
    let c = quantize_per_layer(&mut q, &train, 64, &held, true).unwrap();
    assert_eq!(
        (c.layers, c.methods.len(), c.zero_points.len()),
        (4, 4, 4),
        "{c:?}"
    );
    // The first layer's input (with negatives) keeps the symmetric codes; the chosen ones are
    // the model's.
    assert_eq!(c.zero_points[0], 128, "{c:?}");
    let built: Vec<u8> = q
        .spec
        .layers
        .iter()
        .filter_map(|l| match l {
            LayerSpec::Conv2dInt8(c) => Some(c.input_zero_point),
            LayerSpec::LinearInt8(c) => Some(c.input_zero_point),
            _ => None,
        })
        .collect();
    assert_eq!(built, c.zero_points);
    assert!(q.is_int8());
    assert_eq!(c.held_out_accuracy, accuracy(&q, &held, "t").unwrap());
    assert!(c.held_out_accuracy >= accuracy(&all_mse, &held, "t").unwrap());
    let cfg: CompressConfig =
        toml::from_str("quantize = \"int8\"\ncalibration = \"per-layer\"").unwrap();
    assert!(cfg.bias_correction, "on by default");
    let data = CompressData {
        held_out: &held,
        train: Some(&train),
        loss: &loss(),
    };
    let out = compress("cnn", net, &cfg, data).unwrap();
    let step = out.report.steps.last().unwrap();
    assert!(step.detail.contains("calibration per layer"), "{step:?}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let train = blobs(100, 4, &[8], 1);
    let data = CompressData {
        held_out: &train,
        train: Some(&train),
        loss: &loss(),
    };
    for ratio in [1.0, -0.1, 1.5, f64::NAN] {
        let cfg = CompressConfig {
            prune: Some(ratio),
            ..Default::default()
        };
        let e = compress("m", init(MLP, &[8]), &cfg, data).unwrap_err();
        assert!(matches!(e, Error::Setting { field: "prune", .. }), "{e}");
        assert!(e.to_string().contains("outside [0, 1)"), "{e}");
    }
    // Calibration samples of the wrong shape.
    let wrong = blobs(10, 4, &[9], 1);
    let mut net = init(MLP, &[8]);
    let e = quantize(
        &mut net,
        Quantize::Int8,
        Some((&wrong, 10, Calibration::Minmax)),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("calibration data") && e.to_string().contains("[9]"),
        "{e}"
    );
    // An already-int8 model.
    let mut net = init(MLP, &[8]);
    quantize(&mut net, Quantize::DynamicInt8, None).unwrap();
    let cfg = CompressConfig {
        quantize: Some(Quantize::DynamicInt8),
        ..Default::default()
    };
    let e = compress("m", net, &cfg, data).unwrap_err();
    assert!(e.to_string().contains("already int8"), "{e}");
}

/// With `zero-point-codes`, static int8 gives each input never negative on the calibration samples (after a ReLU) codes
/// with zero point 0 (`c / 255` per step: twice the symmetric resolution), keeps symmetric codes
/// (128) where the data has negative values (the first layer here), and each chained layer
/// writes its codes at the next layer's zero point; the model stays within the int8 error.
#[test]
fn never_negative_inputs_get_zero_point_0_and_the_chain_writes_it() {
    let data = blobs(300, 3, &[2, 6, 6], 5);
    assert!(
        data.features.iter().any(|&v| v < 0.0),
        "the data must have negatives"
    );
    let net = trained(CNN, &data, 3);
    let want = outputs(&net, &data, 32);
    let zero_points = |q: &lepton_compress::Net| -> Vec<(u8, u8, Option<f32>)> {
        q.spec
            .layers
            .iter()
            .filter_map(|l| match l {
                LayerSpec::Conv2dInt8(c) => {
                    Some((c.input_zero_point, c.output_zero_point, c.output_scale))
                }
                LayerSpec::LinearInt8(c) => {
                    Some((c.input_zero_point, c.output_zero_point, c.output_scale))
                }
                _ => None,
            })
            .collect()
    };
    // The default: symmetric codes everywhere.
    let mut q = net.clone();
    quantize(&mut q, Quantize::Int8, Some((&data, 128, Calibration::Mse))).unwrap();
    assert!(
        zero_points(&q).iter().all(|z| (z.0, z.1) == (128, 128)),
        "{:?}",
        zero_points(&q)
    );
    let mut q = net.clone();
    quantize_with_codes(
        &mut q,
        Quantize::Int8,
        Some((&data, 128, Calibration::Mse)),
        true,
        true,
    )
    .unwrap();
    let zeros = zero_points(&q);
    let inputs: Vec<u8> = zeros.iter().map(|z| z.0).collect();
    assert_eq!(inputs, [128, 0, 0, 0], "{zeros:?}");
    // conv → conv, conv → linear, linear → linear hand over codes at the next zero point 0.
    for (i, z) in zeros[..3].iter().enumerate() {
        assert!(z.2.is_some(), "layer {i} is not chained: {zeros:?}");
        assert_eq!(z.1, zeros[i + 1].0, "{zeros:?}");
    }
    assert_eq!(zeros[3].1, 128);
    let got = outputs(&q, &data, 32);
    let range = want.iter().fold(0f32, |a, v| a.max(v.abs()));
    assert!(
        max_diff(&want, &got) < 0.05 * range,
        "{}",
        max_diff(&want, &got)
    );
    // The spec key, through `compress`.
    let cfg: CompressConfig =
        toml::from_str("quantize = \"int8\"\nzero-point-codes = true").unwrap();
    let held = blobs(100, 3, &[2, 6, 6], 6);
    let data = CompressData {
        held_out: &held,
        train: Some(&data),
        loss: &loss(),
    };
    let out = compress("cnn", net, &cfg, data).unwrap();
    let inputs: Vec<u8> = zero_points(&out.net).iter().map(|z| z.0).collect();
    assert_eq!(inputs, [128, 0, 0, 0]);
}
