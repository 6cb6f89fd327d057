//! Quantized matmul throughput on SmolLM2-135M's and Gemma 3 270M's shapes, for 1 and 8 activation
//! rows (decode alone and batched) and 64 rows (prefill): `cargo run --release -p lepton-llm
//! --example qmatmul_speed`. Prints multiply-accumulates per second per shape; for the GGML-block
//! types (Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) also candle's `QMatMul` on the same weights and the ratio.

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use lepton_llm::quant::{BlockType, QMatrix, QType};

fn matrix(qtype: QType, rows: usize, cols: usize, seed: u64) -> QMatrix {
    let (block, scales) = match qtype {
        QType::Q4_1 => (20, 4),
        _ => (34, 2),
    };
    let mut s = seed;
    let mut data = vec![0u8; rows * cols / 32 * block];
    for (i, b) in data.iter_mut().enumerate() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Small f16 scales (0x1400 ≈ 0.001) in the scale bytes, random codes elsewhere.
        *b = if i % block < scales {
            [0x00, 0x14][i % 2]
        } else {
            (s >> 56) as u8
        };
    }
    QMatrix::new(qtype, rows, cols, data).expect("matrix")
}

fn main() {
    let shapes = [
        ("qkv 832x576 q4_1", QType::Q4_1, 832, 576),
        ("gate_up 3072x576 q4_1", QType::Q4_1, 3072, 576),
        ("down 576x1536 q4_1", QType::Q4_1, 576, 1536),
        ("output 49152x576 q8_0", QType::Q8_0, 49152, 576),
        ("gemma output 262144x640 q8_0", QType::Q8_0, 262144, 640),
    ];
    // Optional filters: a shape name's prefix and a row count.
    let args: Vec<String> = std::env::args().collect();
    let only = args.get(1).cloned().unwrap_or_default();
    let rows: Vec<usize> = match args.get(2) {
        Some(m) => vec![m.parse().expect("row count")],
        None => vec![1, 8, 64],
    };
    let mut scratch = Vec::new();
    let blocks = [
        (
            "gemma q 1024x640 q5_0",
            BlockType::Q5_0,
            GgmlDType::Q5_0,
            1024,
            640,
        ),
        (
            "gemma gate 2048x640 q5_0",
            BlockType::Q5_0,
            GgmlDType::Q5_0,
            2048,
            640,
        ),
        (
            "gemma o 640x1024 q4_k",
            BlockType::Q4K,
            GgmlDType::Q4K,
            640,
            1024,
        ),
        (
            "gemma down 640x2048 q6_k",
            BlockType::Q6K,
            GgmlDType::Q6K,
            640,
            2048,
        ),
        (
            "down 640x2048 q5_k",
            BlockType::Q5K,
            GgmlDType::Q5K,
            640,
            2048,
        ),
        (
            "gate 2048x640 q5_1",
            BlockType::Q5_1,
            GgmlDType::Q5_1,
            2048,
            640,
        ),
    ];
    for (name, t, dt, n, k) in blocks {
        if !name.starts_with(&only) {
            continue;
        }
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 2003) as f32 - 1001.0) / 1001.0)
            .collect();
        let q = QTensor::quantize(&Tensor::from_slice(&w, (n, k), &Device::Cpu).unwrap(), dt)
            .expect("quantize");
        let ours =
            QMatrix::new(QType::Blocks(t), n, k, q.data().unwrap().into_owned()).expect("matrix");
        let theirs = QMatMul::from_qtensor(q).expect("qmatmul");
        for &m in &rows {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let xt = Tensor::from_slice(&x, (m, k), &Device::Cpu).unwrap();
            let mut out = vec![0f32; m * n];
            let reps = (5_000_000_000 / (m * n * k)).clamp(3, 5000);
            let time = |f: &mut dyn FnMut()| {
                f();
                let t = Instant::now();
                for _ in 0..reps {
                    f();
                }
                t.elapsed().as_secs_f64() / reps as f64
            };
            let a = time(&mut || ours.matmul(&x, &mut out, &mut scratch));
            let b = time(&mut || {
                theirs.forward(&xt).unwrap();
            });
            let gmac = |s: f64| (m * n * k) as f64 / s / 1e9;
            println!(
                "{name:26} m={m:3}: {:8.1} us, {:6.1} GMAC/s; candle {:8.1} us; ratio {:.2}x",
                a * 1e6,
                gmac(a),
                b * 1e6,
                b / a
            );
        }
    }
    for (name, qtype, n, k) in shapes {
        if !name.starts_with(&only) {
            continue;
        }
        let w = matrix(qtype, n, k, 7);
        for &m in &rows {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let mut out = vec![0f32; m * n];
            let reps = (20_000_000_000 / (m * n * k)).clamp(3, 20000);
            w.matmul(&x, &mut out, &mut scratch);
            // At most `reps` calls or one second (the 170 MB output projection).
            let t = Instant::now();
            let mut done = 0;
            while done < reps && (done < 3 || t.elapsed().as_secs_f64() < 1.0) {
                w.matmul(&x, &mut out, &mut scratch);
                done += 1;
            }
            let secs = t.elapsed().as_secs_f64() / done as f64;
            println!(
                "{name:24} m={m:3}: {:8.1} us, {:6.1} GMAC/s, weights read at {:5.1} GB/s",
                secs * 1e6,
                (m * n * k) as f64 / secs / 1e9,
                w.bytes() as f64 / secs / 1e9
            );
        }
        if name.contains("output") {
            read_bandwidth(w.bytes());
        }
    }
}

/// The memory-read ceiling for a weight matrix of `bytes`: the pool's thread count of threads each
/// summing a disjoint part of a buffer of that size as u64s (best of 5 passes, after one warm-up).
fn read_bandwidth(bytes: usize) {
    let threads = lepton_quant::pool::Pool::global().threads();
    let buf: Vec<u64> = (0..bytes / 8).map(|i| i as u64).collect();
    let per = buf.len().div_ceil(threads);
    let mut best = f64::MAX;
    for _ in 0..6 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for part in buf.chunks(per) {
                s.spawn(move || {
                    let sum = part.iter().fold(0u64, |a, &v| a.wrapping_add(v));
                    std::hint::black_box(sum);
                });
            }
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "plain read of {:.0} MB on {threads} threads: {:8.1} us, {:5.1} GB/s (the ceiling)",
        bytes as f64 / 1e6,
        best * 1e6,
        bytes as f64 / best / 1e9
    );
}
