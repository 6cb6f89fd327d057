//! [`PackedI8`]: per-output-channel int8 weights packed once for u8 × i8 → i32 products over
//! activation codes read in place (no per-call repacking of the activations): the kernel of the
//! static int8 convolutions (implicit im2col over an image of codes) and linear layers.
//!
//! # Codes
//! An activation `x` quantized with scale `d` is the signed code `q = clamp(round(x / d), -127,
//! 127)`, stored as the byte `u = q + 128` (zero point 128: padding and zero are the byte 128).
//! Weights are symmetric codes `w ∈ [-127, 127]`. Every level computes the exact integer
//! `P[r][j] = Σ_k (u_rk - 128) · w_jk`:
//! - AVX-512 VNNI: `vpdpbusd` sums `u · w` (u8 × i8) and the store subtracts `128 · Σ_k w_jk`
//!   (kept per channel at packing);
//! - AVX2: `u ⊕ 0x80 = q`, then the sign trick (`|w| · sign(q, w)`, pairs ≤ 2 · 127 · 127 fit
//!   `vpmaddubsw`'s i16) and `vpmaddwd` by ones;
//! - scalar: the sum as written.
//!
//! So every level gives the same bits, and the f32 epilogue (the caller's) is the same too.
//!
//! # Layout
//! The reduction index `k` (padded to a multiple of 4 with zero weights) runs over `segs.len()`
//! segments of `g` groups of 4 bytes: activation row `r` reads the bytes
//! `src[rows[r] + segs[s] + 4 i .. + 4]` for group `i` of segment `s`, `k = (s · g + i) · 4 + t`.
//! A linear layer has one segment (the row); a convolution over an image of codes stored
//! height × width × channels has one segment per kernel row (`k · C` contiguous bytes), or per
//! kernel tap when dilated. Weights sit as `[k / 4][n padded to 32][4]`, so one 32-byte load
//! gives 4 reduction steps of 8 output channels.

use crate::error::Result;
use crate::kernels::Level;

/// Output channels are padded to a multiple of this (the widest tile of channels).
pub const CHANNEL_TILE: usize = 32;

/// Per-channel int8 weights in the packed layout (see the module docs).
#[derive(Clone)]
pub struct PackedI8 {
    n: usize,
    np: usize,
    k: usize,
    /// `[k4][np][4]` codes.
    w: Vec<i8>,
    /// `|w|` in the same layout (the AVX2 sign trick).
    wabs: Vec<u8>,
    /// `Σ_k w_jk` per padded channel.
    wsum: Vec<i32>,
    scales: Vec<f32>,
    level: Level,
}

impl std::fmt::Debug for PackedI8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedI8({}x{}, {:?})", self.n, self.k, self.level)
    }
}

impl PackedI8 {
    /// Pack `codes` (`n × k`, row-major, in `[-127, 127]`, `k` in the order the activations are
    /// read) with one f32 scale per output channel; `what` names the weight in errors.
    pub fn new(n: usize, k: usize, codes: &[i8], scales: Vec<f32>, what: &str) -> Result<Self> {
        crate::int8::check_weights(n, k, codes, &scales, what)?;
        let np = n.next_multiple_of(CHANNEL_TILE);
        let k4 = k.div_ceil(4);
        let mut w = vec![0i8; k4 * np * 4];
        let mut wsum = vec![0i32; np];
        for (j, row) in codes.chunks_exact(k).enumerate() {
            for (i, &c) in row.iter().enumerate() {
                w[((i / 4) * np + j) * 4 + i % 4] = c;
            }
            wsum[j] = row.iter().map(|&c| c as i32).sum();
        }
        let wabs = w.iter().map(|c| c.unsigned_abs()).collect();
        Ok(Self {
            n,
            np,
            k,
            w,
            wabs,
            wsum,
            scales,
            level: Level::detect(),
        })
    }

    /// Output channels.
    pub fn rows(&self) -> usize {
        self.n
    }

    /// Output channels padded to [`CHANNEL_TILE`]: the row stride of [`PackedI8::products`].
    pub fn padded_rows(&self) -> usize {
        self.np
    }

    /// The reduction length (before padding to 4).
    pub fn cols(&self) -> usize {
        self.k
    }

