//! The static (or per-image dynamic) int8 convolution of one image, with its folded ReLU and
//! max-pool: what `conv2d-int8` runs for each image of a batch.
//!
//! # Image of codes
//! The input is held as a zero-padded `(H + 2p) × (W + 2p) × C` image of u8 codes (`code =
//! round(x / d) + z`, z the input zero point, 128 for symmetric codes; the border the code z of 0), filled from an f32 `[C, H, W]` image
//! (quantized one plane at a time), from codes in the same `[C, H, W]` order, or from codes the
//! layer before wrote in `H × W × C` order (rows copied as they are). The border is written once
//! per [`ConvScratch`]; each image overwrites only the inside.
//!
//! # Products (an implicit im2col)
//! Output position `(y, x)` reads its patch in place, as [`lepton_quant::PackedI8`] segments:
//! with dilation 1 one segment per kernel row (`K · C` contiguous codes), otherwise one per
//! kernel tap (`C` codes); each segment is read in whole groups of 4 bytes, the weights past
//! the segment's end being zero, so no patch is ever gathered and `C` need not be a multiple of
//! 4 (a first convolution over one grey channel reads 3 × 4 codes per position). The image has
//! up to 3 bytes of slack after its end for the last position's last group.
//!
//! # Epilogue
//! The conv rows a pooled row needs are computed just before it (so the products are still in
//! cache); the folded max-pool is taken on the integer sums (the scale `d s_j ≥ 0`, the bias
//! and ReLU are monotone, so the max commutes with them), then `y = (d s_j) P + b_j` and the
//! ReLU, written as f32 or as the next layer's codes, in `[C', H', W']` or `H' × W' × C'`
//! order.

use candle_core::Result;
use lepton_quant::{PackedI8, CHANNEL_TILE};

/// The u8 code of `x` at scale `1 / inv` with zero point `zero` (the code of 0):
/// `round(x · inv) + zero`, rounded half to even and clamped to `[zero − min(zero, 127), 255]`;
/// NaN gives `zero`. With `zero = 128` it is `lepton_quant::code_u8` bit for bit (codes 1..=255,
/// symmetric); with `zero = 0` (inputs never negative) all 256 codes cover `[0, 255 / inv]`.
#[inline(always)]
pub fn code_at(x: f32, inv: f32, zero: u8) -> u8 {
    let lo = -f32::from(zero.min(127));
    let hi = f32::from(255 - zero);
    let c = (x * inv).clamp(lo, hi);
    let c = if c.is_nan() { 0.0 } else { c };
    // |c| ≤ 255 ≪ 2^22: adding 1.5 · 2^23 rounds half to even and leaves the integer in the low
    // bits of the mantissa (see `code_u8`), so the code is that byte + `zero` (mod 256).
    ((c + 12_582_912.0).to_bits() as u8).wrapping_add(zero)
}

/// Output channels per step of the epilogue (one AVX-512 vector of i32 or f32); the product
/// rows are padded to [`CHANNEL_TILE`], a multiple of it.
const LANES: usize = 16;
const _: () = assert!(CHANNEL_TILE % LANES == 0);

/// A `conv2d-int8` layer's geometry (groups 1, square kernel) and folded max-pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvInt8Geom {
    /// Input channels.
    pub c: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    /// The folded max-pool `(kernel, stride, padding)`.
    pub pool: Option<(usize, usize, usize)>,
    /// The input zero point: the code of 0, written in the padding border (128: symmetric codes).
    pub zero: u8,
}

impl ConvInt8Geom {
    /// `(segments, codes per segment)` of one patch (see the module docs).
    fn segments(&self) -> (usize, usize) {
        let k = self.kernel;
        if self.dilation == 1 {
            (k, k * self.c)
        } else {
            (k * k, self.c)
        }
    }

    /// The packed reduction length: segments of whole 4-code groups.
    pub fn packed_len(&self) -> usize {
        let (n, len) = self.segments();
        n * len.next_multiple_of(4)
    }

    /// Weight codes `[co][c][ky][kx]` (PyTorch's order) in the order the kernel reads the
    /// image (`[co][segment][(kx,) c]`, each segment padded with zero codes to whole groups):
    /// `co × packed_len` codes.
    pub fn pack_weights(&self, codes: &[i8], co: usize) -> Vec<i8> {
        let (c, k) = (self.c, self.kernel);
        let (nseg, len) = self.segments();
        let seg = len.next_multiple_of(4);
        let mut out = vec![0i8; co * nseg * seg];
        for (src, dst) in codes
            .chunks_exact(c * k * k)
            .zip(out.chunks_exact_mut(nseg * seg))
        {
            for ci in 0..c {
                for ky in 0..k {
                    for kx in 0..k {
                        let at = if self.dilation == 1 {
                            ky * seg + kx * c + ci
                        } else {
                            (ky * k + kx) * seg + ci
                        };
                        dst[at] = src[(ci * k + ky) * k + kx];
                    }
                }
            }
        }
        out
    }

