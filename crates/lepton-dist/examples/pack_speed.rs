//! A/B of gradient packing on the 44 MiB model's gradients (784-4096-2048-10: the weight
//! gradients come out of backward transposed): the old path (`flatten_all().to_vec1()` then a
//! scaling pass) against [`lepton_dist::pack::pack_scaled`], alternating, medians of 9.
//!   cargo run --release -p lepton-dist --example pack_speed
use std::time::Instant;

use candle_core::{Device, Tensor};

fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    // [out, in] weight gradients as the transpose of an [in, out] matmul result, plus biases.
    let grads: Vec<Tensor> = [(10, 2048), (2048, 4096), (4096, 784)]
        .iter()
        .map(|&(o, i)| Tensor::randn(0f32, 1., (i, o), &dev)?.t())
        .chain([10, 2048, 4096].map(|n| Tensor::randn(0f32, 1., n, &dev)))
        .collect::<candle_core::Result<_>>()?;
    let n: usize = grads.iter().map(Tensor::elem_count).sum();
    let mut buf = vec![0f32; n];
    let old = |buf: &mut [f32]| -> anyhow::Result<()> {
        let mut off = 0;
        for g in &grads {
            let v = g.flatten_all()?.to_vec1::<f32>()?;
            for (d, s) in buf[off..off + v.len()].iter_mut().zip(&v) {
                *d = s * 0.5;
            }
            off += v.len();
        }
        Ok(())
    };
    let new = |buf: &mut [f32]| -> anyhow::Result<()> {
        let mut off = 0;
        for g in &grads {
            let k = g.elem_count();
            lepton_dist::pack::pack_scaled(g, 0.5, &mut buf[off..off + k])?;
            off += k;
        }
        Ok(())
    };
    let (mut a, mut b) = (vec![], vec![]);
    for _ in 0..9 {
        let t = Instant::now();
        old(&mut buf)?;
        a.push(t.elapsed().as_secs_f64() * 1e3);
        let check = buf.clone();
        let t = Instant::now();
        new(&mut buf)?;
        b.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(check, buf, "the same bucket");
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (med(&mut a), med(&mut b));
    println!(
        "packing {:.1} MiB ({} rayon threads): old {a:.1} ms, new {b:.1} ms ({:.1}x)",
        n as f64 * 4.0 / (1 << 20) as f64,
        rayon::current_num_threads(),
        a / b
    );
    Ok(())
}
