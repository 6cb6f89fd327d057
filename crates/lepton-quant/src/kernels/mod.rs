//! Dot products of a tile of weight rows with a group of quantized activation rows.
//!
//! # Order of operations (the definition every kernel follows bit for bit)
//! For each block `b` (padding blocks included, with zero codes and scales), the integer dot
//! product `p_b = Σ q_w q_x` of its 32 codes is exact; then eight f32 lanes, lane `b mod 8`,
//! accumulate `acc = fma(d_w · d_x, p_b, acc)` in block order, and for Q4_1 eight more lanes
//! accumulate `summ = fma(m_w, s_x, summ)`. The result is `hsum(acc) + hsum(summ)` (`hsum`: ggml's
//! `hsum_float_8` order). The blocks of the last, partial group of eight also update the lanes
//! past the row's end with zeros, as the vector code does. [`scalar_q4_1`] and [`scalar_q8_0`]
//! spell this out; the SIMD kernels (`x86`) must give the same bits.
//!
//! Unlike ggml's AVX2 kernels, which convert each block's eight partial sums to floats and
//! accumulate them separately, each block's integer sum is complete before any rounding: fewer
//! operations per block and a little more accuracy.

pub mod blocks;
#[cfg(target_arch = "x86_64")]
mod blocks_kvnni;
#[cfg(target_arch = "x86_64")]
mod blocks_vnni;
#[cfg(target_arch = "x86_64")]
mod blocks_x86;
#[cfg(target_arch = "x86_64")]
pub(crate) mod gemm_x86;
#[cfg(target_arch = "x86_64")]
pub(crate) mod packed_x86;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::blocks::BlockType;

use crate::layout::{byte_code_at, f16_at, f32_at, i32_at, nibble_at, GROUP, Q8_BYTES, QK};

/// Most activation rows per tile.
pub const MAX_ROWS: usize = 8;

/// The instruction set the kernels use, detected once per matmul.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    Scalar,
    Avx2,
    Vnni,
}

impl Level {
    pub fn detect() -> Level {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            if std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("avx512vl")
            {
                return Level::Vnni;
            }
            return Level::Avx2;
        }
        Level::Scalar
    }
}

/// The weight types with a kernel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Q4_1,
    Q8_0,
}

/// Every weight row of `w` (whole rows of `row_bytes`) dotted with each of `rows` (1 to
/// [`MAX_ROWS`] activation rows): weight row `j` · activation row `r` goes to `out[r · stride + j]`.
///
/// # Safety
/// `out` must be valid for writes at those offsets, and no other thread may access them.
pub unsafe fn dot(
    kind: Kind,
    level: Level,
    w: &[u8],
    row_bytes: usize,
    rows: &[&[u8]],
    out: *mut f32,
    stride: usize,
) {
    debug_assert!((1..=MAX_ROWS).contains(&rows.len()) && w.len() % row_bytes == 0);
    #[cfg(target_arch = "x86_64")]
    if level != Level::Scalar {
        // SAFETY: `Level::detect` checked the CPU features; `out` as promised by the caller.
        unsafe { x86::dot(kind, level == Level::Vnni, w, row_bytes, rows, out, stride) };
        return;
    }
    let _ = level;
    let scalar = match kind {
        Kind::Q4_1 => scalar_q4_1,
        Kind::Q8_0 => scalar_q8_0,
    };
    for (j, wr) in w.chunks_exact(row_bytes).enumerate() {
        for (r, a) in rows.iter().enumerate() {
            // SAFETY: as promised by the caller.
            unsafe { *out.add(r * stride + j) = scalar(wr, a) };
        }
    }
}

/// Most activation rows per GGML-block weight row in one [`dot_blocks`] call.
pub const BLOCK_ROWS: usize = 4;

