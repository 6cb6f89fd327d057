//! Output buffers written chunk by chunk in parallel.
//!
//! `vec![0.0; n]` zero-fills the whole buffer on the calling thread before the parallel pass
//! overwrites it: several MB per training step (6 % of a LeNet step in `memset`), all of it
//! evicted from cache again by the time a worker writes its chunk. Here each worker zeroes its own
//! chunk right before filling it, while the chunk is in its cache.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// A vector of `len` elements, cut into chunks of `chunk` (the last may be shorter); every chunk
/// is zero-filled (`T::default()`) and then handed to `fill(state, index, chunk)` on a rayon
/// worker, with `state` from `init` once per worker task (as `for_each_init`), and at least
/// `min_len` chunks per task.
pub(crate) fn par_chunks_init<T, S, I, F>(
    len: usize,
    chunk: usize,
    min_len: usize,
    init: I,
    fill: F,
) -> Vec<T>
where
    T: Copy + Default + Send + Sync,
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, usize, &mut [T]) + Sync + Send,
{
    let mut v: Vec<T> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .with_min_len(min_len.max(1))
        .enumerate()
        .for_each_init(init, |state, (i, c)| {
            for x in c.iter_mut() {
                x.write(T::default());
            }
            // SAFETY: every element of `c` was written just above, and `MaybeUninit<T>` has the
            // layout of `T`.
            let c = unsafe { &mut *(c as *mut [MaybeUninit<T>] as *mut [T]) };
            fill(state, i, c);
        });
    // SAFETY: the chunks cover `0..len` and each one was initialised above; a panic in `fill`
    // propagates out of `for_each_init` before this line, leaving the vector empty.
    unsafe { v.set_len(len) };
    v
}

/// [`par_chunks_init`] without per-task state.
pub(crate) fn par_chunks<T, F>(len: usize, chunk: usize, min_len: usize, fill: F) -> Vec<T>
where
    T: Copy + Default + Send + Sync,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    par_chunks_init(len, chunk, min_len, || (), |_, i, c| fill(i, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_starts_zeroed_and_is_filled_in_place() {
        // 10 elements in chunks of 3: the last chunk is short; `fill` only touches some elements,
        // the rest must read as zero.
        let v: Vec<u32> = par_chunks(10, 3, 1, |i, c| {
            assert!(c.iter().all(|&x| x == 0));
            c[0] = i as u32 + 1;
        });
        assert_eq!(v, [1, 0, 0, 2, 0, 0, 3, 0, 0, 4]);
        let empty: Vec<f32> = par_chunks(0, 4, 1, |_, _| unreachable!());
        assert!(empty.is_empty());
    }

    #[test]
    fn state_is_per_task_and_reused() {
        let v: Vec<usize> = par_chunks_init(
            64,
            1,
            8,
            || 0usize,
            |seen, _, c| {
                *seen += 1;
                c[0] = *seen;
            },
        );
        // With at least 8 chunks per task, each task's counter runs 1, 2, ... 8 at least.
        assert!(v.iter().any(|&s| s >= 8), "{v:?}");
    }
}
