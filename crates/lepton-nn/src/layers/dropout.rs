//! Inverted dropout with seeded masks: the mask of layer `i` at optimizer step `s` comes from
//! ChaCha seeded with `(model seed, s, i)`, so runs are reproducible and resumable (candle's own
//! dropout draws from an unseeded generator).

use candle_core::{Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn dropout(x: &Tensor, p: f64, seed: u64, step: u64, layer: u64) -> Result<Tensor> {
    if p == 0.0 {
        return Ok(x.clone());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(layer + 1);
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f64>() < p {
                0.0
            } else {
                keep as f32
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x.mul(&mask)
}
