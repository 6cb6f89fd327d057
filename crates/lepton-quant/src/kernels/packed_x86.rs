//! AVX-512 VNNI (256-bit) and AVX2 tiles of [`crate::packed_i8::PackedI8::products`]: `MR`
//! activation rows × `NV` vectors of 8 output channels, kept in registers over the whole
//! reduction. Per group of 4 reduction steps: `NV` weight loads, one broadcast of 4 activation
//! bytes per row, and `MR · NV` multiply-accumulates (`vpdpbusd`, or sign + `vpmaddubsw` +
//! `vpmaddwd` + add on AVX2). Both give the exact integer sums of the scalar loop.

use std::arch::x86_64::*;

use super::x86::dpbusd;

/// Rows × vectors of the VNNI tile (24 accumulators of the 32 registers).
const VNNI_TILE: (usize, usize) = (6, 4);
/// Rows × vectors of the AVX2 tile (8 accumulators of the 16 registers).
const AVX2_TILE: (usize, usize) = (4, 2);

/// The packed weights: codes, `|codes|`, channel sums, padded channel count.
pub type Weights<'a> = (&'a [i8], &'a [u8], &'a [i32], usize);

/// Every row of `rows` times every channel tile; see `PackedI8::products`.
///
/// # Safety
/// The CPU must have AVX2, and AVX512-VNNI + AVX512-VL when `vnni`. Every read
/// `src[rows[r] + segs[s] + 4 i .. + 4]` (`i < g`) must be in bounds, the weights must hold
/// `segs.len() · g` groups of `np` channels, and `out` at least `rows.len() · np` values.
pub unsafe fn products(
    vnni: bool,
    src: &[u8],
    rows: &[usize],
    segs: &[usize],
    g: usize,
    w: Weights,
    out: &mut [i32],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        if vnni {
            drive::<true>(VNNI_TILE.1, src, rows, segs, g, w, out)
        } else {
            drive::<false>(AVX2_TILE.1, src, rows, segs, g, w, out)
        }
    }
}

/// # Safety
/// As [`products`].
#[inline(always)]
unsafe fn drive<const VNNI: bool>(
    nv: usize,
    src: &[u8],
    rows: &[usize],
    segs: &[usize],
    g: usize,
    (w, wabs, wsum, np): Weights,
    out: &mut [i32],
) {
    let mr = if VNNI { VNNI_TILE.0 } else { AVX2_TILE.0 };
    let src = src.as_ptr();
    for c0 in (0..np).step_by(nv * 8) {
        let wt = (
            w[c0 * 4..].as_ptr(),
            wabs[c0 * 4..].as_ptr(),
            wsum[c0..].as_ptr(),
        );
        for (t, tile) in rows.chunks(mr).enumerate() {
            let o = out[t * mr * np + c0..].as_mut_ptr();
            // SAFETY: as promised by the caller; `o` is row `t · mr`, channel `c0` of `out`.
            unsafe {
                macro_rules! go {
                    ($($m:literal)*) => {
                        match tile.len() {
                            $($m => if VNNI {
                                tile_vnni::<$m>(src, tile, segs, g, wt, np, o)
                            } else {
                                tile_avx2::<$m>(src, tile, segs, g, wt, np, o)
                            },)*
                            _ => unreachable!(),
                        }
                    };
                }
                go!(1 2 3 4 5 6)
            }
        }
    }
}

type Tile = (*const i8, *const u8, *const i32);

/// One `M × 4` tile of vectors with `vpdpbusd` (u8 × i8), corrected by `128 · Σw` at the store.
///
/// # Safety
/// AVX2, AVX512-VNNI and AVX512-VL; reads and writes as [`products`] promises.
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
unsafe fn tile_vnni<const M: usize>(
    src: *const u8,
    rows: &[usize],
    segs: &[usize],
    g: usize,
    (w, _, wsum): Tile,
    np: usize,
    out: *mut i32,
) {
    const NV: usize = VNNI_TILE.1;
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let mut acc = [[_mm256_setzero_si256(); NV]; M];
        let mut base = [src; M];
        for (b, &r) in base.iter_mut().zip(rows) {
            *b = src.add(r);
        }
        let mut wp = w;
        for &s in segs {
            for i in 0..g {
                let mut b = [_mm256_setzero_si256(); NV];
                for (v, b) in b.iter_mut().enumerate() {
                    *b = _mm256_loadu_si256(wp.add(v * 32) as *const __m256i);
                }
                for r in 0..M {
                    let a = _mm256_set1_epi32(std::ptr::read_unaligned(
                        base[r].add(s + 4 * i) as *const i32
                    ));
                    for v in 0..NV {
                        acc[r][v] = dpbusd(acc[r][v], a, b[v]);
                    }
                }
                wp = wp.add(np * 4);
            }
        }
        for v in 0..NV {
            let corr =
                _mm256_slli_epi32::<7>(_mm256_loadu_si256(wsum.add(v * 8) as *const __m256i));
            for (r, acc) in acc.iter().enumerate() {
                _mm256_storeu_si256(
                    out.add(r * np + v * 8) as *mut __m256i,
                    _mm256_sub_epi32(acc[v], corr),
                );
            }
        }
    }
}

/// One `M × 2` tile of vectors with the AVX2 sign trick on the signed codes `u ⊕ 0x80`.
///
/// # Safety
/// AVX2; reads and writes as [`products`] promises.
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2<const M: usize>(
    src: *const u8,
    rows: &[usize],
    segs: &[usize],
    g: usize,
    (w, wabs, _): Tile,
    np: usize,
    out: *mut i32,
) {
    const NV: usize = AVX2_TILE.1;
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let flip = _mm256_set1_epi8(-128);
        let mut acc = [[_mm256_setzero_si256(); NV]; M];
        let mut base = [src; M];
        for (b, &r) in base.iter_mut().zip(rows) {
            *b = src.add(r);
        }
        let (mut wp, mut ap) = (w, wabs);
        for &s in segs {
            for i in 0..g {
                let mut b = [_mm256_setzero_si256(); NV];
                let mut babs = [_mm256_setzero_si256(); NV];
                for v in 0..NV {
                    b[v] = _mm256_loadu_si256(wp.add(v * 32) as *const __m256i);
                    babs[v] = _mm256_loadu_si256(ap.add(v * 32) as *const __m256i);
                }
                for r in 0..M {
                    let a = _mm256_xor_si256(
                        _mm256_set1_epi32(std::ptr::read_unaligned(
                            base[r].add(s + 4 * i) as *const i32
                        )),
                        flip,
                    );
                    for v in 0..NV {
                        let p = _mm256_maddubs_epi16(babs[v], _mm256_sign_epi8(a, b[v]));
                        acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(p, ones));
                    }
                }
                wp = wp.add(np * 4);
                ap = ap.add(np * 4);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                _mm256_storeu_si256(out.add(r * np + v * 8) as *mut __m256i, *acc);
            }
        }
    }
}
