//! Dot products of one GGML-block weight row (Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, see
//! [`crate::blocks`]) with one quantized activation row.
//!
//! # Order of operations (the definition the SIMD kernels follow bit for bit)
//! Every value `t` of a block belongs to lane `(t mod 32) / 4` of eight. Per block, the exact
//! integer `S_l = Σ_{t in lane l} sc_t · q_t · x_t` is formed for each lane (`sc_t` the value's
//! sub-block scale for the K-quants, 1 for Q5_0/Q5_1; `q_t` the signed weight code — `q − 16` for
//! Q5_0, `q − 32` for Q6_K, the unsigned code otherwise; `x_t` the activation code). Then eight f32
//! accumulators take `acc_l = fma(d_w · d_x, S_l, acc_l)` in block order, and one scalar takes
//! the offset term: Q5_1 `summ = fma(m_w, s_x, summ)` (added), Q4_K/Q5_K
//! `summ = fma(dmin_w · d_x, Σ_s m_s · Σ_{t in s} x_t, summ)` (subtracted). The result is
//! `hsum(acc) ± summ` with ggml's `hsum_float_8` order.
//!
//! The lanes are those of AVX2's `maddubs` + `madd` (and of VNNI's `vpdpbusd`): byte `4l..4l + 4`
//! of a 32-byte vector lands in i32 lane `l`. Every `S_l` is below 2^24 in magnitude (at most 32
//! products of ≤ 2^5 · 2^7 · 2^7 for Q6_K, less for the others), so its conversion to f32 is exact.

use crate::blocks::{
    bsum, q5_code, q6k_code_scale, qk_code, scale_min_k4, BlockType, Q8K_BYTES, Q8_32_BYTES, QK_K,
};
use crate::layout::{f16_at, f32_at};

use super::{hsum8, Level};