/// `out[r] = w · rows[r]` for one weight row of GGML blocks of type `t` and 1 to [`BLOCK_ROWS`]
/// activation rows quantized by [`BlockType::quantize_act`] (the order of operations of
/// [`blocks::scalar`], at every level).
pub fn dot_blocks(t: BlockType, level: Level, w: &[u8], rows: &[&[u8]], out: &mut [f32]) {
    debug_assert!((1..=BLOCK_ROWS).contains(&rows.len()) && out.len() == rows.len());
    #[cfg(target_arch = "x86_64")]
    if level != Level::Scalar {
        // SAFETY: `Level::detect` found AVX2, FMA and F16C; the rows have the same length.
        unsafe {
            match rows.len() {
                1 => {
                    blocks_x86::dot_rows::<1>(t, w, &[rows[0]], (&mut out[..1]).try_into().unwrap())
                }
                2 => blocks_x86::dot_rows::<2>(
                    t,
                    w,
                    &[rows[0], rows[1]],
                    (&mut out[..2]).try_into().unwrap(),
                ),
                3 => blocks_x86::dot_rows::<3>(
                    t,
                    w,
                    &[rows[0], rows[1], rows[2]],
                    (&mut out[..3]).try_into().unwrap(),
                ),
                _ => blocks_x86::dot_rows::<4>(
                    t,
                    w,
                    &[rows[0], rows[1], rows[2], rows[3]],
                    (&mut out[..4]).try_into().unwrap(),
                ),
            }
        }
        return;
    }
    for (o, a) in out.iter_mut().zip(rows) {
        *o = blocks::dot(t, level, w, a);
    }
}

/// Most weight rows per [`dot_blocks_tile`] call.
#[cfg(target_arch = "x86_64")]
pub const TILE_W: usize = blocks_vnni::TILE_W;
/// Most weight rows per [`dot_blocks_tile`] call.
#[cfg(not(target_arch = "x86_64"))]
pub const TILE_W: usize = 4;

/// Every weight row of `w` (1 to [`TILE_W`] whole rows of `row_bytes`, GGML blocks of type `t`)
/// dotted with each of `rows` (1 to [`BLOCK_ROWS`] activation rows quantized by
/// [`BlockType::quantize_act`]): weight row `j` · activation row `r` goes to `out[r · stride + j]`,
/// by the order of operations of [`blocks::scalar`] at every level. At the VNNI level every type
/// runs as one tile (Q5_0/Q5_1 `blocks_vnni`, the K-quants `blocks_kvnni`) except Q6_K with one
/// activation row; at AVX2 and scalar one weight row at a time ([`dot_blocks`]).
///
/// # Safety
/// `out` must be valid for writes at those offsets, and no other thread may access them.
pub unsafe fn dot_blocks_tile(
    t: BlockType,
    level: Level,
    w: &[u8],
    row_bytes: usize,
    rows: &[&[u8]],
    out: *mut f32,
    stride: usize,
) {
    let nw = w.len() / row_bytes;
    debug_assert!((1..=TILE_W).contains(&nw) && w.len() == nw * row_bytes);
    debug_assert!((1..=BLOCK_ROWS).contains(&rows.len()));
    #[cfg(target_arch = "x86_64")]
    // One Q6_K activation row: the one-row kernel, which unpacks each block's codes from shared
    // loads (the tile unpacks per 32-value chunk): 0.85x at one row as a tile, 1.14-1.17x at 8
    // and 64 rows (`bench/llm/ab_qmatmul.sh`, bench/RESULTS.md, issue 14, session 13).
    if level == Level::Vnni && !(t == BlockType::Q6K && rows.len() == 1) {
        macro_rules! tile {
            ($m:ident::$f:ident; $($w:literal),*; $($r:literal),*) => {
                tile!(@w $m::$f; [$($w),*] [$($r),*])
            };
            (@w $m:ident::$f:ident; [$($w:literal),*] $rs:tt) => {
                match nw {
                    $($w => tile!(@r $m::$f; $w $rs),)*
                    _ => unreachable!("1 to TILE_W weight rows"),
                }
            };
            (@r $m:ident::$f:ident; $w:literal [$($r:literal),*]) => {
                match rows.len() {
                    // SAFETY: `Level::Vnni` was detected (AVX2, FMA, F16C, AVX512-VNNI/VL);
                    // `w` holds `$w` rows; `out` as promised by the caller.
                    $($r => unsafe {
                        $m::$f::<$w, $r>(
                            t,
                            w,
                            row_bytes,
                            &std::array::from_fn(|i| rows[i]),
                            out,
                            stride,
                        )
                    },)*
                    _ => unreachable!("1 to BLOCK_ROWS activation rows"),
                }
            };
        }
        match t {
            BlockType::Q5_0 | BlockType::Q5_1 => {
                tile!(blocks_vnni::dot_tile_q5; 1, 2, 3, 4; 1, 2, 3, 4)
            }
            BlockType::Q4K | BlockType::Q5K | BlockType::Q6K => {
                tile!(blocks_kvnni::dot_tile_k; 1, 2, 3, 4; 1, 2, 3, 4)
            }
        }
        return;
    }
    let mut res = [0f32; BLOCK_ROWS];
    for (j, wr) in w.chunks_exact(row_bytes).enumerate() {
        dot_blocks(t, level, wr, rows, &mut res[..rows.len()]);
        for (r, v) in res[..rows.len()].iter().enumerate() {
            // SAFETY: as promised by the caller.
            unsafe { *out.add(r * stride + j) = *v };
        }
    }
}

