//! Training speed of the char-LSTM / char-GRU of issue 13 (acceptance 2): `embedding` (vocab 80
//! -> 256), `lstm` or `gru` (2 layers of 256), `linear` to the vocab, on random tokens, block 64,
//! batch 32; each step is forward, cross-entropy, backward, gradient clipping to norm 1 and an
//! AdamW step (lr 3e-3). Prints one JSON line per run: `{"impl", "kind", "tokens_per_s",
//! "cpu_tokens_per_s"}` over the steps after the warm-up, by wall-clock time and by the process's
//! CPU time (user + system, all threads: robust to other load on a shared machine). `bench/speed/rnn.sh` runs it against
//! `bench/speed/rnn_torch.py` (PyTorch, the same model) and prints the ratio.
//!
//!     cargo run --release -p lepton-nn --example rnn_speed -- lstm,gru [STEPS] [RUNS]

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, ModuleT, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use lepton_nn::{loss, LossSpec, Model, ModelSpec};
use rand::{Rng, SeedableRng};

const VOCAB: usize = 80;
const BLOCK: usize = 64;
const BATCH: usize = 32;
const WIDTH: usize = 256;
const WARMUP: usize = 3;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let kinds = args.get(1).map_or("lstm,gru", String::as_str);
    let steps: usize = args.get(2).map_or(Ok(20), |s| s.parse())?;
    let runs: usize = args.get(3).map_or(Ok(1), |s| s.parse())?;
    for kind in kinds.split(',') {
        for _ in 0..runs {
            let (wall, cpu) = run(kind, steps)?;
            println!(
                r#"{{"impl": "lepton", "kind": "{kind}", "tokens_per_s": {wall:.1}, "cpu_tokens_per_s": {cpu:.1}}}"#
            );
        }
    }
    Ok(())
}

/// The process's user + system CPU time in seconds (`/proc/self/stat`, in clock ticks of 1/100 s,
/// Linux's `USER_HZ` on x86-64).
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow::anyhow!("/proc/self/stat: no command field"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the command.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// Tokens per second over `steps` training steps after the warm-up: by wall-clock time and by
/// CPU time.
fn run(kind: &str, steps: usize) -> anyhow::Result<(f64, f64)> {
    let spec: ModelSpec = toml::from_str(&format!(
        r#"layers = [
            {{ type = "embedding", num-embeddings = {VOCAB}, embedding-dim = {WIDTH} }},
            {{ type = "{kind}", hidden-size = {WIDTH}, num-layers = 2 }},
            {{ type = "linear", out-features = {VOCAB} }},
        ]"#
    ))?;
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = Model::new(&spec, &[BLOCK], vb)?;
    lepton_nn::init_seeded(&varmap, 1)?;
    let params = ParamsAdamW {
        lr: 3e-3,
        ..Default::default()
    };
    let vars = varmap.all_vars();
    let mut opt = AdamW::new(vars.clone(), params)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut tokens = |n: usize| -> candle_core::Result<Tensor> {
        let ids: Vec<u32> = (0..n).map(|_| rng.random_range(0..VOCAB as u32)).collect();
        Tensor::from_vec(ids, n, &dev)
    };
    let ce = LossSpec::CrossEntropy {
        label_smoothing: 0.0,
    };
    let mut start = Instant::now();
    let mut cpu_start = 0.0;
    for step in 0..WARMUP + steps {
        if step == WARMUP {
            start = Instant::now();
            cpu_start = cpu_seconds()?;
        }
        let x = tokens(BATCH * BLOCK)?
            .reshape((BATCH, BLOCK))?
            .to_dtype(DType::F32)?;
        let y = tokens(BATCH * BLOCK)?;
        let logits = model.forward_t(&x, true)?.reshape((BATCH * BLOCK, VOCAB))?;
        let l = loss(&ce, &logits, &y, None)?;
        let mut grads = l.backward()?;
        // Clip the global gradient norm to 1 (PyTorch's clip_grad_norm_).
        let mut sq = 0f64;
        for v in &vars {
            if let Some(g) = grads.get(v) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let scale = 1.0 / (sq.sqrt() + 1e-6).max(1.0);
        if scale < 1.0 {
            for v in &vars {
                if let Some(g) = grads.remove(v) {
                    grads.insert(v, (g * scale)?);
                }
            }
        }
        opt.step(&grads)?;
        std::hint::black_box(l.to_scalar::<f32>()?);
    }
    let tokens = (steps * BATCH * BLOCK) as f64;
    let cpu = cpu_seconds()? - cpu_start;
    Ok((tokens / start.elapsed().as_secs_f64(), tokens / cpu))
}
