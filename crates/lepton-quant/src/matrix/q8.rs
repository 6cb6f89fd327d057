//! Q4_1 and Q8_0 weights against activation rows already quantized to the kernel layout: output
//! columns split over the team, each part on the row-group tiles (`kernels::dot`) or, for
//! training shapes (at least `GEMM_MIN_ROWS` rows with AVX512-VNNI), on the register-tiled GEMM.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{QMatrix, QType, SendPtr};
use crate::kernels::{self, Kind, MAX_ROWS};
use crate::layout::{padded_blocks, Q8_BYTES};
use crate::pool::Pool;

#[cfg(target_arch = "x86_64")]
use crate::kernels::gemm_x86::GEMM_MIN_ROWS;
/// No GEMM off x86-64 (its kernels need AVX512-VNNI).
#[cfg(not(target_arch = "x86_64"))]
const GEMM_MIN_ROWS: usize = usize::MAX;

impl QMatrix {
    /// `out[r · stride + offset + j] = W[j] · a[r]` for `m` activation rows `a` already quantized
    /// to the kernel layout ([`layout::quantize_row_q8_1`], or any quantizer writing the same
    /// layout: `padded_blocks(cols) · Q8_BYTES` bytes per row). Q4_1 and Q8_0 weights only.
    ///
    /// `gemm`: at least `GEMM_MIN_ROWS` rows run on the training-shape GEMM when the CPU has
    /// AVX512-VNNI.
    ///
    /// # Safety
    /// `out` must be valid for writes of `m` rows of `stride` elements, `offset + rows ≤ stride`,
    /// and no other thread may access them during the call.
    pub(super) unsafe fn matmul_q8_path(
        &self,
        a: &[u8],
        m: usize,
        out: *mut f32,
        stride: usize,
        offset: usize,
        gemm: bool,
    ) {
        assert!(matches!(self.qtype, QType::Q4_1 | QType::Q8_0));
        assert_eq!(
            a.len(),
            m * padded_blocks(self.cols) * Q8_BYTES,
            "activation bytes"
        );
        let level = kernels::Level::detect();
        let gemm = gemm && level == kernels::Level::Vnni && m >= GEMM_MIN_ROWS;
        let n = self.rows;
        let out_ptr = SendPtr(out);
        let pool = Pool::global();
        let parts = pool.threads();
        // Several rows (batched decoding, prefill): chunks of columns taken from a shared counter,
        // so a thread that starts late or is preempted does less. One row: a fixed half each
        // (the counter's cache-line traffic costs more than it saves there).
        let chunk = if m >= 4 {
            (n / (parts * 8)).max(16).next_multiple_of(4)
        } else {
            n.div_ceil(parts).next_multiple_of(4)
        };
        let next = AtomicUsize::new(0);
        pool.run(&|part| {
            let out_ptr = &out_ptr;
            let mut c = if m >= 4 {
                next.fetch_add(1, Ordering::Relaxed)
            } else {
                part
            };
            while c * chunk < n {
                let cols = c * chunk..((c + 1) * chunk).min(n);
                // SAFETY: each chunk of columns is taken by one part only; `out` as promised;
                // `gemm` only with AVX512-VNNI (checked above).
                unsafe {
                    if gemm {
                        self.gemm_cols(a, m, cols, out_ptr, stride, offset)
                    } else {
                        self.tiled_cols(level, a, m, cols, out_ptr, stride, offset)
                    }
                };
                if m < 4 {
                    return;
                }
                c = next.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    /// As [`QMatrix::matmul_q8_path`], every column on the calling thread (callers that split rows
    /// over their own threads: no team hand-off per call).
    ///
    /// # Safety
    /// As [`QMatrix::matmul_q8_path`].
    pub(crate) unsafe fn matmul_q8_serial(
        &self,
        a: &[u8],
        m: usize,
        out: *mut f32,
        stride: usize,
        offset: usize,
    ) {
        assert!(matches!(self.qtype, QType::Q4_1 | QType::Q8_0));
        assert_eq!(
            a.len(),
            m * padded_blocks(self.cols) * Q8_BYTES,
            "activation bytes"
        );
        let level = kernels::Level::detect();
        let out = SendPtr(out);
        // SAFETY: as promised by the caller; all columns, one thread.
        unsafe { self.tiled_cols(level, a, m, 0..self.rows, &out, stride, offset) };
    }

    /// Columns `cols` of a quantized matmul, in tiles of weight rows × activation rows.
    ///
    /// # Safety
    /// `out` must be valid for the elements `(r, offset + j)`, `j` in `cols`, and no other thread
    /// may write them.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tiled_cols(
        &self,
        level: kernels::Level,
        a: &[u8],
        m: usize,
        cols: std::ops::Range<usize>,
        out: &SendPtr,
        stride: usize,
        offset: usize,
    ) {
        // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
        // pointer ranges), which is what every unsafe operation below relies on.
        unsafe {
            let len = padded_blocks(self.cols) * Q8_BYTES;
            let rb = self.row_bytes();
            let kind = match self.qtype {
                QType::Q4_1 => Kind::Q4_1,
                _ => Kind::Q8_0,
            };
            let w = &self.data[cols.start * rb..cols.end * rb];
            let mut r0 = 0;
            while r0 < m {
                let g = (m - r0).min(MAX_ROWS);
                let rows: [&[u8]; MAX_ROWS] = std::array::from_fn(|i| {
                    let r = r0 + i.min(g - 1);
                    &a[r * len..(r + 1) * len]
                });
                let at = out.0.add(r0 * stride + offset + cols.start);
                kernels::dot(kind, level, w, rb, &rows[..g], at, stride);
                r0 += g;
            }
        }
    }

    /// Columns `cols` of a quantized matmul on the training-shape GEMM.
    ///
    /// # Safety
    /// As [`QMatrix::tiled_cols`], and the CPU must have AVX512-VNNI (`Level::Vnni`).
    #[cfg(target_arch = "x86_64")]
    unsafe fn gemm_cols(
        &self,
        a: &[u8],
        m: usize,
        cols: std::ops::Range<usize>,
        out: &SendPtr,
        stride: usize,
        offset: usize,
    ) {
        let len = padded_blocks(self.cols) * Q8_BYTES;
        let rb = self.row_bytes();
        let kind = match self.qtype {
            QType::Q4_1 => Kind::Q4_1,
            _ => Kind::Q8_0,
        };
        let rows: Vec<*const u8> = (0..m).map(|r| a[r * len..].as_ptr()).collect();
        // SAFETY: as promised by the caller; the rows are `m` whole activation rows of `a`.
        unsafe {
            kernels::gemm_x86::gemm(
                kind,
                &self.data[cols.start * rb..cols.end * rb],
                rb,
                &rows,
                out.0.add(offset + cols.start),
                stride,
            )
        }
    }

    /// Not reached: `gemm` needs `Level::Vnni`, which only x86-64 detects.
    ///
    /// # Safety
    /// None needed; it panics.
    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn gemm_cols(
        &self,
        _: &[u8],
        _: usize,
        _: std::ops::Range<usize>,
        _: &SendPtr,
        _: usize,
        _: usize,
    ) {
        unreachable!("the GEMM needs AVX512-VNNI")
    }
}
