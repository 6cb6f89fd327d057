//! The key/value cache of one sequence, allocated once for its whole length.

use crate::{Error, Result};

/// Keys and values of every layer for positions `0..len`, room for `capacity` positions.
///
/// Layout: `[layer][kv_head][position][head_dim]`, so one head's keys are contiguous for attention.
/// Entries are f16 (as llama.cpp's default cache): the decoder rounds keys and values to f16 before
/// storing them, so the cache holds them exactly in half the memory.
/// The buffers are allocated when the sequence is admitted (prompt + max_tokens positions) and never
/// grow; appending past the capacity is an error, not a reallocation.
#[derive(Debug)]
pub struct KvCache {
    k: Vec<u16>,
    v: Vec<u16>,
    num_kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
}

impl KvCache {
    pub fn new(num_layers: usize, num_kv_heads: usize, head_dim: usize, capacity: usize) -> Self {
        let n = num_layers * num_kv_heads * capacity * head_dim;
        Self {
            k: vec![0; n],
            v: vec![0; n],
            num_kv_heads,
            head_dim,
            capacity,
            len: 0,
        }
    }

    /// Positions filled so far.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Positions this cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Bytes held by the buffers.
    pub fn bytes(&self) -> usize {
        (self.k.len() + self.v.len()) * 2
    }

    pub(crate) fn check_room(&self, new: usize) -> Result<()> {
        if self.len + new > self.capacity {
            return Err(Error::InvalidRequest {
                field: "max_tokens",
                message: format!(
                    "the sequence needs {} positions but its KV cache holds {}",
                    self.len + new,
                    self.capacity
                ),
            });
        }
        Ok(())
    }

    fn offset(&self, layer: usize, head: usize, pos: usize) -> usize {
        ((layer * self.num_kv_heads + head) * self.capacity + pos) * self.head_dim
    }

    /// Store the keys and values (`num_kv_heads × head_dim` each, f16 values) of position `pos`
    /// in `layer`.
    pub(crate) fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let d = self.head_dim;
        for h in 0..self.num_kv_heads {
            let o = self.offset(layer, h, pos);
            super::ops::to_f16_bits(&k[h * d..(h + 1) * d], &mut self.k[o..o + d]);
            super::ops::to_f16_bits(&v[h * d..(h + 1) * d], &mut self.v[o..o + d]);
        }
    }

    /// Keys and values of `head` in `layer`, positions `0..capacity` (callers slice to what they use).
    pub(crate) fn head(&self, layer: usize, head: usize) -> (&[u16], &[u16]) {
        let o = self.offset(layer, head, 0);
        let n = self.capacity * self.head_dim;
        (&self.k[o..o + n], &self.v[o..o + n])
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
