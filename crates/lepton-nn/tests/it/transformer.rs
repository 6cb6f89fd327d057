//! The transformer family (`multi-head-attention`, `positional-embedding`, `transformer-block`,
//! `sequence-pool`, `linear` tied to an `embedding`): finite-difference gradient checks (f64),
//! a nanoGPT golden (logits, loss, gradients and three AdamW steps equal PyTorch's on shared
//! weights: `golden/gpt.json`, made by `golden/gpt.py`), the sequence losses, and bad input.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{ModuleT, Optimizer, VarBuilder, VarMap};
use lepton_nn::{loss, LossSpec, Model, ModelSpec};
use serde::Deserialize;

use crate::gradcheck::{check, check_tol};
use crate::sequence::check_params;

fn spec(layers: &str) -> ModelSpec {
    toml::from_str(&format!("layers = [{layers}]")).unwrap()
}

#[test]
fn multi_head_attention_gradients_causal_bidirectional_rope_no_bias() {
    for options in [
        "",
        ", causal = false",
        ", rope = true",
        ", rope = true, rope-theta = 50.0, causal = false",
        ", bias = false",
        ", dropout = 0.3",
    ] {
        check(
            &format!(r#"{{ type = "multi-head-attention", num-heads = 2{options} }}"#),
            &[5, 8],
            2,
            true,
        );
    }
    // One head of width 3 over a single position.
    check(
        r#"{ type = "multi-head-attention", num-heads = 1 }"#,
        &[1, 3],
        3,
        true,
    );
}

#[test]
fn positional_embedding_gradients() {
    for kind in ["learned", "sinusoidal"] {
        check(
            &format!(r#"{{ type = "positional-embedding", max-len = 7, kind = "{kind}" }}"#),
            &[5, 4],
            2,
            true,
        );
    }
}

#[test]
fn transformer_block_gradients() {
    for options in [
        "",
        r#", mlp = "gelu-tanh", bias = false"#,
        r#", norm = "rms-norm", mlp = "swiglu", mlp-hidden = 12, rope = true"#,
        r#", causal = false, dropout = 0.2"#,
    ] {
        // candle's erf ripples (see `gradcheck::activations_dropout_flatten_residual`).
        check_tol(
            &format!(r#"{{ type = "transformer-block", num-heads = 2{options} }}"#),
            &[4, 8],
            2,
            true,
            1e-4,
        );
    }
}

#[test]
fn sequence_pool_gradients() {
    for mode in ["last", "mean", "max"] {
        check(
            &format!(
                r#"{{ type = "multi-head-attention", num-heads = 1, causal = false }}, {{ type = "sequence-pool", mode = "{mode}" }}, {{ type = "linear", out-features = 3 }}"#
            ),
            &[4, 5],
            2,
            true,
        );
    }
}

/// A tiny GPT on token ids with the output layer tied to the embedding: every parameter's
/// gradient (the tied table's sums its two uses) against finite differences.
#[test]
fn tied_language_model_gradients() {
    let ids = Tensor::new(
        &[[3f64, 0.0, 6.0, 3.0, 1.0], [2.0, 3.0, 5.0, 4.0, 0.0]],
        &Device::Cpu,
    )
    .unwrap();
    check_params(
        r#"{ type = "embedding", num-embeddings = 7, embedding-dim = 8 },
           { type = "positional-embedding", max-len = 6 },
           { type = "transformer-block", num-heads = 2, mlp-hidden = 8 },
           { type = "layer-norm" },
           { type = "linear", out-features = 7, bias = false, tie = 0 }"#,
        &ids,
        1e-4,
    );
    // RoPE instead of a position table, RMS norm and SwiGLU (a LLaMA-shaped block).
    check_params(
        r#"{ type = "embedding", num-embeddings = 7, embedding-dim = 8 },
           { type = "transformer-block", num-heads = 2, mlp-hidden = 6, rope = true, norm = "rms-norm", mlp = "swiglu", bias = false },
           { type = "linear", out-features = 7, tie = 0 }"#,
        &ids,
        1e-4,
    );
}

#[test]
fn a_tied_weight_is_stored_once_and_trained_by_both_uses() {
    let s = spec(
        r#"{ type = "embedding", num-embeddings = 5, embedding-dim = 4 },
           { type = "linear", out-features = 5, bias = false, tie = 0 }"#,
    );
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Model::new(&s, &[3], vb).unwrap();
    let names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    assert_eq!(names, ["layers.0.weight"]);
    assert_eq!(s.parameter_count(&[3]).unwrap(), 20);
    // y[t] = E·E[id_t]: d/dE of Σ y ⊙ R has both the row-gather and the matmul terms.
    let e = varmap.data().lock().unwrap()["layers.0.weight"].clone();
    let ids = Tensor::new(&[[1f32, 4.0, 1.0]], &Device::Cpu).unwrap();
    let r = Tensor::randn(0f32, 1.0, (1, 3, 5), &Device::Cpu).unwrap();
    let y = model.forward_t(&ids, true).unwrap();
    let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let got = g.get(e.as_tensor()).unwrap();
    let rows = e
        .as_tensor()
        .index_select(&Tensor::new(&[1u32, 4, 1], &Device::Cpu).unwrap(), 0)
        .unwrap();
    let r2 = r.squeeze(0).unwrap();
    // From the linear use: Σ_t r[t]ᵀ ⊗ x[t] = r2ᵀ·rows; from the lookup: r[t]·E scattered to id_t.
    let from_linear = r2.t().unwrap().matmul(&rows).unwrap();
    let back = r2.matmul(e.as_tensor()).unwrap();
    let mut from_lookup = vec![vec![0f32; 4]; 5];
    for (t, id) in [1usize, 4, 1].iter().enumerate() {
        for (j, v) in back
            .get(t)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .enumerate()
        {
            from_lookup[*id][j] += v;
        }
    }
    let want = (from_linear + Tensor::new(from_lookup, &Device::Cpu).unwrap()).unwrap();
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
}

#[derive(Deserialize)]
struct Golden {
    vocab: usize,
    block: usize,
    width: usize,
    heads: usize,
    layers: usize,
    lr: f64,
    betas: (f64, f64),
    weight_decay: f64,
    steps: usize,
    ids: Vec<Vec<u32>>,
    targets: Vec<Vec<u32>>,
    logits: Vec<f64>,
    loss: f64,
    step_losses: Vec<f64>,
    shapes: HashMap<String, Vec<usize>>,
    grads: HashMap<String, Vec<f64>>,
    after: HashMap<String, Vec<f64>>,
}

/// The values `golden/gpt.py` gives parameter `name` (PyTorch's name): an LCG seeded by the name.
fn golden_values(name: &str, n: usize) -> Vec<f64> {
    let mut x = name.bytes().enumerate().fold(0u64, |s, (i, c)| {
        (s + (i as u64 + 1) * c as u64) % (1 << 32)
    });
    (0..n)
        .map(|_| {
            x = (1_664_525 * x + 1_013_904_223) % (1 << 32);
            let u = (x >> 8) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0;
            if name.contains(".ln_") && name.ends_with("weight") {
                1.0 + 0.1 * u
            } else if name.contains(".ln_") {
                0.1 * u
            } else {
                0.3 * u
            }
        })
        .collect()
}

/// Our name for a nanoGPT `state_dict` name.
fn our_name(torch: &str) -> String {
    if let Some(rest) = torch.strip_prefix("transformer.h.") {
        let (j, rest) = rest.split_once('.').unwrap();
        return format!("layers.{}.{rest}", 2 + j.parse::<usize>().unwrap());
    }
    match torch {
        "transformer.wte.weight" => "layers.0.weight".into(),
        "transformer.wpe.weight" => "layers.1.weight".into(),
        "transformer.ln_f.weight" => "layers.4.weight".into(),
        "transformer.ln_f.bias" => "layers.4.bias".into(),
        other => panic!("unexpected parameter {other}"),
    }
}

fn close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-3);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}[{i}]: ours {g} vs PyTorch {w} (tolerance {tol} × {scale})"
        );
    }
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn golden_gpt(dtype: DType, tol: f64, check_steps: bool) {
    let g: Golden = serde_json::from_str(include_str!("golden/gpt.json")).unwrap();
    let (v, t, d) = (g.vocab, g.block, g.width);
    let mut layers = format!(
        r#"{{ type = "embedding", num-embeddings = {v}, embedding-dim = {d} }}, {{ type = "positional-embedding", max-len = {t} }},"#
    );
    for _ in 0..g.layers {
        layers += &format!(
            r#"{{ type = "transformer-block", num-heads = {} }},"#,
            g.heads
        );
    }
    layers += &format!(
        r#"{{ type = "layer-norm" }}, {{ type = "linear", out-features = {v}, bias = false, tie = 0 }}"#
    );
    let s = spec(&layers);
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let model = Model::new(&s, &[t], VarBuilder::from_varmap(&varmap, dtype, &dev)).unwrap();
    let vars: HashMap<String, Var> = varmap.data().lock().unwrap().clone();
    assert_eq!(
        vars.len(),
        g.shapes.len(),
        "one variable per PyTorch parameter"
    );
    for (name, shape) in &g.shapes {
        let var = &vars[&our_name(name)];
        assert_eq!(var.dims(), shape.as_slice(), "{name}");
        let n = shape.iter().product();
        let val = Tensor::from_vec(golden_values(name, n), shape.as_slice(), &dev).unwrap();
        var.set(&val.to_dtype(dtype).unwrap()).unwrap();
    }
    let ids: Vec<f32> = g.ids.iter().flatten().map(|&i| i as f32).collect();
    let ids = Tensor::from_vec(ids, (g.ids.len(), t), &dev)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    let targets: Vec<u32> = g.targets.iter().flatten().copied().collect();
    let targets = Tensor::from_vec(targets, (g.targets.len(), t), &dev).unwrap();
    let ce = LossSpec::default();
    ce.validate(&s.output_shape(&[t]).unwrap(), v).unwrap();
    let logits = model.forward_t(&ids, true).unwrap();
    assert_eq!(logits.dims(), [g.ids.len(), t, v]);
    close("logits", &flat(&logits), &g.logits, tol);
    let l = loss(&ce, &logits, &targets, None).unwrap();
    close("loss", &flat(&l), &[g.loss], tol);
    let grads = l.backward().unwrap();
    for (name, want) in &g.grads {
        let got = grads.get(vars[&our_name(name)].as_tensor()).unwrap();
        close(&format!("d/d{name}"), &flat(got), want, tol * 10.0);
    }
    if !check_steps {
        return;
    }
    // nanoGPT's AdamW: weight decay on the 2-D tensors only.
    let params = |decay: bool| candle_nn::ParamsAdamW {
        lr: g.lr,
        beta1: g.betas.0,
        beta2: g.betas.1,
        eps: 1e-8,
        weight_decay: if decay { g.weight_decay } else { 0.0 },
    };
    let group = |decay: bool| -> Vec<Var> {
        vars.values()
            .filter(|v| (v.rank() >= 2) == decay)
            .cloned()
            .collect()
    };
    let mut decayed = candle_nn::AdamW::new(group(true), params(true)).unwrap();
    let mut plain = candle_nn::AdamW::new(group(false), params(false)).unwrap();
    for (step, want) in g.step_losses.iter().enumerate().take(g.steps) {
        let l = loss(&ce, &model.forward_t(&ids, true).unwrap(), &targets, None).unwrap();
        close(
            &format!("loss before step {step}"),
            &flat(&l),
            &[*want],
            tol,
        );
        let grads = l.backward().unwrap();
        decayed.step(&grads).unwrap();
        plain.step(&grads).unwrap();
    }
    // Adam divides by √v + 1e-8: gradients near 1e-9 (a few biases) amplify candle's erf
    // ripples (~1e-13) to ~1e-6 of the weights, well below one step (lr = 1e-2).
    for (name, want) in &g.after {
        close(
            &format!("{name} after {} steps", g.steps),
            &flat(vars[&our_name(name)].as_tensor()),
            want,
            tol * 100.0,
        );
    }
}

