//! Small generated datasets and specs for the tests.

use std::path::Path;

/// Write a 3-class tabular CSV: 8 features from a fixed LCG, label = argmax of 3 fixed linear
/// functions (learnable, not trivially separable by one feature).
pub fn write_csv(path: &Path, rows: usize) {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    };
    let mut s = String::from("f0,f1,f2,f3,f4,f5,f6,f7,label\n");
    for _ in 0..rows {
        let x: Vec<f64> = (0..8).map(|_| next()).collect();
        let scores = [
            x[0] + 0.5 * x[1] - x[2] + 0.3 * x[5],
            -x[0] + x[3] + 0.7 * x[4] - 0.2 * x[6],
            x[2] - x[3] + x[6] * x[7],
        ];
        let label = (0..3)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap();
        for v in &x {
            s += &format!("{v:.5},");
        }
        s += &format!("c{label}\n");
    }
    std::fs::write(path, s).unwrap();
}

/// A spec for the CSV above: an MLP with batch norm and dropout (both must survive a resume),
/// SGD with Nesterov momentum, a cosine schedule with warm-up and gradient clipping.
pub fn tabular_spec(csv: &str, epochs: u64, checkpoint_every: u64) -> String {
    format!(
        r#"name = "tiny"
seed = 7

[data]
format = "csv"
path = "{csv}"
label = "label"
validation-split = 0.2

[model]
[[model.layers]]
type = "linear"
out-features = 32
[[model.layers]]
type = "batch-norm1d"
[[model.layers]]
type = "relu"
[[model.layers]]
type = "dropout"
p = 0.2
[[model.layers]]
type = "linear"
out-features = 3

[optimizer]
kind = "sgd"
lr = 0.1
momentum = 0.9
nesterov = true
weight-decay = 1e-4

[schedule]
kind = "cosine"
warmup-steps = 10

[train]
epochs = {epochs}
batch-size = 16
clip-grad-norm = 5.0
log-every = 1
checkpoint-every = {checkpoint_every}

[eval]
plots = false
"#
    )
}

/// Read every tensor of a safetensors file whose name starts with `prefix`, as raw f32 bits.
pub fn tensors_bits(path: &Path, prefix: &str) -> Vec<(String, Vec<u32>)> {
    let mut out: Vec<(String, Vec<u32>)> =
        candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, t)| {
                (
                    k,
                    t.flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap()
                        .iter()
                        .map(|v| v.to_bits())
                        .collect(),
                )
            })
            .collect();
    out.sort();
    out
}

/// The `loss` of every step line of a run's metrics.jsonl.
pub fn step_losses(run_dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "step")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}
