//! The piecewise net's per-sample convolution forward: the model's own kernel (the same
//! `[C·K·K, OH·OW]` patch matrix, the same GEMM call, so the same rounding), with a patch copy
//! that makes no library calls.
//!
//! [`super::conv::im2col`] copies each output row of each patch row with `copy_from_slice` and
//! zero-fills its padded ends with `fill`: for a 3x3 convolution of 32 channels over 14x14 that
//! is ~4,000 `memmove` and ~8,000 `memset` calls of 0-14 values per sample, which integrated
//! gradients run 50 times per image (8 % of an IG-50 profile in `memmove`/`memset` alone).
//! [`im2col_blocks`] writes the same values in whole blocks of [`LANES`] values (fixed-size
//! moves the compiler keeps in registers). A block may run past the end of its output row: the
//! rows are written in order, and what spills into the next row is overwritten when that row is
//! written; `cols` and `x` carry [`SLACK`] values past their ends so that the last block stays in
//! bounds.

use gemm::Parallelism;

use super::blas::{matmul, Elem, Mat};
use super::conv::Geom;

/// Values per block copy.
pub(super) const LANES: usize = 16;

/// Values the patch matrix and the input buffer need past their ends for [`im2col_blocks`].
pub(super) const SLACK: usize = LANES;

/// `dst[at..at + len] = src[from..from + len]` in whole blocks (writing up to `LANES − 1` values
/// past `at + len`, reading as far past `from + len`).
#[inline(always)]
fn copy_blocks<T: Elem>(dst: &mut [T], at: usize, src: &[T], from: usize, len: usize) {
    let mut j = 0;
    while j < len {
        let d: &mut [T; LANES] = (&mut dst[at + j..at + j + LANES])
            .try_into()
            .expect("a whole block");
        *d = src[from + j..from + j + LANES]
            .try_into()
            .expect("a whole block");
        j += LANES;
    }
}

/// `dst[at..at + len] = 0` in whole blocks (writing up to `LANES − 1` zeros past `at + len`).
#[inline(always)]
fn zero_blocks<T: Elem>(dst: &mut [T], at: usize, len: usize) {
    let mut j = 0;
    while j < len {
        let d: &mut [T; LANES] = (&mut dst[at + j..at + j + LANES])
            .try_into()
            .expect("a whole block");
        *d = [T::ZERO; LANES];
        j += LANES;
    }
}

/// The patches of one image `x: [C, H, W]` into `cols: [C·K·K, OH·OW]`, the values of
/// [`super::conv::im2col`]. `x` holds at least `C·H·W + SLACK` values (those past `C·H·W` are
/// read and never used), `cols` at least `C·K·K·OH·OW + SLACK` (those past the matrix are
/// overwritten).
#[inline(always)]
pub(super) fn im2col_blocks<T: Elem>(g: &Geom, x: &[T], cols: &mut [T]) {
    let (ow, s, d) = (g.ow, g.stride, g.dilation);
    let l = g.oh * ow;
    assert!(
        x.len() >= g.c * g.h * g.w + SLACK && cols.len() >= g.c * g.k * g.k * l + SLACK,
        "im2col_blocks: buffers without slack"
    );
    for c in 0..g.c {
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = ((c * g.k + ky) * g.k + kx) * l;
                let off = (kx * d) as isize - g.padding as isize;
                // The output columns whose tap lands inside the row: lo..hi.
                let lo = if off < 0 {
                    ((-off + s as isize - 1) / s as isize) as usize
                } else {
                    0
                };
                let last = g.w as isize - 1 - off;
                let hi = if last < 0 {
                    0
                } else {
                    (last / s as isize + 1) as usize
                };
                let lo = lo.min(ow);
                let hi = hi.clamp(lo, ow);
                for oy in 0..g.oh {
                    let at = row + oy * ow;
                    let iy = (oy * s + ky * d) as isize - g.padding as isize;
                    if iy < 0 || iy >= g.h as isize {
                        zero_blocks(cols, at, ow);
                        continue;
                    }
                    let src = (c * g.h + iy as usize) * g.w;
                    // Order matters: each step may spill past its range into the next one's.
                    zero_blocks(cols, at, lo);
                    let start = (src as isize + (lo * s) as isize + off) as usize;
                    if s == 1 {
                        copy_blocks(cols, at + lo, x, start, hi - lo);
                    } else {
                        for (j, v) in cols[at + lo..at + hi].iter_mut().enumerate() {
                            *v = x[start + j * s];
                        }
                    }
                    zero_blocks(cols, at + hi, ow - hi);
                }
            }
        }
    }
}

