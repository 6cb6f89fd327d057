//! The key/value cache of one sequence: room for `capacity` positions, grown on demand; layers
//! with a sliding window keep only their last positions, in a ring.
//!
//! # Sliding-window layers
//! A layer whose queries see only the last `w` positions (Gemma 2/3's local layers) keeps, once the
//! capacity exceeds `4w`, a ring of `S = 2w` positions instead of `capacity`: position `p` lives in slot
//! `p mod S`, written twice (rows `p mod S` and `p mod S + S` of a doubled buffer), so that any
//! run of at most `S` consecutive positions is one contiguous slice and attention reads it
//! exactly as from a full cache (same keys, same order: bit-identical results). A forward pass
//! stores all its new positions before attending, so one pass of a sequence may add at most
//! [`KvCache::max_step`] positions (`S − w + 1`; the decoder splits longer prompts into such
//! chunks, which gives the same bits: every row is computed alone).
//! Memory per local layer: `4w` positions instead of the whole context.

use crate::{Error, Result};

/// Keys and values of every layer for positions `0..len` (the last ones only on sliding-window
/// layers), room for `capacity` positions.
///
/// Layout per layer: `[kv_head][row][head_dim]` (`capacity` rows, or `2S` on a ring layer), so
/// one head's keys are contiguous for attention.
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
    /// The window of each layer that sees only its last positions (`None`: every position).
    windows: Vec<Option<usize>>,
    /// First row of each layer (rows of all KV heads before it).
    base: Vec<usize>,
    /// Positions before this one were never copied into the window layers (a prefix copied from
    /// a ring): they hold nothing to read.
    window_from: usize,
}

impl KvCache {
    /// A cache that keeps every position on every layer.
    pub fn new(num_layers: usize, num_kv_heads: usize, head_dim: usize, capacity: usize) -> Self {
        Self::with_windows(num_kv_heads, head_dim, capacity, vec![None; num_layers])
    }

    /// A cache whose layer `l` keeps only its last positions when `windows[l]` is `Some(w)` (a
    /// ring of `2w` positions once `capacity > 4w`; `w ≥ 1`).
    pub fn with_windows(
        num_kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        windows: Vec<Option<usize>>,
    ) -> Self {
        let windows: Vec<Option<usize>> =
            windows.into_iter().map(|w| w.map(|w| w.max(1))).collect();
        let mut base = Vec::with_capacity(windows.len());
        let mut rows = 0;
        for &w in &windows {
            base.push(rows);
            rows += Self::rows_for(w, capacity) * num_kv_heads;
        }
        let n = rows * head_dim;
        Self {
            k: vec![0; n],
            v: vec![0; n],
            num_layers: windows.len(),
            num_kv_heads,
            head_dim,
            capacity,
            len: 0,
            windows,
            base,
            window_from: 0,
        }
    }

    /// Ring slots of a layer with window `w` in a cache of `capacity`: `2w`, or 0 (every position
    /// kept) while the doubled ring would not be smaller than the capacity.
    fn slots_for(w: Option<usize>, capacity: usize) -> usize {
        match w {
            Some(w) if capacity > 4 * w => 2 * w,
            _ => 0,
        }
    }