#[test]
fn nanogpt_golden_f64_logits_loss_gradients_and_adamw_steps() {
    golden_gpt(DType::F64, 1e-7, true);
}

/// f32 runs the fused kernels (linear + GELU, attention with its backward).
#[test]
fn nanogpt_golden_f32_through_the_fused_kernels() {
    golden_gpt(DType::F32, 2e-5, false);
}

#[test]
fn shorter_sequences_give_the_prefix_of_the_full_causal_output() {
    let s = spec(
        r#"{ type = "embedding", num-embeddings = 9, embedding-dim = 8 },
           { type = "positional-embedding", max-len = 6 },
           { type = "transformer-block", num-heads = 2 },
           { type = "linear", out-features = 9, tie = 0 }"#,
    );
    let varmap = VarMap::new();
    let model = Model::new(
        &s,
        &[6],
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    lepton_nn::init_seeded(&varmap, 1).unwrap();
    let ids = Tensor::new(&[[4f32, 1.0, 8.0, 0.0, 2.0, 2.0]], &Device::Cpu).unwrap();
    let full = model.forward_t(&ids, false).unwrap();
    for t in 1..=6 {
        let part = model
            .forward_t(&ids.narrow(1, 0, t).unwrap(), false)
            .unwrap();
        assert_eq!(part.dims(), [1, t, 9]);
        let want = full.narrow(1, 0, t).unwrap();
        let diff = (part - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "T = {t}");
    }
}

#[test]
fn bad_input_names_the_layer_and_the_field() {
    let lm = r#"{ type = "embedding", num-embeddings = 9, embedding-dim = 8 },
           { type = "positional-embedding", max-len = 6 },
           { type = "transformer-block", num-heads = 2 }"#;
    // A declared sequence longer than the positional table.
    let e = spec(lm).shapes(&[7]).unwrap_err();
    assert_eq!(
        e.spec_key().as_deref(),
        Some("model.layers[1].max-len"),
        "{e}"
    );
    assert!(
        e.to_string().contains("7 positions") && e.to_string().contains("max-len = 6"),
        "{e}"
    );
    // ... and one fed at run time.
    let varmap = VarMap::new();
    let model = Model::new(
        &spec(lm),
        &[6],
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let long = Tensor::zeros((1, 7), DType::F32, &Device::Cpu).unwrap();
    let e = model.forward_t(&long, false).unwrap_err().to_string();
    assert!(
        e.contains("model.layers[1] (positional-embedding)") && e.contains("max-len = 6"),
        "{e}"
    );
    // A token id out of range names the embedding layer and its field.
    let bad = Tensor::new(&[[1f32, 9.0]], &Device::Cpu).unwrap();
    let e = model.forward_t(&bad, false).unwrap_err().to_string();
    assert!(
        e.contains("model.layers[0] (embedding)")
            && e.contains("token id 9")
            && e.contains("num-embeddings = 9"),
        "{e}"
    );
    // Heads that do not divide the width.
    for layer in [
        r#"{ type = "multi-head-attention", num-heads = 3 }"#,
        r#"{ type = "transformer-block", num-heads = 3 }"#,
        r#"{ type = "multi-head-attention", num-heads = 0 }"#,
    ] {
        let e = spec(layer).shapes(&[4, 8]).unwrap_err();
        assert_eq!(
            e.spec_key().as_deref(),
            Some("model.layers[0].num-heads"),
            "{e}"
        );
        assert!(e.to_string().contains("divide the width D = 8"), "{e}");
    }
    for (layers, input, want) in [
        (
            r#"{ type = "multi-head-attention", num-heads = 2 }"#,
            vec![8],
            "[T, D]",
        ),
        (
            r#"{ type = "multi-head-attention", num-heads = 2, rope = true }"#,
            vec![3, 6],
            "even head size",
        ),
        (
            r#"{ type = "multi-head-attention", num-heads = 2, dropout = 1.0 }"#,
            vec![3, 8],
            "dropout = 1",
        ),
        (
            r#"{ type = "transformer-block", num-heads = 2, eps = 0.0 }"#,
            vec![3, 8],
            "eps = 0",
        ),
        (
            r#"{ type = "transformer-block", num-heads = 2, mlp-hidden = 0 }"#,
            vec![3, 8],
            "mlp-hidden",
        ),
        (
            r#"{ type = "positional-embedding", max-len = 0 }"#,
            vec![3, 8],
            "max-len",
        ),
        (
            r#"{ type = "sequence-pool", mode = "last" }"#,
            vec![8],
            "[T, D]",
        ),
        // Tying to a layer that is not an earlier embedding, or of the wrong size.
        (
            r#"{ type = "linear", out-features = 4, tie = 0 }"#,
            vec![3, 8],
            "tie = 0",
        ),
        (
            r#"{ type = "embedding", num-embeddings = 9, embedding-dim = 8 }, { type = "linear", out-features = 5, tie = 0 }"#,
            vec![3],
            "[9, 8]",
        ),
        (
            r#"{ type = "embedding", num-embeddings = 9, embedding-dim = 8 }, { type = "residual", layers = [{ type = "linear", out-features = 8, tie = 0 }] }"#,
            vec![3],
            "top-level",
        ),
    ] {
        let e = spec(layers).shapes(&input).unwrap_err().to_string();
        assert!(
            e.contains("model.layers[") && e.contains(want),
            "{layers}: {e}"
        );
    }
    // A huge sequence is refused by the activation budget before anything is allocated.
    let e = spec(r#"{ type = "multi-head-attention", num-heads = 64 }"#)
        .shapes(&[100_000, 64])
        .unwrap_err();
    assert_eq!(
        e.spec_key().as_deref(),
        Some("model.layers[0].num-heads"),
        "{e}"
    );
}

#[test]
fn sequence_losses_match_their_flattened_forms_and_finite_differences() {
    let dev = Device::Cpu;
    let logits = Var::randn(0f64, 1.0, (2, 3, 4), &dev).unwrap();
    let targets = Tensor::new(&[[0u32, 3, 1], [2, 2, 0]], &dev).unwrap();
    let w = Tensor::new(&[0.5f64, 2.0], &dev).unwrap();
    for smoothing in [0.0, 0.1] {
        let ce = LossSpec::CrossEntropy {
            label_smoothing: smoothing,
        };
        // Unweighted: the mean over all B·T positions, i.e. the [B·T, C] loss.
        let seq = loss(&ce, &logits, &targets, None)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let flat_loss = loss(
            &ce,
            &logits.reshape((6, 4)).unwrap(),
            &targets.flatten_all().unwrap(),
            None,
        )
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
        assert!((seq - flat_loss).abs() < 1e-12);
        // Weighted: each sample's weight covers its T positions.
        let wflat = Tensor::new(&[0.5f64, 0.5, 0.5, 2.0, 2.0, 2.0], &dev).unwrap();
        let weighted = loss(&ce, &logits, &targets, Some(&w))
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let want = loss(
            &ce,
            &logits.reshape((6, 4)).unwrap(),
            &targets.flatten_all().unwrap(),
            Some(&wflat),
        )
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
        assert!((weighted - want).abs() < 1e-12);
        fd_check(&logits, |z| loss(&ce, z, &targets, Some(&w)).unwrap());
    }
    // MSE on [B, K] forecasts.
    let z = Var::randn(0f64, 1.0, (3, 4), &dev).unwrap();
    let y = Tensor::randn(0f64, 1.0, (3, 4), &dev).unwrap();
    let got = loss(&LossSpec::Mse, &z, &y, None)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let want = (z.as_tensor() - &y)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((got - want).abs() < 1e-12);
    let w3 = Tensor::new(&[1.0f64, 0.0, 3.0], &dev).unwrap();
    fd_check(&z, |z| loss(&LossSpec::Mse, z, &y, Some(&w3)).unwrap());
    // Shapes: validate accepts [T, C] and [K]; targets must match.
    assert!(LossSpec::default().validate(&[8, 17], 17).is_ok());
    assert!(LossSpec::default().validate(&[8, 16], 17).is_err());
    assert!(LossSpec::Mse.validate(&[4], 0).is_ok());
    let e = loss(
        &LossSpec::default(),
        &logits,
        &targets.narrow(1, 0, 2).unwrap(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("[2, 3]"), "{e}");
    assert!(loss(&LossSpec::Mse, &z, &y.narrow(1, 0, 3).unwrap(), None).is_err());
}

/// Central differences of the scalar `f` against its autograd gradient at `x`.
fn fd_check(x: &Var, f: impl Fn(&Tensor) -> Tensor) {
    let g = f(x.as_tensor()).backward().unwrap();
    let analytic = flat(g.get(x.as_tensor()).unwrap());
    let base = flat(x.as_tensor());
    for i in 0..base.len() {
        let at = |h: f64| {
            let mut v = base.clone();
            v[i] += h;
            let t = Tensor::from_vec(v, x.dims(), &Device::Cpu).unwrap();
            f(&t).to_scalar::<f64>().unwrap()
        };
        let numeric = (at(1e-6) - at(-1e-6)) / 2e-6;
        assert!(
            (numeric - analytic[i]).abs() < 1e-7,
            "[{i}]: {numeric} vs {}",
            analytic[i]
        );
    }
}
