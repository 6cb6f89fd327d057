//! The training-shape GEMM (m ≥ [`GEMM_MIN_ROWS`] activation rows, e.g. the 512 token rows
//! of a LoRA step): register tiles of `JT` weight rows × `G` activation rows whose integer
//! accumulators all stay in vector registers, over the same kernel layout and with the same
//! order of floating-point operations per output as the row-group tiles ([`super::x86`]), so
//! every output is bit-identical to the scalar definition whichever path computes it.
//!
//! The row-group tiles run 4 weight rows × up to 8 activation rows: 32 integer accumulators plus
//! 4 weight vectors and an activation vector do not fit AVX-512's 32 vector registers, so every
//! `vpdpbusd` went through the stack. Here Q8_0 runs 4 × 6 (24 accumulators + 4 + 1) and Q4_1
//! 3 × 6 (18 accumulators + 6 unpacked weight vectors + 2 activation vectors); the f32
//! accumulators, touched once per group of eight blocks, live in memory. Each thread takes a
//! band of activation rows and walks every weight tile of its columns for it, so the band's rows
//! stay in L1 while the weight tiles stream from L2.

use super::x86::{q4_1_impl, q8_0_impl};
use super::Kind;

/// Fewest activation rows a matmul runs on [`gemm`] (fewer: the row-group tiles).
pub const GEMM_MIN_ROWS: usize = 16;

/// Weight rows × activation rows of a register tile.
pub const Q8_TILE: (usize, usize) = (4, 6);
/// Weight rows × activation rows of a register tile.
pub const Q4_TILE: (usize, usize) = (3, 6);

/// `out[r · stride + j] = W[j] · a[r]` for the weight rows `w` (`row_bytes` each) and the
/// activation rows `a[r]` (`r` < `rows.len()`, any count): full register tiles, then the edges
/// with narrower tiles of the same kernels.
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C, AVX512-VNNI and AVX512-VL; `w` and `rows` in the kernel
/// layout with the same block count; `out` valid for writes at those offsets, written by no other
/// thread.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub unsafe fn gemm(
    kind: Kind,
    w: &[u8],
    row_bytes: usize,
    rows: &[*const u8],
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features, pointer
    // ranges), which is what every unsafe operation below relies on.
    unsafe {
        match kind {
            Kind::Q8_0 => {
                band::<{ Q8_TILE.0 }, { Q8_TILE.1 }>(kind, w, row_bytes, rows, out, stride)
            }
            Kind::Q4_1 => {
                band::<{ Q4_TILE.0 }, { Q4_TILE.1 }>(kind, w, row_bytes, rows, out, stride)
            }
        }
    }
}

/// One tile of `JT'` ≤ `JT` weight rows from `base + j · row_bytes` × `G'` activation rows.
///
/// # Safety
/// As [`gemm`]; `res` holds `JT' · G'` values.
#[inline(always)]
unsafe fn tile<const JT: usize, const G: usize>(
    kind: Kind,
    ws: &[*const u8; JT],
    a: &[*const u8; G],
    row_bytes: usize,
    res: &mut [f32],
) {
    // SAFETY: as promised by the caller.
    unsafe {
        match kind {
            Kind::Q8_0 => q8_0_impl::<JT, G, true>(ws, a, row_bytes, false, res),
            Kind::Q4_1 => q4_1_impl::<JT, G, true>(ws, a, row_bytes, false, res),
        }
    }
}

/// Writes `res[t · g + r]` to `out[r · stride + j + t]`.
///
/// # Safety
/// `out` valid for those writes.
#[inline(always)]
unsafe fn store(res: &[f32], jt: usize, g: usize, out: *mut f32, stride: usize, j: usize) {
    for t in 0..jt {
        for r in 0..g {
            // SAFETY: as promised by the caller.
            unsafe { *out.add(r * stride + j + t) = res[t * g + r] };
        }
    }
}

/// All rows in bands of `G`, each band against every weight tile of `JT` rows (then one weight
/// row at a time); the last partial band likewise with tiles of its size (the LM head's
/// 64-row chunks leave 4 rows each).
///
/// # Safety
/// As [`gemm`].
#[inline(always)]
unsafe fn band<const JT: usize, const G: usize>(
    kind: Kind,
    w: &[u8],
    row_bytes: usize,
    rows: &[*const u8],
    out: *mut f32,
    stride: usize,
) {
    // SAFETY: as promised by the caller; tiles read whole weight rows of `w` and whole
    // activation rows, and write their own outputs.
    unsafe {
        let n = w.len() / row_bytes;
        let base = w.as_ptr();
        let mut res = [0f32; 8 * 8];
        let mut r0 = 0;
        while r0 + G <= rows.len() {
            let a: [*const u8; G] = std::array::from_fn(|r| rows[r0 + r]);
            let o = out.add(r0 * stride);
            let mut j = 0;
            while j + JT <= n {
                let ws: [*const u8; JT] = std::array::from_fn(|t| base.add((j + t) * row_bytes));
                tile::<JT, G>(kind, &ws, &a, row_bytes, &mut res);
                store(&res, JT, G, o, stride, j);
                j += JT;
            }
            while j < n {
                tile::<1, G>(kind, &[base.add(j * row_bytes)], &a, row_bytes, &mut res);
                store(&res, 1, G, o, stride, j);
                j += 1;
            }
            r0 += G;
        }
        macro_rules! rest {
            ($($g:literal),*) => {
                match rows.len() - r0 {
                    0 => {}
                    $($g => {
                        let a: [*const u8; $g] = std::array::from_fn(|r| rows[r0 + r]);
                        let o = out.add(r0 * stride);
                        let mut j = 0;
                        while j + JT <= n {
                            let ws: [*const u8; JT] =
                                std::array::from_fn(|t| base.add((j + t) * row_bytes));
                            tile::<JT, $g>(kind, &ws, &a, row_bytes, &mut res);
                            store(&res, JT, $g, o, stride, j);
                            j += JT;
                        }
                        while j < n {
                            tile::<1, $g>(kind, &[base.add(j * row_bytes)], &a, row_bytes, &mut res);
                            store(&res, 1, $g, o, stride, j);
                            j += 1;
                        }
                    })*
                    g => unreachable!("{g} rows left of a band of {G}"),
                }
            };
        }
        rest!(1, 2, 3, 4, 5, 6, 7);
    }
}

