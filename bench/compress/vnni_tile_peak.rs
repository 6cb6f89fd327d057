//! The int8 conv2 of the mnist CNN (196 positions × 288 codes × 64 channels per image) on the
//! VNNI tile shapes one could use: 6 rows × 4 ymm (ours, 32 channels per broadcast), 6 rows ×
//! 4 zmm (64 channels per broadcast) and 3 rows × 8 ymm; prints µs per image and GMAC/s.
//! Built and run by `bench/compress/vnni_tile_peak.sh` (std only, no crate).
use std::arch::x86_64::*;
use std::time::Instant;

const G: usize = 72;
const NP: usize = 64;
const ROWS: usize = 196;

type Tile = unsafe fn(&[u8], &[usize], &[i8], &mut [i32]);

/// 6 activation rows × 4 ymm accumulators (32 channels per broadcast), twice for the 64 channels.
///
/// # Safety
/// The CPU must have AVX2, AVX-512 F/BW/VL and VNNI. `w` must hold `G · NP · 4` codes, `src`
/// `G · 4` bytes from every offset in `rows` (whole tiles: `rows.len()` rounded up to the tile's
/// rows), and `out` `NP` values for each of those rows.
#[target_feature(enable = "avx2,avx512vnni,avx512vl,avx512f,avx512bw")]
unsafe fn ymm6x4(src: &[u8], rows: &[usize], w: &[i8], out: &mut [i32]) {
    unsafe {
        for c0 in (0..NP).step_by(32) {
            for t in rows.chunks(6) {
                let mut acc = [[_mm256_setzero_si256(); 4]; 6];
                let mut wp = w.as_ptr().add(c0 * 4);
                for i in 0..G {
                    let mut b = [_mm256_setzero_si256(); 4];
                    for v in 0..4 {
                        b[v] = _mm256_loadu_si256(wp.add(v * 32) as *const __m256i);
                    }
                    for r in 0..6 {
                        let a = _mm256_set1_epi32(std::ptr::read_unaligned(
                            src.as_ptr().add(t[r % t.len()] + 4 * i) as *const i32,
                        ));
                        for v in 0..4 {
                            acc[r][v] = _mm256_dpbusd_epi32(acc[r][v], a, b[v]);
                        }
                    }
                    wp = wp.add(NP * 4);
                }
                for r in 0..6 {
                    for v in 0..4 {
                        let o = out.as_mut_ptr().add(r * NP + c0 + v * 8);
                        _mm256_storeu_si256(o as *mut __m256i, acc[r][v]);
                    }
                }
            }
        }
    }
}

/// 6 activation rows × 4 zmm accumulators (all 64 channels per broadcast).
///
/// # Safety
/// The CPU must have AVX2, AVX-512 F/BW/VL and VNNI. `w` must hold `G · NP · 4` codes, `src`
/// `G · 4` bytes from every offset in `rows` (whole tiles: `rows.len()` rounded up to the tile's
/// rows), and `out` `NP` values for each of those rows.
#[target_feature(enable = "avx2,avx512vnni,avx512vl,avx512f,avx512bw")]
unsafe fn zmm6x4(src: &[u8], rows: &[usize], w: &[i8], out: &mut [i32]) {
    unsafe {
        for t in rows.chunks(6) {
            let mut acc = [[_mm512_setzero_si512(); 4]; 6];
            let mut wp = w.as_ptr();
            for i in 0..G {
                let mut b = [_mm512_setzero_si512(); 4];
                for v in 0..4 {
                    b[v] = _mm512_loadu_si512(wp.add(v * 64) as *const _);
                }
                for r in 0..6 {
                    let a = _mm512_set1_epi32(std::ptr::read_unaligned(
                        src.as_ptr().add(t[r % t.len()] + 4 * i) as *const i32,
                    ));
                    for v in 0..4 {
                        acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], a, b[v]);
                    }
                }
                wp = wp.add(NP * 4);
            }
            for r in 0..6 {
                for v in 0..4 {
                    _mm512_storeu_si512(out.as_mut_ptr().add(r * NP + v * 16) as *mut _, acc[r][v]);
                }
            }
        }
    }
}

/// 3 activation rows × 8 ymm accumulators (all 64 channels per broadcast).
///
/// # Safety
/// The CPU must have AVX2, AVX-512 F/BW/VL and VNNI. `w` must hold `G · NP · 4` codes, `src`
/// `G · 4` bytes from every offset in `rows` (whole tiles: `rows.len()` rounded up to the tile's
/// rows), and `out` `NP` values for each of those rows.
#[target_feature(enable = "avx2,avx512vnni,avx512vl,avx512f,avx512bw")]
unsafe fn ymm3x8(src: &[u8], rows: &[usize], w: &[i8], out: &mut [i32]) {
    unsafe {
        for t in rows.chunks(3) {
            let mut acc = [[_mm256_setzero_si256(); 8]; 3];
            let mut wp = w.as_ptr();
            for i in 0..G {
                let mut b = [_mm256_setzero_si256(); 8];
                for v in 0..8 {
                    b[v] = _mm256_loadu_si256(wp.add(v * 32) as *const __m256i);
                }
                for r in 0..3 {
                    let a = _mm256_set1_epi32(std::ptr::read_unaligned(
                        src.as_ptr().add(t[r % t.len()] + 4 * i) as *const i32,
                    ));
                    for v in 0..8 {
                        acc[r][v] = _mm256_dpbusd_epi32(acc[r][v], a, b[v]);
                    }
                }
                wp = wp.add(NP * 4);
            }
            for r in 0..3 {
                for v in 0..8 {
                    let o = out.as_mut_ptr().add(r * NP + v * 8);
                    _mm256_storeu_si256(o as *mut __m256i, acc[r][v]);
                }
            }
        }
    }
}

fn main() {
    assert!(
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni"),
        "this bench needs AVX-512 VNNI"
    );
    let src: Vec<u8> = (0..200_000).map(|i| (i * 7 % 251) as u8).collect();
    let rows: Vec<usize> = (0..ROWS)
        .map(|r| (r / 14) * 16 * 32 + (r % 14) * 32)
        .collect();
    let w: Vec<i8> = (0..G * NP * 4).map(|i| ((i * 13) % 255) as i8).collect();
    let mut out = vec![0i32; 256 * NP];
    let tiles: [(&str, Tile); 3] = [
        ("ymm 6x4", ymm6x4),
        ("zmm 6x4", zmm6x4),
        ("ymm 3x8", ymm3x8),
    ];
    let mut best = [f64::MAX; 3];
    for _ in 0..5 {
        for (b, (_, f)) in best.iter_mut().zip(&tiles) {
            let t = Instant::now();
            for _ in 0..2000 {
                // SAFETY: the CPU has the features (asserted); every read is inside `src`/`w`.
                unsafe { f(&src, &rows, &w, &mut out) };
                std::hint::black_box(&out);
            }
            *b = b.min(t.elapsed().as_secs_f64() / 2000.0);
        }
    }
    let macs = (ROWS * G * 4 * NP) as f64;
    for ((name, _), s) in tiles.iter().zip(best) {
        println!(
            "{name}: {:.1} us per image's conv2, {:.0} GMAC/s",
            s * 1e6,
            macs / s / 1e9
        );
    }
}