/// `y = conv(x, w) + b` for one image, as [`super::conv::conv_image`] computes it (without its
/// ReLU), the patches through [`im2col_blocks`]: `x` and `cols` with [`SLACK`] (unless the
/// convolution is an identity 1x1, which reads `x` in place).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn conv_forward<T: Elem>(
    g: &Geom,
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    cols: &mut [T],
    y: &mut [T],
    par: Parallelism,
) {
    let (l, cog, gk) = (g.oh * g.ow, g.co / g.groups, g.gk());
    let src: &[T] = if g.identity() {
        &x[..g.c * g.h * g.w]
    } else {
        im2col_blocks(g, x, cols);
        cols
    };
    if let Some(b) = b {
        for (plane, &bo) in y.chunks_mut(l).zip(b) {
            plane.fill(bo);
        }
    }
    for grp in 0..g.groups {
        matmul(
            cog,
            l,
            gk,
            &mut y[grp * cog * l..],
            Mat::rows(&w[grp * cog * gk..], gk),
            Mat::rows(&src[grp * gk * l..], l),
            b.is_some(),
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv::{conv_image, im2col};
    use super::*;

    #[test]
    fn block_patches_and_the_convolution_equal_the_models_kernel_bit_for_bit() {
        // Rows shorter and longer than a block, padding wider than a block's spill, strides,
        // dilation, groups, and taps that miss the image entirely.
        for (c, h, w, co, k, s, p, d, groups) in [
            (1, 28, 28, 4, 3, 1, 1, 1, 1),
            (3, 14, 14, 4, 3, 1, 1, 1, 1),
            (2, 7, 9, 4, 5, 1, 2, 1, 2),
            (2, 9, 40, 3, 3, 2, 1, 1, 1),
            (2, 11, 10, 2, 3, 1, 3, 2, 1),
            (1, 4, 5, 2, 7, 1, 3, 1, 1),
            (4, 6, 6, 4, 1, 1, 0, 1, 2),
            (2, 5, 33, 2, 2, 3, 0, 1, 1),
        ] {
            let g = Geom::new(&[1, c, h, w], &[co, c / groups, k, k], s, p, d, groups).unwrap();
            let len = c * h * w;
            let mut x: Vec<f32> = (0..len)
                .map(|i| ((i * 37) % 29) as f32 / 7.0 - 2.0)
                .collect();
            // Slack values that must not leak into the patches.
            x.extend([f32::NAN; SLACK]);
            let rows = c * k * k * g.oh * g.ow;
            let mut want = vec![f32::NAN; rows];
            im2col(&g, &x[..len], &mut want);
            let mut got = vec![f32::NAN; rows + SLACK];
            im2col_blocks(&g, &x, &mut got);
            if !g.identity() {
                for (i, (a, b)) in got[..rows].iter().zip(&want).enumerate() {
                    assert!(a.to_bits() == b.to_bits(), "{g:?}: cols[{i}] {a} vs {b}");
                }
            }
            let wv: Vec<f32> = (0..co * (c / groups) * k * k)
                .map(|i| ((i * 13) % 17) as f32 / 5.0 - 1.5)
                .collect();
            let bias: Vec<f32> = (0..co).map(|o| o as f32 * 0.5 - 0.7).collect();
            for b in [None, Some(bias.as_slice())] {
                let out = co * g.oh * g.ow;
                let (mut y0, mut y1) = (vec![0f32; out], vec![0f32; out]);
                let mut cols = vec![0f32; rows + SLACK];
                let p = Parallelism::None;
                conv_image(&g, &x[..len], &wv, b, false, &mut cols, &mut y0, p);
                conv_forward(&g, &x, &wv, b, &mut cols, &mut y1, p);
                for (i, (a, b)) in y1.iter().zip(&y0).enumerate() {
                    assert!(a.to_bits() == b.to_bits(), "{g:?}: y[{i}] {a} vs {b}");
                }
            }
        }
    }
}