/// `w` (one weight row of GGML blocks of type `t`) · `a` (the activation row quantized by
/// [`BlockType::quantize_act`]).
pub fn dot(t: BlockType, level: Level, w: &[u8], a: &[u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if level != Level::Scalar {
        // SAFETY: `Level::detect` found AVX2, FMA and F16C.
        return unsafe { super::blocks_x86::dot(t, w, a) };
    }
    let _ = level;
    scalar(t, w, a)
}

/// The definition in the module docs, in plain Rust.
pub fn scalar(t: BlockType, w: &[u8], a: &[u8]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summ = 0f32;
    match t {
        BlockType::Q5_0 | BlockType::Q5_1 => {
            for (b, ab) in w
                .chunks_exact(t.block_bytes())
                .zip(a.chunks_exact(Q8_32_BYTES))
            {
                let dx = f32_at(ab, 32);
                let mut s = [0i32; 8];
                let (dd, codes) = if t == BlockType::Q5_0 {
                    (f16_at(b, 0) * dx, &b[2..])
                } else {
                    summ = f16_at(b, 2).mul_add(f32_at(ab, 36), summ);
                    (f16_at(b, 0) * dx, &b[4..])
                };
                for v in 0..32 {
                    let mut q = q5_code(codes, v) as i32;
                    if t == BlockType::Q5_0 {
                        q -= 16;
                    }
                    s[v / 4] += q * ab[v] as i8 as i32;
                }
                for l in 0..8 {
                    acc[l] = dd.mul_add(s[l] as f32, acc[l]);
                }
            }
            hsum8(acc) + summ
        }
        BlockType::Q4K | BlockType::Q5K | BlockType::Q6K => {
            for (b, ab) in w
                .chunks_exact(t.block_bytes())
                .zip(a.chunks_exact(Q8K_BYTES))
            {
                let dx = f32_at(ab, 0);
                let x = |v: usize| ab[4 + v] as i8 as i32;
                let mut s = [0i32; 8];
                let d = if t == BlockType::Q6K {
                    for v in 0..QK_K {
                        let (q, sc) = q6k_code_scale(b, v);
                        s[v % 32 / 4] += sc as i32 * (q as i32 - 32) * x(v);
                    }
                    f16_at(b, 208)
                } else {
                    let mut msum = 0i32;
                    for sub in 0..8 {
                        let (sc, m) = scale_min_k4(sub, &b[4..16]);
                        for v in 32 * sub..32 * sub + 32 {
                            let q = qk_code(b, v, t == BlockType::Q5K) as i32;
                            s[v % 32 / 4] += sc as i32 * q * x(v);
                        }
                        msum += m as i32 * (bsum(ab, 2 * sub) + bsum(ab, 2 * sub + 1));
                    }
                    summ = (f16_at(b, 2) * dx).mul_add(msum as f32, summ);
                    f16_at(b, 0)
                };
                let dd = d * dx;
                for l in 0..8 {
                    acc[l] = dd.mul_add(s[l] as f32, acc[l]);
                }
            }
            hsum8(acc) - summ
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{QMatrix, QType};
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    const TYPES: [(BlockType, GgmlDType); 5] = [
        (BlockType::Q5_0, GgmlDType::Q5_0),
        (BlockType::Q5_1, GgmlDType::Q5_1),
        (BlockType::Q4K, GgmlDType::Q4K),
        (BlockType::Q5K, GgmlDType::Q5K),
        (BlockType::Q6K, GgmlDType::Q6K),
    ];

    fn quantize(t: BlockType, dt: GgmlDType, n: usize, k: usize, w: &[f32]) -> (QMatrix, QTensor) {
        let wt = Tensor::from_slice(w, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&wt, dt).unwrap();
        let m = QMatrix::new(QType::Blocks(t), n, k, q.data().unwrap().into_owned()).unwrap();
        (m, q)
    }

    /// Our dequantization equals candle's bit for bit, and our matmul (every kernel level and
    /// row-group size) equals the plain-Rust definition bit for bit and candle's `QMatMul` (which
    /// quantizes activations the same way) to rounding; rows (n) and blocks per row are not
    /// multiples of any vector width, and batched rows equal rows alone.
    #[test]
    fn block_types_match_candle_and_their_definition() {
        for (t, dt) in TYPES {
            let bv = t.block_values();
            for blocks in [1, 2, 3] {
                // candle's Q5_0/Q5_1 matmul takes even block counts only.
                let with_candle = bv == QK_K || blocks % 2 == 0;
                let (n, k, m) = (13, bv * blocks, 6);
                let seed = blocks as u64 * 10 + t.block_bytes() as u64;
                let w = lcg(n * k, seed);
                let x = lcg(m * k, seed + 1);
                let (ours, q) = quantize(t, dt, n, k, &w);
                assert_eq!(ours.bytes(), n * k / bv * t.block_bytes(), "kept as stored");
                let deq: Vec<f32> = q
                    .dequantize(&Device::Cpu)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let mut row = vec![0f32; k];
                for j in 0..n {
                    ours.dequantize_row(j, &mut row);
                    assert_eq!(row, deq[j * k..(j + 1) * k], "{t:?} row {j}");
                }
                let mut out = vec![0f32; m * n];
                ours.matmul(&x, &mut out, &mut Vec::new());
                let xt = Tensor::from_slice(&x, (m, k), &Device::Cpu).unwrap();
                let reference: Vec<f32> = if with_candle {
                    QMatMul::from_qtensor(q)
                        .unwrap()
                        .forward(&xt)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap()
                } else {
                    out.clone()
                };
                let len = t.act_row_bytes(k);
                let acts: Vec<Vec<u8>> = (0..m)
                    .map(|r| {
                        let mut a = vec![0u8; len];
                        t.quantize_act(&x[r * k..(r + 1) * k], &mut a);
                        a
                    })
                    .collect();
                let rb = k / bv * t.block_bytes();
                for r in 0..m {
                    for j in 0..n {
                        let got = out[r * n + j];
                        let terms: f32 =
                            (0..k).map(|i| (deq[j * k + i] * x[r * k + i]).abs()).sum();
                        assert!(
                            (got - reference[r * n + j]).abs() <= 1e-4 * terms,
                            "{t:?} ({r}, {j}): {got} vs candle {} (terms {terms})",
                            reference[r * n + j]
                        );
                        // The exact answer is within the activations' quantization error.
                        let exact: f32 = (0..k).map(|i| deq[j * k + i] * x[r * k + i]).sum();
                        assert!(
                            (got - exact).abs() <= 0.02 * terms,
                            "{t:?}: {got} vs {exact}"
                        );
                        let wr = &ours_bytes(&ours)[j * rb..(j + 1) * rb];
                        let want = scalar(t, wr, &acts[r]);
                        assert_eq!(got.to_bits(), want.to_bits(), "{t:?} ({r}, {j})");
                    }
                }
                // Every level and group size against the definition.
                let mut levels = vec![Level::Scalar];
                if Level::detect() != Level::Scalar {
                    levels.push(Level::Avx2);
                }
                let rows: Vec<&[u8]> = acts.iter().map(Vec::as_slice).collect();
                for level in levels {
                    for g in 1..=super::super::BLOCK_ROWS {
                        let mut res = vec![f32::NAN; g];
                        let wr = &ours_bytes(&ours)[2 * rb..3 * rb];
                        super::super::dot_blocks(t, level, wr, &rows[..g], &mut res);
                        for (r, v) in res.iter().enumerate() {
                            let want = scalar(t, wr, rows[r]);
                            assert_eq!(v.to_bits(), want.to_bits(), "{t:?} {level:?} {g} rows");
                        }
                    }
                }
                for r in 0..m {
                    let mut single = vec![0f32; n];
                    ours.matmul(&x[r * k..(r + 1) * k], &mut single, &mut Vec::new());
                    assert_eq!(single, out[r * n..(r + 1) * n], "{t:?} row {r} alone");
                }
            }
        }
    }

    /// Random raw blocks (every byte random: negative Q6_K scales, all code patterns, the
    /// 6-bit scales and mins of Q4_K/Q5_K at their extremes), not only what a quantizer writes.
    /// Each block's f16 scales are set to finite values of ±2^-8..2^-2.
    fn random_blocks(t: BlockType, blocks: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        let mut w: Vec<u8> = (0..blocks * t.block_bytes())
            .map(|_| next() as u8)
            .collect();
        for b in w.chunks_exact_mut(t.block_bytes()) {
            let mut scale = || {
                let v =
                    (1.0 + (next() % 1000) as f32 / 1000.0) * 2f32.powi(-((next() % 7) as i32) - 2);
                let v = if next() % 2 == 0 { v } else { -v };
                half::f16::from_f32(v).to_bits().to_le_bytes()
            };
            match t {
                BlockType::Q6K => b[208..210].copy_from_slice(&scale()),
                BlockType::Q4K | BlockType::Q5K => {
                    b[0..2].copy_from_slice(&scale());
                    b[2..4].copy_from_slice(&scale());
                }
                _ => b[0..2].copy_from_slice(&scale()),
            }
        }
        w
    }

    /// The K-quant kernels on random raw blocks: our dequantization equals the reference
    /// dequantizer (candle's port of ggml's `dequantize_row_*`) bit for bit, and every kernel
    /// level's dot product equals the exact sum `Σ w_t · d_x · x_t` of the dequantized weights and
    /// the activation codes to f32 rounding (at most 1e-6 of `Σ |w_t · d_x · x_t|`).
    #[test]
    fn k_quants_on_random_raw_blocks_match_the_reference_dequantizer() {
        for (t, dt) in [
            (BlockType::Q4K, GgmlDType::Q4K),
            (BlockType::Q5K, GgmlDType::Q5K),
            (BlockType::Q6K, GgmlDType::Q6K),
        ] {
            for (blocks, seed) in [(1usize, 7u64), (3, 8), (6, 9)] {
                let k = blocks * QK_K;
                let w = random_blocks(t, blocks, seed + t.block_bytes() as u64);
                let storage = candle_core::quantized::QStorage::from_data(
                    std::borrow::Cow::Borrowed(&w),
                    &Device::Cpu,
                    dt,
                )
                .unwrap();
                let reference: Vec<f32> = QTensor::new(storage, (1, k))
                    .unwrap()
                    .dequantize(&Device::Cpu)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let mut ours = vec![0f32; k];
                crate::blocks::dequantize_row(t, &w, &mut ours);
                for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "{t:?} value {i}: {a} vs {b}");
                }
                let x = lcg(k, seed * 31);
                let mut act = vec![0u8; t.act_row_bytes(k)];
                t.quantize_act(&x, &mut act);
                let (mut exact, mut terms) = (0f64, 0f64);
                for (bi, ab) in act.chunks_exact(Q8K_BYTES).enumerate() {
                    let dx = f32_at(ab, 0) as f64;
                    for v in 0..QK_K {
                        let term = reference[bi * QK_K + v] as f64 * dx * (ab[4 + v] as i8 as f64);
                        exact += term;
                        terms += term.abs();
                    }
                }
                let mut levels = vec![Level::Scalar];
                if Level::detect() != Level::Scalar {
                    levels.push(Level::Avx2);
                }
                for level in levels {
                    let got = dot(t, level, &w, &act);
                    assert!(
                        (got as f64 - exact).abs() <= 1e-6 * terms,
                        "{t:?} {level:?} {blocks} blocks: {got} vs exact {exact} (terms {terms})"
                    );
                    assert_eq!(
                        got.to_bits(),
                        scalar(t, &w, &act).to_bits(),
                        "{t:?} {level:?}"
                    );
                }
            }
        }
    }

    fn ours_bytes(m: &QMatrix) -> &[u8] {
        m.raw_bytes()
    }
}