#[cfg(test)]
mod tests {
    use crate::kernels::{scalar_q4_1, scalar_q8_0, Level};
    use crate::layout::{padded_blocks, quantize_row_q8_1, Q8_BYTES};
    use crate::{QMatrix, QType};

    fn lcg(s: &mut u64) -> u32 {
        *s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*s >> 33) as u32
    }

    /// GGML bytes of random blocks (random f16 scales and minimums of both signs, random codes).
    fn random(qtype: QType, n: usize, k: usize, seed: u64) -> QMatrix {
        let mut s = seed;
        let mut data = Vec::new();
        for _ in 0..n * k / 32 {
            let f16 = |s: &mut u64| {
                let v = (lcg(s) % 2001) as f32 / 1000.0 - 1.0;
                half::f16::from_f32(v * 0.02).to_le_bytes()
            };
            data.extend_from_slice(&f16(&mut s));
            let codes = if qtype == QType::Q4_1 {
                data.extend_from_slice(&f16(&mut s));
                16
            } else {
                32
            };
            data.extend((0..codes).map(|_| lcg(&mut s) as u8));
        }
        QMatrix::new(qtype, n, k, data).unwrap()
    }

    /// The GEMM (m ≥ 16) against the row-group tiles and the scalar definition, bit for bit, on
    /// odd shapes: every tail length (1 to 23 blocks), weight rows not a multiple of the tile,
    /// activation rows with every remainder of a band, a strided output.
    #[test]
    fn gemm_is_bit_identical_to_the_tiles_and_the_scalar_definition() {
        if Level::detect() != Level::Vnni {
            eprintln!("skipped: no AVX512-VNNI on this CPU (the GEMM does not run)");
            return;
        }
        let mut s = 7u64;
        for (i, blocks) in [1, 2, 3, 7, 8, 9, 11, 16, 18, 23].into_iter().enumerate() {
            for qtype in [QType::Q4_1, QType::Q8_0] {
                let (n, k, m) = (13 + 2 * i, 32 * blocks, 16 + i);
                let w = random(qtype, n, k, 100 + i as u64);
                let x: Vec<f32> = (0..m * k)
                    .map(|_| (lcg(&mut s) % 4001) as f32 / 1000.0 - 2.0)
                    .collect();
                let mut gemm = vec![0f32; m * n];
                let mut tiles = vec![0f32; m * n];
                let mut scratch = Vec::new();
                w.matmul(&x, &mut gemm, &mut scratch);
                w.matmul_tiles(&x, &mut tiles, &mut scratch);
                let (len, rb) = (padded_blocks(k) * Q8_BYTES, w.raw_bytes().len() / n);
                for r in 0..m {
                    let mut a = vec![0u8; len];
                    quantize_row_q8_1(&x[r * k..(r + 1) * k], &mut a);
                    for j in 0..n {
                        let wr = &w.raw_bytes()[j * rb..(j + 1) * rb];
                        let want = match qtype {
                            QType::Q4_1 => scalar_q4_1(wr, &a),
                            _ => scalar_q8_0(wr, &a),
                        };
                        let (g, t) = (gemm[r * n + j], tiles[r * n + j]);
                        assert_eq!(
                            g.to_bits(),
                            want.to_bits(),
                            "{qtype:?} {blocks} blocks ({r}, {j})"
                        );
                        assert_eq!(t.to_bits(), want.to_bits(), "{qtype:?} tiles ({r}, {j})");
                    }
                }
                // A strided output: the columns land at their offset, nothing else is written.
                let stride = n + 5;
                let mut wide = vec![f32::NAN; m * stride];
                w.matmul_strided(&x, &mut wide, stride, 3, &mut scratch);
                for r in 0..m {
                    assert_eq!(
                        wide[r * stride + 3..r * stride + 3 + n],
                        gemm[r * n..(r + 1) * n]
                    );
                    assert!(wide[r * stride..r * stride + 3].iter().all(|v| v.is_nan()));
                    assert!(wide[r * stride + 3 + n..(r + 1) * stride]
                        .iter()
                        .all(|v| v.is_nan()));
                }
            }
        }
    }
}
