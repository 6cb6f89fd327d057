//! The key/value cache of one sequence: room for `capacity` positions, grown on demand.

use crate::{Error, Result};

/// Keys and values of every layer for positions `0..len`, room for `capacity` positions.
///
/// Layout: `[layer][kv_head][position][head_dim]`, so one head's keys are contiguous for attention.
/// Entries are f16 (as llama.cpp's default cache): the decoder rounds keys and values to f16 before
/// storing them, so the cache holds them exactly in half the memory.
/// Appending past the capacity is an error, not a reallocation: the owner (the engine's scheduler,
/// which accounts for every position against its KV budget) grows the cache explicitly with
/// [`KvCache::grow`] before a step that needs more room.
#[derive(Debug)]
pub struct KvCache {
    k: Vec<u16>,
    v: Vec<u16>,
    num_layers: usize,
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
            num_layers,
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
            crate::llama::ops::to_f16_bits(&k[h * d..(h + 1) * d], &mut self.k[o..o + d]);
            crate::llama::ops::to_f16_bits(&v[h * d..(h + 1) * d], &mut self.v[o..o + d]);
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

    /// Fill this empty cache with the first `n` positions of `source` (a cache of the same model):
    /// every layer's keys and values, one contiguous copy per (layer, KV head).
    pub fn copy_prefix_from(&mut self, source: &KvCache, n: usize) -> Result<()> {
        let fail = |message: String| Error::InvalidRequest {
            field: "prompt",
            message: format!("copying a KV-cache prefix: {message}"),
        };
        if (self.num_layers, self.num_kv_heads, self.head_dim)
            != (source.num_layers, source.num_kv_heads, source.head_dim)
        {
            return Err(fail(format!(
                "the caches have different shapes (layers, KV heads, head dim) {:?} and {:?}",
                (self.num_layers, self.num_kv_heads, self.head_dim),
                (source.num_layers, source.num_kv_heads, source.head_dim)
            )));
        }
        if !self.is_empty() {
            return Err(fail(format!(
                "the target already holds {} positions",
                self.len
            )));
        }
        if n > source.len || n > self.capacity {
            return Err(fail(format!(
                "{n} positions asked, the source holds {} and the target has room for {}",
                source.len, self.capacity
            )));
        }
        let m = n * self.head_dim;
        for layer in 0..self.num_layers {
            for head in 0..self.num_kv_heads {
                let (from, to) = (source.offset(layer, head, 0), self.offset(layer, head, 0));
                self.k[to..to + m].copy_from_slice(&source.k[from..from + m]);
                self.v[to..to + m].copy_from_slice(&source.v[from..from + m]);
            }
        }
        self.len = n;
        Ok(())
    }

    /// Make room for `capacity` positions (at least the current capacity), keeping the filled ones:
    /// one contiguous copy per (layer, KV head) into the new layout. The entries are moved exactly,
    /// so attention over a grown cache gives bit-identical results.
    pub fn grow(&mut self, capacity: usize) {
        if capacity <= self.capacity {
            return;
        }
        let mut grown = KvCache::new(self.num_layers, self.num_kv_heads, self.head_dim, capacity);
        let m = self.len * self.head_dim;
        for layer in 0..self.num_layers {
            for head in 0..self.num_kv_heads {
                let (from, to) = (self.offset(layer, head, 0), grown.offset(layer, head, 0));
                grown.k[to..to + m].copy_from_slice(&self.k[from..from + m]);
                grown.v[to..to + m].copy_from_slice(&self.v[from..from + m]);
            }
        }
        grown.len = self.len;
        *self = grown;
    }

    /// A compact copy of the first `n` positions (capacity `n`), e.g. to keep a prefix for reuse.
    pub fn snapshot(&self, n: usize) -> Result<KvCache> {
        let mut c = KvCache::new(self.num_layers, self.num_kv_heads, self.head_dim, n);
        c.copy_prefix_from(self, n)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache whose entries encode (layer, head, position, dim, key or value), `len` positions filled.
    fn filled(capacity: usize, len: usize) -> KvCache {
        let (layers, heads, d) = (3, 2, 4);
        let mut c = KvCache::new(layers, heads, d, capacity);
        for layer in 0..layers {
            for pos in 0..len {
                let code = |kv: usize, h: usize, i: usize| {
                    (kv * 10_000 + layer * 1000 + h * 100 + pos * 10 + i) as f32
                };
                let k: Vec<f32> = (0..heads * d).map(|j| code(0, j / d, j % d)).collect();
                let v: Vec<f32> = (0..heads * d).map(|j| code(1, j / d, j % d)).collect();
                c.store(layer, pos, &k, &v);
            }
        }
        c.advance(len);
        c
    }

    #[test]
    fn copied_prefix_equals_the_source_positions() {
        let src = filled(9, 7);
        let mut dst = KvCache::new(3, 2, 4, 12);
        dst.copy_prefix_from(&src, 5).unwrap();
        assert_eq!(dst.len(), 5);
        for layer in 0..3 {
            for head in 0..2 {
                let ((sk, sv), (dk, dv)) = (src.head(layer, head), dst.head(layer, head));
                assert_eq!(&dk[..5 * 4], &sk[..5 * 4]);
                assert_eq!(&dv[..5 * 4], &sv[..5 * 4]);
                assert!(dk[5 * 4..].iter().chain(&dv[5 * 4..]).all(|&x| x == 0));
                assert_ne!(sk[..20], sv[..20]);
            }
        }
        let snap = src.snapshot(7).unwrap();
        assert_eq!((snap.len(), snap.capacity()), (7, 7));
        for layer in 0..3 {
            for head in 0..2 {
                assert_eq!(snap.head(layer, head), {
                    let (k, v) = src.head(layer, head);
                    (&k[..28], &v[..28])
                });
            }
        }
    }

    #[test]
    fn grown_cache_keeps_every_entry() {
        let mut c = filled(7, 5);
        let before: Vec<(Vec<u16>, Vec<u16>)> = (0..3)
            .flat_map(|l| (0..2).map(move |h| (l, h)))
            .map(|(l, h)| {
                let (k, v) = c.head(l, h);
                (k[..20].to_vec(), v[..20].to_vec())
            })
            .collect();
        c.grow(16);
        assert_eq!((c.len(), c.capacity()), (5, 16));
        let mut i = 0;
        for layer in 0..3 {
            for head in 0..2 {
                let (k, v) = c.head(layer, head);
                assert_eq!((&k[..20], &v[..20]), (&before[i].0[..], &before[i].1[..]));
                assert!(k[20..].iter().chain(&v[20..]).all(|&x| x == 0));
                i += 1;
            }
        }
        c.check_room(11).unwrap();
        assert!(c.check_room(12).is_err());
        // Shrinking is not growing: nothing changes.
        c.grow(3);
        assert_eq!(c.capacity(), 16);
    }

    #[test]
    fn copy_refuses_mismatches() {
        let src = filled(9, 7);
        // More positions than the source holds or the target has room for.
        assert!(KvCache::new(3, 2, 4, 12).copy_prefix_from(&src, 8).is_err());
        assert!(KvCache::new(3, 2, 4, 4).copy_prefix_from(&src, 5).is_err());
        // Another model's shape.
        let err = KvCache::new(3, 1, 8, 12)
            .copy_prefix_from(&src, 2)
            .unwrap_err();
        assert!(err.to_string().contains("shapes"), "{err}");
        // A target that is not empty.
        let mut dst = filled(9, 1);
        assert!(dst.copy_prefix_from(&src, 2).is_err());
    }
}