    /// Rows per KV head of a layer: `capacity`, or twice the ring's slots.
    fn rows_for(w: Option<usize>, capacity: usize) -> usize {
        match Self::slots_for(w, capacity) {
            0 => capacity,
            slots => 2 * slots,
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
    /// Bytes a cache with these layers' windows takes at `capacity` positions.
    pub fn bytes_at(&self, capacity: usize) -> usize {
        let rows: usize = self
            .windows
            .iter()
            .map(|&w| Self::rows_for(w, capacity))
            .sum();
        2 * 2 * rows * self.num_kv_heads * self.head_dim
    }
    /// Whether some layer keeps only a window of positions.
    pub fn has_windows(&self) -> bool {
        self.windows.iter().any(Option::is_some)
    }

    /// Most new positions one forward pass of this sequence may store: a ring of `S` slots with
    /// window `w` keeps the `w − 1` older positions the pass's first query needs while it adds
    /// `S − w + 1` (unbounded without rings, or while a ring cannot wrap).
    pub fn max_step(&self) -> usize {
        self.windows
            .iter()
            .filter_map(|&w| match Self::slots_for(w, self.capacity) {
                0 => None,
                s => Some(s + 1 - w?),
            })
            .min()
            .unwrap_or(usize::MAX)
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

    /// Offset of `row` of `head` in `layer`.
    fn offset(&self, layer: usize, head: usize, row: usize) -> usize {
        let rows = Self::rows_for(self.windows[layer], self.capacity);
        (self.base[layer] + head * rows + row) * self.head_dim
    }

    /// The first position `layer` still holds.
    fn held_from(&self, layer: usize) -> usize {
        if self.windows[layer].is_none() {
            return 0;
        }
        match Self::slots_for(self.windows[layer], self.capacity) {
            0 => self.window_from,
            slots => self.len.saturating_sub(slots).max(self.window_from),
        }
    }

    /// Store the keys and values (`num_kv_heads × head_dim` each, f16 values) of position `pos`
    /// in `layer`.
    pub(crate) fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let d = self.head_dim;
        let slots = Self::slots_for(self.windows[layer], self.capacity);
        for h in 0..self.num_kv_heads {
            let rows: &[usize] = if slots == 0 {
                &[pos]
            } else {
                &[pos % slots, pos % slots + slots]
            };
            for &row in rows {
                let o = self.offset(layer, h, row);
                crate::llama::ops::to_f16_bits(&k[h * d..(h + 1) * d], &mut self.k[o..o + d]);
                crate::llama::ops::to_f16_bits(&v[h * d..(h + 1) * d], &mut self.v[o..o + d]);
            }
        }
    }

    /// Keys and values of `head` in `layer` for positions `first..first + len`, contiguous
    /// (`len × head_dim` each). On a ring layer the positions must be among the last `S` stored.
    pub(crate) fn window(
        &self,
        layer: usize,
        head: usize,
        first: usize,
        len: usize,
    ) -> (&[u16], &[u16]) {
        let slots = Self::slots_for(self.windows[layer], self.capacity);
        let row = if slots == 0 {
            first
        } else {
            debug_assert!(len <= slots, "{len} positions from a ring of {slots}");
            first % slots
        };
        let o = self.offset(layer, head, row);
        let n = len * self.head_dim;
        (&self.k[o..o + n], &self.v[o..o + n])
    }

    /// Keys and values of `head` in `layer`, positions `0..len` (a layer that keeps every
    /// position).
    #[cfg(test)]
    pub(crate) fn head(&self, layer: usize, head: usize) -> (&[u16], &[u16]) {
        let rows = Self::rows_for(self.windows[layer], self.capacity);
        let o = self.offset(layer, head, 0);
        let n = rows * self.head_dim;
        (&self.k[o..o + n], &self.v[o..o + n])
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Whether [`KvCache::copy_prefix_from`] can take the first `n` positions of this cache: it
    /// holds them (every layer keeps what a query at position `n` sees).
    pub fn can_copy_prefix(&self, n: usize) -> bool {
        n <= self.len
            && (0..self.num_layers).all(|l| match self.windows[l] {
                Some(w) => n.saturating_sub(w) >= self.held_from(l),
                None => true,
            })
    }

    /// Fill this empty cache with the first `n` positions of `source` (a cache of the same model):
    /// every layer's keys and values, one contiguous copy per (layer, KV head) and ring half.
    /// On a sliding-window layer, the positions the source still holds and this ring can keep.
    pub fn copy_prefix_from(&mut self, source: &KvCache, n: usize) -> Result<()> {
        let fail = |message: String| Error::InvalidRequest {
            field: "prompt",
            message: format!("copying a KV-cache prefix: {message}"),
        };
        if (self.num_kv_heads, self.head_dim, &self.windows)
            != (source.num_kv_heads, source.head_dim, &source.windows)
        {
            return Err(fail(format!(
                "the caches have different shapes (KV heads, head dim, windows per layer) {:?} and {:?}",
                (self.num_kv_heads, self.head_dim, &self.windows),
                (source.num_kv_heads, source.head_dim, &source.windows)
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
        if !source.can_copy_prefix(n) {
            return Err(fail(format!(
                "the source's sliding-window layers no longer hold the positions before {n}"
            )));
        }
        let d = self.head_dim;
        for layer in 0..self.num_layers {
            let slots = Self::slots_for(self.windows[layer], self.capacity);
            let from_ring = Self::slots_for(source.windows[layer], source.capacity) != 0;
            // Positions lo..n: everything, or (a window's layer) what the source holds and this
            // layer keeps; a window's layer never reads positions before n − w.
            let keep = if slots == 0 { n } else { slots };
            let lo = source.held_from(layer).max(n.saturating_sub(keep));
            if self.windows[layer].is_some() {
                self.window_from = self.window_from.max(lo);
            }
            for head in 0..self.num_kv_heads {
                if slots == 0 && !from_ring {
                    // Every position: one contiguous copy.
                    let (from, to) = (source.offset(layer, head, 0), self.offset(layer, head, 0));
                    self.k[to..to + n * d].copy_from_slice(&source.k[from..from + n * d]);
                    self.v[to..to + n * d].copy_from_slice(&source.v[from..from + n * d]);
                    continue;
                }
                for pos in lo..n {
                    let (k, v) = source.window(layer, head, pos, 1);
                    let rows = if slots == 0 {
                        [pos, pos]
                    } else {
                        [pos % slots, pos % slots + slots]
                    };
                    for row in rows {
                        let to = self.offset(layer, head, row);
                        self.k[to..to + d].copy_from_slice(k);
                        self.v[to..to + d].copy_from_slice(v);
                    }
                }
            }
        }
        self.len = n;
        Ok(())
    }

    /// Make room for `capacity` positions (at least the current capacity), keeping the filled ones
    /// (on ring layers, the ones the ring holds). The entries are moved exactly, so attention over
    /// a grown cache gives bit-identical results.
    pub fn grow(&mut self, capacity: usize) {
        if capacity <= self.capacity {
            return;
        }
        let mut grown = KvCache::with_windows(
            self.num_kv_heads,
            self.head_dim,
            capacity,
            self.windows.clone(),
        );
        let n = self.len;
        grown
            .copy_prefix_from(self, n)
            .expect("a cache holds its own positions");
        *self = grown;
    }

    /// A compact copy of the first `n` positions (capacity `n`), e.g. to keep a prefix for reuse.
    pub fn snapshot(&self, n: usize) -> Result<KvCache> {
        let mut c =
            KvCache::with_windows(self.num_kv_heads, self.head_dim, n, self.windows.clone());
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

    /// A ring layer (window 3, so 6 slots) beside a full one: every window of the last positions
    /// reads back as stored, contiguously, across the ring's wrap; older prefixes are refused.
    #[test]
    fn ring_layers_hold_their_last_positions() {
        let d = 2;
        let mut c = KvCache::with_windows(1, d, 20, vec![Some(3), None]);
        assert_eq!(c.bytes(), c.bytes_at(20));
        assert_eq!(c.bytes(), 2 * 2 * (12 + 20) * d);
        assert_eq!(c.max_step(), 4);
        for pos in 0..20 {
            for layer in 0..2 {
                let k = [pos as f32, layer as f32];
                let v = [-(pos as f32), 1.0];
                c.store(layer, pos, &k, &v);
            }
            c.advance(1);
            let len = c.len();
            for first in len.saturating_sub(6)..len {
                for layer in 0..2 {
                    let (k, v) = c.window(layer, 0, first, len - first);
                    for (i, (kp, vp)) in k.chunks(d).zip(v.chunks(d)).enumerate() {
                        let p = (first + i) as f32;
                        let mut want = [0u16; 2];
                        crate::llama::ops::to_f16_bits(&[p, layer as f32], &mut want);
                        assert_eq!(kp, want, "layer {layer} position {p}");
                        crate::llama::ops::to_f16_bits(&[-p, 1.0], &mut want);
                        assert_eq!(vp, want);
                    }
                }
            }
        }
        // The ring holds positions 14..20: a query at 20 sees 17..20, one at 17 needs 14..17.
        assert!(c.can_copy_prefix(20) && c.can_copy_prefix(17));
        assert!(!c.can_copy_prefix(16));
        let err = c.snapshot(16).unwrap_err();
        assert!(err.to_string().contains("sliding-window"), "{err}");
        let snap = c.snapshot(20).unwrap();
        assert_eq!(snap.window(0, 0, 17, 3), c.window(0, 0, 17, 3));
        // Grown past the ring's size from a small capacity: the old positions are kept.
        let mut g = KvCache::with_windows(1, d, 8, vec![Some(3), None]);
        for pos in 0..8 {
            for layer in 0..2 {
                g.store(
                    layer,
                    pos,
                    &[pos as f32, layer as f32],
                    &[-(pos as f32), 1.0],
                );
            }
        }
        g.advance(8);
        assert!(g.can_copy_prefix(8) && g.can_copy_prefix(3));
        let before = (
            g.window(0, 0, 5, 3).0.to_vec(),
            g.window(1, 0, 0, 8).0.to_vec(),
        );
        g.grow(20);
        assert_eq!(g.bytes(), c.bytes());
        assert_eq!(g.window(0, 0, 5, 3).0, &before.0[..]);
        assert_eq!(g.window(1, 0, 0, 8).0, &before.1[..]);
        assert!(g.can_copy_prefix(8) && g.can_copy_prefix(5) && !g.can_copy_prefix(4));
        // A copy into a layout without a ring still knows what it was never given.
        let mut small = KvCache::with_windows(1, d, 12, vec![Some(3), None]);
        let (k17, _) = c.window(0, 0, 17, 1);
        let k17 = k17.to_vec();
        let mut late = KvCache::with_windows(1, d, 20, vec![Some(3), None]);
        late.copy_prefix_from(&c, 20).unwrap();
        assert!(!late.can_copy_prefix(16) && late.can_copy_prefix(17));
        assert!(small.copy_prefix_from(&late, 12).is_err());
        assert_eq!(late.window(0, 0, 17, 1).0, &k17[..]);
        assert_eq!(snap.window(1, 0, 0, 20), c.window(1, 0, 0, 20));
        // Without rings (or before one can wrap) a step is unbounded.
        assert_eq!(
            KvCache::with_windows(1, d, 5, vec![Some(3)]).max_step(),
            usize::MAX
        );
        assert_eq!(KvCache::new(2, 1, d, 50).max_step(), usize::MAX);
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