    /// The plan for `[C, h, w]` images; errors name what does not fit.
    pub fn plan(&self, h: usize, w: usize) -> Result<ConvPlan> {
        let (k, s, p, d, c) = (
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
            self.c,
        );
        let span = d * (k - 1) + 1;
        if h + 2 * p < span || w + 2 * p < span {
            candle_core::bail!("conv2d-int8: kernel {k} does not fit input {c}x{h}x{w}");
        }
        let (oh, ow) = ((h + 2 * p - span) / s + 1, (w + 2 * p - span) / s + 1);
        let (ph, pw) = match self.pool {
            Some((pk, ps, pp)) => {
                if pk == 0 || ps == 0 || 2 * pp > pk || oh + 2 * pp < pk || ow + 2 * pp < pk {
                    candle_core::bail!(
                        "max-pool2d: kernel {pk}, stride {ps}, padding {pp} do not fit the conv2d-int8 output {oh}x{ow}"
                    );
                }
                ((oh + 2 * pp - pk) / ps + 1, (ow + 2 * pp - pk) / ps + 1)
            }
            None => (oh, ow),
        };
        let wp = w + 2 * p;
        let rows: Vec<usize> = (0..oh * ow)
            .map(|i| ((i / ow) * s * wp + (i % ow) * s) * c)
            .collect();
        let (nseg, len) = self.segments();
        let segs: Vec<usize> = if d == 1 {
            (0..nseg).map(|ky| ky * wp * c).collect()
        } else {
            (0..nseg)
                .map(|t| ((t / k) * d * wp + (t % k) * d) * c)
                .collect()
        };
        let last = rows.last().copied().unwrap_or(0) + segs.last().copied().unwrap_or(0);
        let img = ((h + 2 * p) * wp * c).max(last + len.next_multiple_of(4));
        Ok(ConvPlan {
            geom: *self,
            h,
            w,
            wp,
            img,
            rows,
            segs,
            oh,
            ow,
            ph,
            pw,
        })
    }
}

/// Where one image's codes are read from and its outputs go (the same for every image).
#[derive(Debug, Clone)]
pub struct ConvPlan {
    geom: ConvInt8Geom,
    h: usize,
    w: usize,
    /// Padded width.
    wp: usize,
    /// Bytes of one image of codes, with the slack of the last group.
    img: usize,
    /// Each output position's first code.
    rows: Vec<usize>,
    /// Each segment's offset from a position's first code.
    segs: Vec<usize>,
    /// Convolution output `(H', W')`, and the stored output (after the folded pool).
    oh: usize,
    ow: usize,
    ph: usize,
    pw: usize,
}

