//! One time step of each recurrent cell, in PyTorch's gate order; the loop over time, the
//! settings and the parameters are in `recurrent.rs`, the layer configs in `lstm.rs`, `gru.rs`
//! and `rnn.rs`.

use candle_core::{Result, Tensor};

/// One step from the input projection `xi` and the hidden projection `hp` (both `[B, 4H]`, with
/// their biases) and the cell state `c: [B, H]`: the new `(h, c)`.
pub(crate) fn lstm(xi: &Tensor, hp: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
    let gates = (xi + hp)?;
    let g = gates.chunk(4, 1)?;
    let i = candle_nn::ops::sigmoid(&g[0])?;
    let f = candle_nn::ops::sigmoid(&g[1])?;
    let cand = g[2].tanh()?;
    let o = candle_nn::ops::sigmoid(&g[3])?;
    let c = ((f * c)? + (i * cand)?)?;
    let h = (o * c.tanh()?)?;
    Ok((h, c))
}

/// One step from the input projection `xi` and the hidden projection `hp` (both `[B, 3H]`, with
/// their biases) and the hidden state `h: [B, H]`: the new `h`.
pub(crate) fn gru(xi: &Tensor, hp: &Tensor, h: &Tensor) -> Result<Tensor> {
    let x = xi.chunk(3, 1)?;
    let p = hp.chunk(3, 1)?;
    let r = candle_nn::ops::sigmoid(&(&x[0] + &p[0])?)?;
    let z = candle_nn::ops::sigmoid(&(&x[1] + &p[1])?)?;
    let n = (&x[2] + (r * &p[2])?)?.tanh()?;
    // (1 - z) n + z h = n + z (h - n)
    let d = (h - &n)?;
    &n + (z * d)?
}

/// One step from the input projection `xi` and the hidden projection `hp` (both `[B, H]`, with
/// their biases): the new `h`.
pub(crate) fn rnn(xi: &Tensor, hp: &Tensor) -> Result<Tensor> {
    (xi + hp)?.tanh()
}
