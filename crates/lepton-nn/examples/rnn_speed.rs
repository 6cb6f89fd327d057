//! Training-step speed of the plain-candle `lstm` / `gru` (no fused kernel yet): forward and
//! backward of 2 layers of 256 over `[32, 64, 256]` (the char-LSTM of issue 13), median of 5 runs
//! after one warm-up. Compare with `bench/speed/rnn_torch.py`.
//!
//!     cargo run --release -p lepton-nn --example rnn_speed

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use lepton_nn::{Model, ModelSpec};

fn main() -> anyhow::Result<()> {
    let (b, t, f, h) = (32, 64, 256, 256);
    for kind in ["lstm", "gru"] {
        let spec: ModelSpec = toml::from_str(&format!(
            r#"layers = [{{ type = "{kind}", hidden-size = {h}, num-layers = 2 }}]"#
        ))?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Model::new(&spec, &[t, f], vb)?;
        lepton_nn::init_seeded(&varmap, 1)?;
        let x = Tensor::randn(0f32, 1.0, (b, t, f), &Device::Cpu)?;
        let mut times = Vec::new();
        for i in 0..6 {
            let start = Instant::now();
            let y = model.forward_t(&x, true)?;
            let grads = y.sqr()?.mean_all()?.backward()?;
            std::hint::black_box(grads);
            if i > 0 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{kind}: forward+backward {:.1} ms, {:.0} tokens/s",
            median * 1e3,
            (b * t) as f64 / median
        );
    }
    Ok(())
}