    /// The per-channel weight scales.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// The codes as [`PackedI8::new`] took them (`rows × cols`, row-major).
    pub fn codes(&self) -> Vec<i8> {
        let mut codes = vec![0i8; self.n * self.k];
        for (j, row) in codes.chunks_exact_mut(self.k).enumerate() {
            for (i, c) in row.iter_mut().enumerate() {
                *c = self.w[((i / 4) * self.np + j) * 4 + i % 4];
            }
        }
        codes
    }

    /// `out[r · padded_rows + j] = Σ_k (u_rk - 128) · w_jk` for each of `rows.len()` activation
    /// rows read from `src` as the module docs say (`g = ⌈k / 4⌉ / segs.len()` groups per
    /// segment); channels past [`PackedI8::rows`] get 0. Runs on the calling thread. The bytes
    /// must be codes (`1..=255`, see the module docs) for the levels to agree.
    ///
    /// # Panics
    /// If `segs` does not split the groups evenly, a row reads past `src`, or `out` is short.
    pub fn products(&self, src: &[u8], rows: &[usize], segs: &[usize], out: &mut [i32]) {
        self.products_at(self.level, src, rows, segs, out)
    }

    pub(crate) fn products_at(
        &self,
        level: Level,
        src: &[u8],
        rows: &[usize],
        segs: &[usize],
        out: &mut [i32],
    ) {
        let k4 = self.k.div_ceil(4);
        assert!(
            !segs.is_empty() && k4 % segs.len() == 0,
            "{} segments for {k4} groups",
            segs.len()
        );
        let g = k4 / segs.len();
        let (Some(&rmax), Some(&smax)) = (rows.iter().max(), segs.iter().max()) else {
            return;
        };
        assert!(
            rmax + smax + 4 * g <= src.len(),
            "activation rows read past the {} codes",
            src.len()
        );
        assert!(out.len() >= rows.len() * self.np, "products output length");
        #[cfg(target_arch = "x86_64")]
        if level != Level::Scalar {
            // SAFETY: `Level::detect` (or a test that checked the CPU) chose the level; the reads
            // are in bounds (checked above), `out` holds `rows.len() × np` values.
            unsafe {
                crate::kernels::packed_x86::products(
                    level == Level::Vnni,
                    src,
                    rows,
                    segs,
                    g,
                    (&self.w, &self.wabs, &self.wsum, self.np),
                    out,
                )
            };
            return;
        }
        let _ = level;
        let np = self.np;
        for (r, &base) in rows.iter().enumerate() {
            let o = &mut out[r * np..(r + 1) * np];
            o.fill(0);
            for (s, &seg) in segs.iter().enumerate() {
                for i in 0..g {
                    let at = base + seg + 4 * i;
                    let wk = &self.w[(s * g + i) * np * 4..][..np * 4];
                    for t in 0..4 {
                        let q = src[at + t] as i32 - 128;
                        for (j, o) in o.iter_mut().enumerate() {
                            *o += q * wk[4 * j + t] as i32;
                        }
                    }
                }
            }
        }
    }
}

