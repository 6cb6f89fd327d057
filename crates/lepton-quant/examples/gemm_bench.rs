//! G MAC/s of `QMatrix::matmul` at the LoRA training step's shapes (SmolLM2-135M, m = 512 token
//! rows, the LM head in chunks of 64): the training-shape GEMM (`kernels::gemm`, m ≥ 16) against the row-group tiles it
//! replaced (`QMatrix::matmul_tiles`), alternating, medians of `REPS` runs each.
//!
//!   cargo run --release -p lepton-quant --example gemm_bench [REPS]
//!
//! Run it under the shared CPU lock (`bench/lora/gemm_bench.sh` does).

use std::time::Instant;

use lepton_quant::{QMatrix, QType};

fn lcg(seed: &mut u64) -> u32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 33) as u32
}

/// GGML bytes of random blocks: f16 scales near 0.01, random codes.
fn random_matrix(qtype: QType, n: usize, k: usize, seed: u64) -> QMatrix {
    let mut s = seed;
    let blocks = n * k / 32;
    let mut data = Vec::with_capacity(blocks * qtype.block_bytes());
    for _ in 0..blocks {
        let d = half::f16::from_f32(0.005 + (lcg(&mut s) % 100) as f32 * 1e-4);
        data.extend_from_slice(&d.to_le_bytes());
        let codes = match qtype {
            QType::Q4_1 => {
                data.extend_from_slice(&half::f16::from_f32(-0.05).to_le_bytes());
                16
            }
            _ => 32,
        };
        data.extend((0..codes).map(|_| lcg(&mut s) as u8));
    }
    QMatrix::new(qtype, n, k, data).expect("random matrix")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .map_or(7, |s| s.parse().expect("REPS"));
    // (name, type, n, k, m): forward on the GGUF's Q4_1 (or a Q8_0 base), input gradients on the
    // transposed Q8_0 copies; q/k/v and gate/up stacked as the step runs them.
    let shapes = [
        ("qkv fwd", QType::Q4_1, 960, 576, 512),
        ("o fwd", QType::Q4_1, 576, 576, 512),
        ("gate/up fwd", QType::Q4_1, 3072, 576, 512),
        ("down fwd", QType::Q4_1, 576, 1536, 512),
        ("qkv fwd q8", QType::Q8_0, 960, 576, 512),
        ("gate/up fwd q8", QType::Q8_0, 3072, 576, 512),
        ("down fwd q8", QType::Q8_0, 576, 1536, 512),
        ("qkv bwd", QType::Q8_0, 576, 960, 512),
        ("o bwd", QType::Q8_0, 576, 576, 512),
        ("gate/up bwd", QType::Q8_0, 576, 3072, 512),
        ("down bwd", QType::Q8_0, 1536, 576, 512),
        // The LM head (tied embedding, Q8_0) on one 64-position chunk, logits and input gradient.
        ("head fwd", QType::Q8_0, 49152, 576, 64),
        ("head bwd", QType::Q8_0, 576, 49152, 64),
    ];
    let (mut total_old, mut total_new, mut macs) = (0.0, 0.0, 0.0);
    println!("shape             type   n     k      m    old GMAC/s  new GMAC/s  speed-up");
    for (i, (name, qt, n, k, m)) in shapes.into_iter().enumerate() {
        let w = random_matrix(qt, n, k, 1 + i as u64);
        let mut s = 99 + i as u64;
        let x: Vec<f32> = (0..m * k)
            .map(|_| (lcg(&mut s) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let (mut y_old, mut y_new) = (vec![0f32; m * n], vec![0f32; m * n]);
        let mut scratch = Vec::new();
        // Warm-up, and the two paths agree bit for bit.
        w.matmul_tiles(&x, &mut y_old, &mut scratch);
        w.matmul(&x, &mut y_new, &mut scratch);
        assert!(
            y_old
                .iter()
                .zip(&y_new)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: the GEMM differs from the tiles"
        );
        let (mut t_old, mut t_new) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = Instant::now();
            w.matmul_tiles(&x, &mut y_old, &mut scratch);
            t_old.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            w.matmul(&x, &mut y_new, &mut scratch);
            t_new.push(t.elapsed().as_secs_f64());
        }
        let (to, tn) = (median(t_old), median(t_new));
        let mac = (m * n * k) as f64;
        total_old += to;
        total_new += tn;
        macs += mac;
        println!(
            "{name:<17} {:<6} {n:<5} {k:<6} {m:<4} {:>10.1}  {:>10.1}  {:>7.2}x",
            qt.name(),
            mac / to / 1e9,
            mac / tn / 1e9,
            to / tn
        );
    }
    println!(
        "all shapes (one layer's frozen matmuls and one head chunk, both directions): old {:.1} G MAC/s, new {:.1} G MAC/s, {:.2}x",
        macs / total_old / 1e9,
        macs / total_new / 1e9,
        total_old / total_new
    );
}