/// ggml's `hsum_float_8` order of additions.
fn hsum8(v: [f32; 8]) -> f32 {
    let q = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    let h = [q[0] + q[2], q[1] + q[3]];
    h[0] + h[1]
}

/// Blocks rounded up to whole groups of eight (the lanes the vector code touches).
fn lanes_touched(nbp: usize) -> usize {
    nbp.div_ceil(GROUP) * GROUP
}

/// The Q4_1 · Q8_1 dot product by the definition in the module docs.
pub fn scalar_q4_1(w: &[u8], a: &[u8]) -> f32 {
    let nbp = w.len() / 20;
    debug_assert_eq!(a.len(), nbp * Q8_BYTES);
    let mut acc = [0f32; 8];
    let mut summs = [0f32; 8];
    for b in 0..lanes_touched(nbp) {
        let (mut dd, mut m, mut s, mut p) = (0f32, 0f32, 0f32, 0i32);
        if b < nbp {
            dd = f16_at(w, nbp * 16 + 2 * b) * f32_at(a, nbp * QK + 4 * b);
            m = f16_at(w, nbp * 18 + 2 * b);
            s = f32_at(a, nbp * QK + nbp * 4 + 4 * b);
            for v in 0..QK {
                let (at, shift) = nibble_at(nbp, b, v);
                let q = (w[at] >> shift) & 0x0f;
                p += q as i32 * a[byte_code_at(nbp, b, v)] as i8 as i32;
            }
        }
        acc[b % 8] = dd.mul_add(p as f32, acc[b % 8]);
        summs[b % 8] = m.mul_add(s, summs[b % 8]);
    }
    hsum8(acc) + hsum8(summs)
}

/// The Q8_0 · Q8_0 dot product by the definition in the module docs.
pub fn scalar_q8_0(w: &[u8], a: &[u8]) -> f32 {
    let nbp = w.len() / 34;
    debug_assert_eq!(a.len(), nbp * Q8_BYTES);
    let mut acc = [0f32; 8];
    for b in 0..lanes_touched(nbp) {
        let (mut dd, mut p) = (0f32, 0i32);
        if b < nbp {
            dd = f16_at(w, nbp * 32 + 2 * b) * f32_at(a, nbp * QK + 4 * b);
            for v in 0..QK {
                let at = byte_code_at(nbp, b, v);
                p += (w[at] ^ 0x80) as i8 as i32 * a[at] as i8 as i32;
            }
            // The layout's offset sum agrees with the codes.
            debug_assert_eq!(
                i32_at(a, nbp * QK + 8 * nbp + 4 * b),
                128 * (0..QK)
                    .map(|v| a[byte_code_at(nbp, b, v)] as i8 as i32)
                    .sum::<i32>()
            );
        }
        acc[b % 8] = dd.mul_add(p as f32, acc[b % 8]);
    }
    hsum8(acc)
}