/// The activation byte of `x` at scale `1 / inv` (see the module docs): `round(x · inv)` (half to
/// even) clamped to `[-127, 127]`, plus 128.
#[inline]
pub fn code_u8(x: f32, inv: f32) -> u8 {
    // |c| ≤ 127 ≪ 2^22 after the clamp: adding 1.5 · 2^23 rounds half to even and leaves the
    // integer in the low bits of the mantissa (0x4B40_0000 + c, low byte c mod 256), so the code
    // is that byte + 128, with no float-to-int conversion (whose saturation checks kept the
    // loops of codes scalar). NaN becomes 0: the code of zero.
    let c = (x * inv).clamp(-127.0, 127.0);
    let c = if c.is_nan() { 0.0 } else { c };
    ((c + 12_582_912.0).to_bits() as u8).wrapping_add(128)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn int(&mut self, lo: i32, hi: i32) -> i32 {
            lo + (self.next() % (hi - lo + 1) as u64) as i32
        }
    }

    fn levels() -> Vec<Level> {
        let mut l = vec![Level::Scalar];
        if Level::detect() != Level::Scalar {
            l.push(Level::Avx2);
        }
        if Level::detect() == Level::Vnni {
            l.push(Level::Vnni);
        }
        l
    }

    /// Random codes (the extremes included) on shapes around the tile sizes: 1 to 13 rows (tiles
    /// of 6 and 4 with remainders), channels 1, 5, 31, 32, 33, 64, 70, reduction lengths not a
    /// multiple of 4, several segments at scattered offsets. Every level equals the plain i32 sum.
    #[test]
    fn products_equal_the_exact_integer_sum_at_every_level() {
        let mut g = Lcg(3);
        let shapes = [
            (1, 1, 1, 1),
            (13, 5, 7, 1),
            (6, 32, 36, 3),
            (7, 33, 288, 9),
            (4, 64, 8, 2),
            (11, 70, 100, 5),
            (2, 31, 3136, 1),
            (5, 10, 130, 1),
        ];
        for (m, n, k, nseg) in shapes {
            let codes: Vec<i8> = (0..n * k)
                .map(|i| match i % 17 {
                    0 => 127,
                    1 => -127,
                    _ => g.int(-127, 127) as i8,
                })
                .collect();
            let w = PackedI8::new(n, k, &codes, vec![1.0; n], "w").unwrap();
            assert_eq!(w.codes(), codes, "{n}x{k} unpacked");
            let k4 = k.div_ceil(4);
            let gs = k4 / nseg;
            assert_eq!(gs * nseg, k4, "test shape");
            // Segments at scattered offsets, rows at scattered offsets, bytes around them random.
            let segs: Vec<usize> = (0..nseg)
                .map(|s| s * (4 * gs + 3) + g.int(0, 2) as usize)
                .collect();
            let span = segs.iter().max().unwrap() + 4 * gs;
            let rows: Vec<usize> = (0..m).map(|r| r * 5 + g.int(0, 7) as usize).collect();
            let len = rows.iter().max().unwrap() + span;
            let src: Vec<u8> = (0..len)
                .map(|i| match i % 13 {
                    0 => 1,
                    1 => 255,
                    _ => g.int(1, 255) as u8,
                })
                .collect();
            let np = w.padded_rows();
            let mut want = vec![0i32; m * np];
            for (r, &base) in rows.iter().enumerate() {
                for j in 0..n {
                    let mut sum = 0i32;
                    for kk in 0..k {
                        let (s, i, t) = (kk / 4 / gs, kk / 4 % gs, kk % 4);
                        let u = src[base + segs[s] + 4 * i + t] as i32;
                        sum += (u - 128) * codes[j * k + kk] as i32;
                    }
                    want[r * np + j] = sum;
                }
            }
            for level in levels() {
                let mut got = vec![i32::MIN; m * np];
                w.products_at(level, &src, &rows, &segs, &mut got);
                assert_eq!(got, want, "{level:?} {m}x{n}x{k} in {nseg} segments");
            }
        }
    }

    #[test]
    fn codes_round_half_to_even_and_clamp() {
        assert_eq!(code_u8(0.0, 1.0), 128);
        assert_eq!(code_u8(2.5, 1.0), 130);
        assert_eq!(code_u8(-2.5, 1.0), 126);
        assert_eq!(code_u8(1e9, 1.0), 255);
        assert_eq!(code_u8(-1e9, 1.0), 1);
        assert_eq!(code_u8(f32::NAN, 1.0), 128);
        assert_eq!(code_u8(-f32::NAN, 1.0), 128);
        assert_eq!(code_u8(f32::INFINITY, 1.0), 255);
        assert_eq!(code_u8(f32::NEG_INFINITY, 1.0), 1);
        // Every code against the plain rounding, at and between the half steps.
        for i in -1300..=1300 {
            let x = i as f32 * 0.1;
            let want = (x.round_ties_even().clamp(-127.0, 127.0) as i32 + 128) as u8;
            assert_eq!(code_u8(x, 1.0), want, "{x}");
            let h = i as f32 + 0.5;
            let want = (h.round_ties_even().clamp(-127.0, 127.0) as i32 + 128) as u8;
            assert_eq!(code_u8(h, 1.0), want, "{h}");
        }
    }

    #[test]
    fn bad_parts_are_errors_naming_the_weight() {
        let e = PackedI8::new(2, 3, &[0; 5], vec![1.0; 2], "conv.weight").unwrap_err();
        assert!(e.to_string().contains("conv.weight") && e.to_string().contains("5 codes"));
        let e = PackedI8::new(1, 2, &[-128, 0], vec![1.0], "w").unwrap_err();
        assert!(e.to_string().contains("-128"), "{e}");
        let e = PackedI8::new(1, 2, &[0, 0], vec![f32::INFINITY], "w").unwrap_err();
        assert!(e.to_string().contains("finite"), "{e}");
    }
}
