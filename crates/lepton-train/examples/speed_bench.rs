//! Lepton's side of `bench/speed/run.sh` (issue 3): the LeNet workload of `bench/speed/lenet.toml`
//! (training with the trainer's Adam, inference at batch 64 and 1), an f32 matmul 1024³ and a
//! 12-layer GPT-2-small-shaped forward (d = 768, 12 heads, 128 tokens, candle ops). Prints one JSON
//! object per line: `{"workload": ..., "unit": ..., "samples": [...], "cpu_samples": [...]}`, one
//! sample per round, from wall time and from the process's CPU time;
//! `bench/speed/torch_bench.py` prints the same for PyTorch and `bench/speed/report.py` compares.
//!
//! `cargo run --release -p lepton-train --example speed_bench -- [ROUNDS] [WORKLOADS,...]`

use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_nn::kernels::{self, Activation, AttentionMask, PackedLinear};
use lepton_train::{optim::trainable_params, Spec};

fn emit(workload: &str, unit: &str, samples: &[(f64, f64)]) {
    let f = |v: Vec<f64>| {
        v.iter()
            .map(|v| format!("{v:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{{\"workload\": \"{workload}\", \"unit\": \"{unit}\", \"samples\": [{}], \"cpu_samples\": [{}]}}",
        f(samples.iter().map(|s| s.0).collect()),
        f(samples.iter().map(|s| s.1).collect())
    );
}

/// CPU time of this process (user + system) in seconds, from `/proc/self/stat` (USER_HZ = 100).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// (wall, CPU) seconds per call of `f`, averaged over as many calls as fit in about `budget`
/// wall seconds. With one thread the CPU time is what the work costs without the waits for a
/// shared machine's other processes.
fn per_call(budget: f64, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    let (t, c) = (Instant::now(), cpu_seconds());
    let mut n = 0u32;
    while n < 3 || t.elapsed().as_secs_f64() < budget {
        f()?;
        n += 1;
    }
    Ok((
        t.elapsed().as_secs_f64() / n as f64,
        (cpu_seconds() - c) / n as f64,
    ))
}

/// Applies `g` to both the wall and the CPU time.
fn both(s: &[(f64, f64)], g: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    s.iter().map(|&(w, c)| (g(w), g(c))).collect()
}

fn lenet(rounds: usize, which: &[String]) -> anyhow::Result<()> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/speed/lenet.toml");
    let spec = Spec::from_file(&path)?;
    let input = spec
        .known_input_shape()
        .expect("lenet.toml declares its input");
    let varmap = VarMap::new();
    let model = lepton_nn::Model::new(
        &spec.model,
        &input,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    lepton_nn::init_seeded(&varmap, 0)?;
    let loss_spec = spec.loss.clone().unwrap_or_default();
    let batch = spec.train.batch_size;
    let data = |b: usize| -> anyhow::Result<(Tensor, Tensor)> {
        let x = Tensor::randn(0f32, 1., (b, 1, 28, 28), &Device::Cpu)?;
        let y = Tensor::from_vec(
            (0..b as u32).map(|i| i % 10).collect::<Vec<_>>(),
            b,
            &Device::Cpu,
        )?;
        Ok((x, y))
    };
    let (x, y) = data(batch)?;
    if which.iter().any(|w| w == "train") {
        let mut opt = spec.optimizer.build(trainable_params(&varmap));
        // As the trainer: the step runs on a rayon worker (see `Session::fit`).
        let mut step = || -> anyhow::Result<()> {
            rayon::scope(|_| -> anyhow::Result<()> {
                let logits = model.forward_t(&x, true)?;
                let loss = lepton_nn::loss(&loss_spec, &logits, &y, None)?;
                let grads = loss.backward()?;
                opt.step(&grads, 1e-3, 1.0)?;
                Ok(())
            })?;
            Ok(())
        };
        for _ in 0..5 {
            step()?;
        }
        let mut s = Vec::new();
        for _ in 0..rounds {
            s.push(per_call(1.5, &mut step)?);
        }
        emit(
            "lenet-train-b64",
            "images/s",
            &both(&s, |t| batch as f64 / t),
        );
    }
    if which.iter().any(|w| w == "infer") {
        for b in [64usize, 1] {
            let (x, _) = data(b)?;
            let mut f = || -> anyhow::Result<()> {
                model.forward_t(&x, false)?;
                Ok(())
            };
            for _ in 0..5 {
                f()?;
            }
            let mut s = Vec::new();
            for _ in 0..rounds {
                s.push(per_call(1.0, &mut f)?);
            }
            if b == 1 {
                emit("lenet-infer-b1-latency", "ms", &both(&s, |t| t * 1e3));
            } else {
                emit("lenet-infer-b64", "images/s", &both(&s, |t| b as f64 / t));
            }
        }
    }
    Ok(())
}

fn matmul(rounds: usize) -> anyhow::Result<()> {
    let n = 1024;
    let a = Tensor::randn(0f32, 1., (n, n), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1., (n, n), &Device::Cpu)?;
    let mut s = Vec::new();
    a.matmul(&b)?;
    for _ in 0..rounds {
        s.push(per_call(1.0, || {
            a.matmul(&b)?;
            Ok(())
        })?);
    }
    emit(
        "matmul-1024",
        "GFLOP/s",
        &both(&s, |t| 2.0 * (n * n * n) as f64 / t / 1e9),
    );
    Ok(())
}

/// One GPT-2 block's weights (random, std 0.02, stored `[in, out]` as GPT-2's `Conv1D`), the
/// linear layers packed once at construction for the microkernels, as a served model would be.
struct Block {
    ln1: (Tensor, Tensor),
    qkv: PackedLinear,
    proj: PackedLinear,
    ln2: (Tensor, Tensor),
    fc: PackedLinear,
    fc_proj: PackedLinear,
}

fn linear(i: usize, o: usize) -> anyhow::Result<PackedLinear> {
    Ok(PackedLinear::new(
        &Tensor::randn(0f32, 0.02, (i, o), &Device::Cpu)?.t()?,
        Some(&Tensor::zeros(o, DType::F32, &Device::Cpu)?),
    )?)
}

fn norm(d: usize) -> anyhow::Result<(Tensor, Tensor)> {
    Ok((
        Tensor::ones(d, DType::F32, &Device::Cpu)?,
        Tensor::zeros(d, DType::F32, &Device::Cpu)?,
    ))
}

fn apply(x: &Tensor, layer: &PackedLinear, act: Activation) -> candle_core::Result<Tensor> {
    layer.forward(x, act)
}

impl Block {
    fn new(d: usize) -> anyhow::Result<Block> {
        Ok(Block {
            ln1: norm(d)?,
            qkv: linear(d, 3 * d)?,
            proj: linear(d, d)?,
            ln2: norm(d)?,
            fc: linear(d, 4 * d)?,
            fc_proj: linear(4 * d, d)?,
        })
    }

    /// Pre-norm block with causal self-attention, as GPT-2: `x: [T, d]`. Lepton's fused
    /// kernels: linear + bias (+ GELU) in one op, attention read straight from the QKV output.
    fn forward(
        &self,
        x: &Tensor,
        heads: usize,
        mask: &AttentionMask,
    ) -> candle_core::Result<Tensor> {
        let (t, d) = x.dims2()?;
        let hd = d / heads;
        let h = candle_nn::ops::layer_norm(x, &self.ln1.0, &self.ln1.1, 1e-5)?;
        let qkv = apply(&h, &self.qkv, Activation::Identity)?.reshape((1, t, 3, heads, hd))?;
        let part = |i| qkv.narrow(2, i, 1)?.squeeze(2);
        let y = kernels::attention(
            &part(0)?,
            &part(1)?,
            &part(2)?,
            1.0 / (hd as f32).sqrt(),
            mask,
        )?
        .reshape((t, d))?;
        let x = (x + apply(&y, &self.proj, Activation::Identity)?)?;
        let h = candle_nn::ops::layer_norm(&x, &self.ln2.0, &self.ln2.1, 1e-5)?;
        let h = apply(
            &apply(&h, &self.fc, Activation::GeluTanh)?,
            &self.fc_proj,
            Activation::Identity,
        )?;
        x + h
    }
}

fn gpt2(rounds: usize) -> anyhow::Result<()> {
    let (layers, d, heads, t) = (12, 768, 12, 128);
    let blocks: Vec<Block> = (0..layers)
        .map(|_| Block::new(d))
        .collect::<anyhow::Result<_>>()?;
    let mask = AttentionMask {
        causal: true,
        keys: None,
    };
    let x = Tensor::randn(0f32, 1., (t, d), &Device::Cpu)?;
    let mut f = || -> anyhow::Result<()> {
        let mut h = x.clone();
        for b in &blocks {
            h = b.forward(&h, heads, &mask)?;
        }
        h.sum(D::Minus1)?;
        Ok(())
    };
    f()?;
    let mut s = Vec::new();
    for _ in 0..rounds {
        s.push(per_call(1.5, &mut f)?);
    }
    emit("gpt2-12x768-t128-forward", "ms", &both(&s, |t| t * 1e3));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).map_or(Ok(5), |s| s.parse())?;
    let which: Vec<String> = args
        .get(2)
        .map_or("train,infer,matmul,gpt2", String::as_str)
        .split(',')
        .map(str::to_string)
        .collect();
    lenet(rounds, &which)?;
    if which.iter().any(|w| w == "matmul") {
        matmul(rounds)?;
    }
    if which.iter().any(|w| w == "gpt2") {
        gpt2(rounds)?;
    }
    Ok(())
}
