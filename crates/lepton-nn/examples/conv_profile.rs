//! Times conv2d forward and backward, ours (im2col + matmul) against candle's, on LeNet-sized
//! shapes: `cargo run --release -p lepton-nn --example conv_profile`.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use lepton_nn::kernels::{conv2d, Conv2dParams};

fn time<F: FnMut()>(mut f: F) -> f64 {
    f();
    let n = 5;
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() / n as f64 * 1e3
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    for (n, c, hw, co, pad) in [
        (64, 1, 28, 32, 0),
        (64, 32, 13, 64, 0),
        (128, 32, 28, 32, 1),
        (128, 32, 14, 64, 1),
    ] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, hw, hw), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (co, c, 3, 3), &dev)?)?;
        let p = Conv2dParams {
            padding: pad,
            ..Default::default()
        };
        let ours_f = time(|| {
            conv2d(x.as_tensor(), w.as_tensor(), None, p).unwrap();
        });
        let cand_f = time(|| {
            x.as_tensor().conv2d(w.as_tensor(), pad, 1, 1, 1).unwrap();
        });
        let ours_b = time(|| {
            conv2d(x.as_tensor(), w.as_tensor(), None, p)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
        });
        let cand_b = time(|| {
            x.as_tensor()
                .conv2d(w.as_tensor(), pad, 1, 1, 1)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
        });
        let out = (hw + 2 * pad - 2) as f64;
        let gflop = 2.0 * n as f64 * co as f64 * c as f64 * 9.0 * out * out / 1e9;
        println!("[{n},{c},{hw},{hw}]->{co} pad {pad}: fwd ours {ours_f:.1} ms ({:.1} GFLOP/s) candle {cand_f:.1} ms | fwd+bwd ours {ours_b:.1} ms candle {cand_b:.1} ms", gflop / ours_f * 1e3);
    }
    Ok(())
}
