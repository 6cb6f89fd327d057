//! A bounds-checked wrapper around the `gemm` crate for row/column-strided slices, and the element
//! trait the kernels are generic over (f32 for training, f64 for gradient checks).

use ::gemm::Parallelism;

/// The floating-point types the kernels support.
pub trait Elem:
    Copy
    + Default
    + Send
    + Sync
    + PartialOrd
    + 'static
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::AddAssign
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    /// `self · a + b` with one rounding (an FMA instruction where the code is compiled with FMA).
    fn mul_add(self, a: Self, b: Self) -> Self;
}

impl Elem for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
}

impl Elem for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
}

/// A read-only matrix view: element (i, j) is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn rows_t(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }

    fn fits(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len()
    }
}

/// `dst[m×n] (row-major) = (accumulate ? dst : 0) + lhs[m×k] · rhs[k×n]`.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    lhs: Mat<T>,
    rhs: Mat<T>,
    accumulate: bool,
    par: Parallelism,
) {
    assert!(
        dst.len() >= m * n && lhs.fits(m, k) && rhs.fits(k, n),
        "matmul: slices too short for {m}x{k} · {k}x{n}"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::ZERO);
        }
        return;
    }
    // SAFETY: every index touched, (i·rs + j·cs) for i < rows and j < cols, is inside the slice
    // (checked above); `dst` is exclusively borrowed and does not alias the inputs.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            par,
        )
    }
}

/// Parallelism for a GEMM called `calls` times in parallel: inner threads only when the outer
/// loop cannot keep every thread busy.
pub fn inner_parallelism(calls: usize) -> Parallelism {
    if calls >= rayon::current_num_threads() {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_views_and_accumulation() {
        // lhs 2x3, rhs given as the transpose of a row-major 2x3 (so 3x2).
        let a = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0f64, 0.0, -1.0, 2.0, 1.0, 0.0];
        let mut d = [1.0f64; 4];
        matmul(
            2,
            2,
            3,
            &mut d,
            Mat::rows(&a, 3),
            Mat::rows_t(&b, 3),
            true,
            Parallelism::None,
        );
        // a · bᵀ = [[1-3, 2+2], [4-6, 8+5]] = [[-2, 4], [-2, 13]], plus 1.
        assert_eq!(d, [-1.0, 5.0, -1.0, 14.0]);
    }
}