/// One image's input.
#[derive(Clone, Copy)]
pub enum ConvSrc<'a> {
    /// f32 `[C, H, W]`, quantized with `1 / d`.
    F32(&'a [f32], f32),
    /// Codes `[C, H, W]`.
    Chw(&'a [u8]),
    /// Codes `H × W × C`.
    Hwc(&'a [u8]),
}

/// One image's output.
pub enum ConvDst<'a> {
    /// f32 `[C', H', W']`.
    F32(&'a mut [f32]),
    /// Codes at scale `1 / inv` with zero point `zero`, `[C', H', W']`.
    Chw(&'a mut [u8], f32, u8),
    /// Codes at scale `1 / inv` with zero point `zero`, `H' × W' × C'`.
    Hwc(&'a mut [u8], f32, u8),
}

/// The buffers one thread reuses over its images: the image of codes (border written once),
/// one plane's codes, the products `[H'·W'][padded channels]`, the per-channel output scales
/// and biases (padded as the products).
#[derive(Default)]
pub struct ConvScratch {
    codes: Vec<u8>,
    plane: Vec<u8>,
    prod: Vec<i32>,
    scale: Vec<f32>,
    bias: Vec<f32>,
}

/// The input range covered by pool output `o` (kernel `k`, stride `s`, padding `p`) along an axis
/// of length `len` (as `max-pool2d`: padded cells are skipped).
fn span(o: usize, (k, s, p): (usize, usize, usize), len: usize) -> (usize, usize) {
    let start = (o * s) as isize - p as isize;
    (
        start.max(0) as usize,
        ((start + k as isize) as usize).min(len),
    )
}

impl ConvPlan {
    /// Values of one input image.
    pub fn in_len(&self) -> usize {
        self.geom.c * self.h * self.w
    }

    /// The stored output `(H', W')` (after the folded pool).
    pub fn out_hw(&self) -> (usize, usize) {
        (self.ph, self.pw)
    }

    /// Fill the inside of the image of codes from `src`.
    #[inline(always)]
    fn fill(&self, src: ConvSrc, buf: &mut ConvScratch) {
        let (c, h, w, p, wp) = (self.geom.c, self.h, self.w, self.geom.padding, self.wp);
        let zero = self.geom.zero;
        if buf.codes.len() != self.img {
            buf.codes.clear();
            buf.codes.resize(self.img, self.geom.zero);
        }
        let at = |y: usize| ((y + p) * wp + p) * c;
        match src {
            ConvSrc::Hwc(x) => {
                for (y, row) in x.chunks_exact(w * c).enumerate() {
                    buf.codes[at(y)..at(y) + w * c].copy_from_slice(row);
                }
            }
            ConvSrc::F32(x, inv) if c == 1 => {
                for (y, row) in x.chunks_exact(w).enumerate() {
                    for (q, &v) in buf.codes[at(y)..at(y) + w].iter_mut().zip(row) {
                        *q = code_at(v, inv, zero);
                    }
                }
            }
            ConvSrc::Chw(x) if c == 1 => {
                for (y, row) in x.chunks_exact(w).enumerate() {
                    buf.codes[at(y)..at(y) + w].copy_from_slice(row);
                }
            }
            ConvSrc::F32(..) | ConvSrc::Chw(_) => {
                // Each plane's codes (one vectorizable pass), then spread to every `C`-th byte.
                buf.plane.resize(h * w, zero);
                for ci in 0..c {
                    let plane = match src {
                        ConvSrc::F32(x, inv) => {
                            for (q, &v) in buf.plane.iter_mut().zip(&x[ci * h * w..]) {
                                *q = code_at(v, inv, zero);
                            }
                            &buf.plane[..]
                        }
                        ConvSrc::Chw(x) => &x[ci * h * w..(ci + 1) * h * w],
                        ConvSrc::Hwc(_) => unreachable!("copied above"),
                    };
                    for (y, row) in plane.chunks_exact(w).enumerate() {
                        let dst = &mut buf.codes[at(y) + ci..];
                        for (xx, &q) in row.iter().enumerate() {
                            dst[xx * c] = q;
                        }
                    }
                }
            }
        }
    }

    /// One image into its output (after the folded pool): `y = (d s_j) P + b_j` (+ ReLU), with
    /// `weight` packed by [`ConvInt8Geom::pack_weights`], `bias` one value per output channel.
    /// The loops around the products (image fill, pool, epilogue) are compiled for AVX-512 or
    /// AVX2 when the CPU has them (the same IEEE operations at every width: the same bits).
    #[allow(clippy::too_many_arguments)]
    pub fn image(
        &self,
        weight: &PackedI8,
        bias: &[f32],
        relu: bool,
        d: f32,
        src: ConvSrc,
        dst: ConvDst,
        buf: &mut ConvScratch,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            /// # Safety
            /// The CPU must support AVX-512F/BW and AVX2; the body is safe code.
            #[target_feature(enable = "avx512f,avx512bw,avx2")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn v4(
                plan: &ConvPlan,
                weight: &PackedI8,
                bias: &[f32],
                relu: bool,
                d: f32,
                src: ConvSrc,
                dst: ConvDst,
                buf: &mut ConvScratch,
            ) {
                plan.image_body(weight, bias, relu, d, src, dst, buf)
            }
            /// # Safety
            /// The CPU must support AVX2; the body is safe code.
            #[target_feature(enable = "avx2")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn v3(
                plan: &ConvPlan,
                weight: &PackedI8,
                bias: &[f32],
                relu: bool,
                d: f32,
                src: ConvSrc,
                dst: ConvDst,
                buf: &mut ConvScratch,
            ) {
                plan.image_body(weight, bias, relu, d, src, dst, buf)
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                // SAFETY: the CPU has AVX-512F/BW (checked), and AVX2 with them.
                return unsafe { v4(self, weight, bias, relu, d, src, dst, buf) };
            }
            if is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked).
                return unsafe { v3(self, weight, bias, relu, d, src, dst, buf) };
            }
        }
        self.image_body(weight, bias, relu, d, src, dst, buf)
    }

    /// [`ConvPlan::image`] at the baseline instruction set (inlined into its wider versions).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn image_body(
        &self,
        weight: &PackedI8,
        bias: &[f32],
        relu: bool,
        d: f32,
        src: ConvSrc,
        mut dst: ConvDst,
        buf: &mut ConvScratch,
    ) {
        self.fill(src, buf);
        let np = weight.padded_rows();
        let co = weight.rows();
        buf.prod.resize(self.rows.len() * np, 0);
        // The scales `d s_j` and biases, padded with zeros to the product rows' `np` channels.
        buf.scale.clear();
        buf.scale.extend(weight.scales().iter().map(|s| d * s));
        buf.scale.resize(np, 0.0);
        buf.bias.clear();
        buf.bias.extend_from_slice(bias);
        buf.bias.resize(np, 0.0);
        let l = self.ph * self.pw;
        let ow = self.ow;
        let single = (1, 1, 0);
        let (pk, ps, pp) = self.geom.pool.unwrap_or(single);
        // Conv rows `[0, done)` have their products.
        let mut done = 0;
        for py in 0..self.ph {
            let (ylo, yhi) = span(py, (pk, ps, pp), self.oh);
            if yhi > done {
                let (a, b) = (done * ow, yhi * ow);
                weight.products(
                    &buf.codes,
                    &self.rows[a..b],
                    &self.segs,
                    &mut buf.prod[a * np..b * np],
                );
                done = yhi;
            }
            for px in 0..self.pw {
                let i = py * self.pw + px;
                let (xlo, xhi) = span(px, (pk, ps, pp), ow);
                // LANES channels at a time, each step in registers: the pool's max over the
                // window's sums, `y = (d s_j) P + b_j`, the ReLU, the output.
                for j0 in (0..co).step_by(LANES) {
                    let mut m = [i32::MIN; LANES];
                    for y in ylo..yhi {
                        for x in xlo..xhi {
                            let at = (y * ow + x) * np + j0;
                            let p: &[i32; LANES] = buf.prod[at..at + LANES].try_into().unwrap();
                            for t in 0..LANES {
                                m[t] = m[t].max(p[t]);
                            }
                        }
                    }
                    let s: &[f32; LANES] = buf.scale[j0..j0 + LANES].try_into().unwrap();
                    let b: &[f32; LANES] = buf.bias[j0..j0 + LANES].try_into().unwrap();
                    let mut v = [0f32; LANES];
                    for t in 0..LANES {
                        v[t] = m[t] as f32 * s[t] + b[t];
                        if relu {
                            v[t] = v[t].max(0.0);
                        }
                    }
                    let n = LANES.min(co - j0);
                    match &mut dst {
                        ConvDst::Hwc(out, inv, z) => {
                            let mut q = [0u8; LANES];
                            for t in 0..LANES {
                                q[t] = code_at(v[t], *inv, *z);
                            }
                            let at = i * co + j0;
                            if n == LANES {
                                // A fixed-size copy: one store, not a call to memcpy.
                                let o: &mut [u8; LANES] =
                                    (&mut out[at..at + LANES]).try_into().unwrap();
                                *o = q;
                            } else {
                                out[at..at + n].copy_from_slice(&q[..n]);
                            }
                        }
                        ConvDst::F32(out) => {
                            for (t, &v) in v[..n].iter().enumerate() {
                                out[(j0 + t) * l + i] = v;
                            }
                        }
                        ConvDst::Chw(out, inv, z) => {
                            for (t, &v) in v[..n].iter().enumerate() {
                                out[(j0 + t) * l + i] = code_at(v, *inv, *z);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small deterministic generator (no test dependency); the int8 layers' tests use it too.
    pub(crate) struct Lcg(pub(crate) u64);
    impl Lcg {
        pub(crate) fn int(&mut self, lo: i32, hi: i32) -> i32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + ((self.0 >> 33) % (hi - lo + 1) as u64) as i32
        }
        pub(crate) fn float(&mut self) -> f32 {
            self.int(-1_000_000, 1_000_000) as f32 * 1e-6
        }
    }

    /// `code_at` with zero point 128 is `lepton_quant::code_u8` bit for bit (so packages written
    /// before the zero point run unchanged); zero point 0 spans 0..=255 over `[0, 255 / inv]`,
    /// rounding half to even, negatives and NaN at the code of 0.
    #[test]
    fn code_at_128_is_code_u8_and_0_uses_all_256_codes() {
        let mut g = Lcg(3);
        for i in 0..200_000 {
            let x = match i % 4 {
                0 => g.float() * 200.0,
                1 => (g.int(-300, 300) as f32) * 0.5,
                2 => g.float() * 1e-3,
                _ => f32::from_bits(g.int(0, i32::MAX - 1) as u32),
            };
            for inv in [1.0, 0.37, 40.0] {
                assert_eq!(
                    code_at(x, inv, 128),
                    lepton_quant::code_u8(x, inv),
                    "{x} {inv}"
                );
                assert_eq!(
                    code_at(-x, inv, 128),
                    lepton_quant::code_u8(-x, inv),
                    "-{x} {inv}"
                );
            }
        }
        for (x, want) in [
            (0.0, 0),
            (2.5, 2),
            (3.5, 4),
            (254.6, 255),
            (1e9, 255),
            (-3.0, 0),
            (f32::NAN, 0),
            (f32::NEG_INFINITY, 0),
        ] {
            assert_eq!(code_at(x, 1.0, 0), want, "{x}");
        }
        assert_eq!(code_at(0.0, 1.0, 37), 37);
        assert_eq!(code_at(-100.0, 1.0, 37), 0);
        assert_eq!(code_at(300.0, 1.0, 37), 255);
        assert_eq!(code_at(-1.5, 1.0, 37), 35);
    }

    /// The widest version this CPU runs (AVX-512 or AVX2) gives the same bits as the baseline
    /// body on float scales, biases and inputs (quantized here), every input and output order,
    /// with and without ReLU and pool, odd sizes and channel counts.
    #[test]
    fn the_simd_versions_equal_the_baseline_bit_for_bit() {
        let mut g = Lcg(7);
        // (c, h, w, co, kernel, stride, padding, dilation, pool)
        type Case = (
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            Option<(usize, usize, usize)>,
        );
        let cases: [Case; 4] = [
            (1, 9, 7, 5, 3, 1, 1, 1, Some((2, 2, 0))),
            (6, 7, 8, 33, 3, 2, 1, 1, None),
            (4, 6, 5, 70, 2, 1, 0, 2, Some((3, 2, 1))),
            (3, 5, 5, 9, 1, 1, 0, 1, None),
        ];
        for (c, h, w, co, kernel, stride, padding, dilation, pool) in cases {
            let geom = ConvInt8Geom {
                c,
                kernel,
                stride,
                padding,
                dilation,
                pool,
                zero: 128,
            };
            let codes: Vec<i8> = (0..co * c * kernel * kernel)
                .map(|_| g.int(-127, 127) as i8)
                .collect();
            let scales: Vec<f32> = (0..co).map(|_| g.float().abs() * 0.01).collect();
            let bias: Vec<f32> = (0..co).map(|_| g.float()).collect();
            let packed = geom.pack_weights(&codes, co);
            let weight = PackedI8::new(co, geom.packed_len(), &packed, scales, "w").unwrap();
            let plan = geom.plan(h, w).unwrap();
            let x: Vec<f32> = (0..c * h * w).map(|_| g.float() * 3.0).collect();
            let u: Vec<u8> = (0..c * h * w).map(|_| g.int(1, 255) as u8).collect();
            let (ph, pw) = plan.out_hw();
            let n = co * ph * pw;
            for relu in [false, true] {
                for (si, src) in [ConvSrc::F32(&x, 40.0), ConvSrc::Chw(&u), ConvSrc::Hwc(&u)]
                    .into_iter()
                    .enumerate()
                {
                    let run = |body: bool, kind: usize| -> (Vec<f32>, Vec<u8>) {
                        let (mut f, mut q) = (vec![0f32; n], vec![0u8; n]);
                        let dst = match kind {
                            0 => ConvDst::F32(&mut f),
                            1 => ConvDst::Chw(&mut q, 7.5, 128),
                            _ => ConvDst::Hwc(&mut q, 7.5, 128),
                        };
                        let mut buf = ConvScratch::default();
                        if body {
                            plan.image_body(&weight, &bias, relu, 0.02, src, dst, &mut buf);
                        } else {
                            plan.image(&weight, &bias, relu, 0.02, src, dst, &mut buf);
                        }
                        (f, q)
                    };
                    for kind in 0..3 {
                        let (want, got) = (run(true, kind), run(false, kind));
                        let what =
                            format!("{c}x{h}x{w} -> {co}, src {si}, dst {kind}, relu {relu}");
                        assert!(
                            want.0.iter().any(|&v| v != 0.0) || want.1.iter().any(|&v| v != 128),
                            "degenerate: {what}"
                        );
                        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&got.0), bits(&want.0), "{what}");
                        assert_eq!(got.1, want.1, "{what}");
                    }
                }
            }
        }
    }
}
