//! The engine's prefix cache: KV entries of earlier sequences, reused by prompts that start the
//! same way (a chat template's system prompt, the earlier turns of a conversation).
//!
//! An entry is a sequence's token ids and a compact snapshot of its KV cache for exactly those
//! positions. Entries are whole sequences, not shared blocks: two conversations that share a system
//! prompt each hold their own copy of it. An entry that is a prefix of a newer one is dropped when
//! the newer one is stored, so a growing conversation keeps one entry. The store holds at most
//! `budget` positions in all; the least recently used entries go first.
//!
//! Every entry has a key: 0 for the base model, an adapter's id for sequences run under a LoRA
//! adapter (whose keys and values differ from the base's). A lookup only sees entries of its own
//! key, so a prefix computed under one adapter never serves another.

use crate::llama::KvCache;

/// Shorter common prefixes are not reused. Copying a position is several hundred times cheaper
/// than computing it (SmolLM2-135M, 2 threads: ~2 µs vs ~1.3 ms in a 200-token prefill; see
/// bench/RESULTS.md), so the floor only keeps tiny matches (a template's first marker) from
/// counting as hits.
pub(crate) const MIN_REUSE: usize = 4;

/// A request waits one step for a sequence in prefill to be stored only if it then reuses at least
/// this many more positions than the store gives it now (the wait costs it one step).
pub(crate) const WAIT_MIN: usize = 16;

struct Entry {
    key: u64,
    tokens: Vec<u32>,
    cache: KvCache,
    last_used: u64,
}

pub(crate) struct PrefixCache {
    budget: usize,
    used: usize,
    clock: u64,
    entries: Vec<Entry>,
}

impl PrefixCache {
    /// A store of at most `budget` positions (0 disables it).
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            used: 0,
            clock: 0,
            entries: Vec::new(),
        }
    }

    /// Positions held.
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The longest stored prefix of `prompt` that leaves at least one prompt token to run and
    /// that its entry still holds (see [`KvCache::can_copy_prefix`]), if it is at least
    /// [`MIN_REUSE`] positions: its length and the cache holding it (marked used).
    pub(crate) fn lookup(&mut self, key: u64, prompt: &[u32]) -> Option<(usize, &KvCache)> {
        let cap = prompt.len().saturating_sub(1);
        let (best, n) = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.key == key)
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt).min(cap)))
            // A sliding-window layer's ring holds only the entry's last positions: a shorter
            // prefix needs older ones (llama.cpp's SWA cache has the same limit).
            .map(|(i, n)| {
                (
                    i,
                    if self.entries[i].cache.can_copy_prefix(n) {
                        n
                    } else {
                        0
                    },
                )
            })
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))?;
        if n < MIN_REUSE {
            return None;
        }
        let now = self.tick();
        let e = &mut self.entries[best];
        e.last_used = now;
        Some((n, &e.cache))
    }

    /// Whether a request with `prompt` under `key`, which the store gives `stored` positions now,
    /// should wait for the prompts being prefilled in this step (`prefilling`, with their keys)
    /// to be stored: one of them under the same key shares at least [`WAIT_MIN`] more positions
    /// and will be kept.
    pub(crate) fn worth_waiting<'a>(
        &self,
        key: u64,
        prompt: &[u32],
        stored: usize,
        prefilling: impl Iterator<Item = (u64, &'a [u32])>,
    ) -> bool {
        let cap = prompt.len().saturating_sub(1);
        prefilling
            .filter(|&(k, p)| k == key && p.len() >= MIN_REUSE && p.len() <= self.budget)
            .map(|(_, p)| p)
            .map(|p| common_prefix(p, prompt).min(cap))
            .any(|n| n >= stored + WAIT_MIN)
    }

    /// Keep the first `tokens.len()` positions of `cache` (which must hold at least that many) for
    /// reuse, unless an entry already covers them or they exceed the budget. Entries that are a
    /// prefix of `tokens` are dropped, then the least recently used ones until the new one fits.
    pub(crate) fn insert(
        &mut self,
        key: u64,
        tokens: &[u32],
        cache: &KvCache,
    ) -> crate::Result<()> {
        let n = tokens.len();
        if n < MIN_REUSE || n > self.budget {
            return Ok(());
        }
        let now = self.tick();
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.key == key && e.tokens.starts_with(tokens))
        {
            e.last_used = now;
            return Ok(());
        }
        let before = self.entries.len();
        self.entries
            .retain(|e| e.key != key || !tokens.starts_with(&e.tokens));
        if self.entries.len() != before {
            self.recount();
        }
        while self.used + n > self.budget {
            let oldest = (0..self.entries.len())
                .min_by_key(|&i| self.entries[i].last_used)
                .expect("used > 0 means an entry is stored");
            self.used -= self.entries.swap_remove(oldest).tokens.len();
        }
        self.entries.push(Entry {
            key,
            tokens: tokens.to_vec(),
            cache: cache.snapshot(n)?,
            last_used: now,
        });
        self.used += n;
        Ok(())
    }

    fn recount(&mut self) {
        self.used = self.entries.iter().map(|e| e.tokens.len()).sum();
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache of `n` filled positions whose keys at position p hold `tokens[p]` (to check copies).
    fn cache_of(tokens: &[u32]) -> KvCache {
        let mut c = KvCache::new(2, 1, 2, tokens.len());
        for layer in 0..2 {
            for (p, &t) in tokens.iter().enumerate() {
                c.store(layer, p, &[t as f32, 0.0], &[0.0, t as f32]);
            }
        }
        c.advance(tokens.len());
        c
    }

    fn add(store: &mut PrefixCache, tokens: &[u32]) {
        store.insert(0, tokens, &cache_of(tokens)).unwrap();
    }

    #[test]
    fn longest_prefix_is_found_and_capped_below_the_prompt() {
        let mut s = PrefixCache::new(100);
        add(&mut s, &[1, 2, 3, 4, 5, 6]);
        add(&mut s, &[1, 2, 3, 4, 9, 9, 9, 9]);
        let (n, c) = s.lookup(0, &[1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert_eq!((n, c.len()), (6, 6));
        assert_eq!(s.lookup(0, &[1, 2, 3, 4, 9, 9, 8]).unwrap().0, 6);
        // The whole prompt is stored: all but its last token are reused.
        assert_eq!(s.lookup(0, &[1, 2, 3, 4, 5, 6]).unwrap().0, 5);
        // Too short a match.
        assert!(s.lookup(0, &[1, 2, 3, 7, 7, 7]).is_none());
        assert!(s.lookup(0, &[1, 2, 3, 4]).is_none());
        assert!(PrefixCache::new(0).lookup(0, &[1, 2, 3, 4, 5]).is_none());
    }

    #[test]
    fn waiting_pays_only_for_a_long_enough_shared_prefix() {
        let system: Vec<u32> = (0..20).collect();
        let prompt = |tail: u32| {
            let mut p = system.clone();
            p.extend([tail, tail]);
            p
        };
        let s = PrefixCache::new(100);
        let running = [prompt(1)];
        let others = || running.iter().map(|p| (0, p.as_slice()));
        assert!(s.worth_waiting(0, &prompt(2), 0, others()));
        // The store already gives most of it.
        assert!(!s.worth_waiting(0, &prompt(2), 10, others()));
        // Nothing running in prefill, or too little shared.
        assert!(!s.worth_waiting(0, &prompt(2), 0, std::iter::empty()));
        assert!(!s.worth_waiting(0, &[0, 1, 2, 9, 9, 9], 0, others()));
        // The running prompt would not be stored (over the budget), or the cache is off.
        assert!(!PrefixCache::new(21).worth_waiting(0, &prompt(2), 0, others()));
        assert!(!PrefixCache::new(0).worth_waiting(0, &prompt(2), 0, others()));
    }

    #[test]
    fn prefixes_are_not_stored_twice() {
        let mut s = PrefixCache::new(100);
        add(&mut s, &[1, 2, 3, 4, 5]);
        // Covered by the stored entry.
        add(&mut s, &[1, 2, 3, 4]);
        assert_eq!((s.entries.len(), s.used()), (1, 5));
        // Extends it: replaces it.
        add(&mut s, &[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!((s.entries.len(), s.used()), (1, 7));
        // Diverges: both kept.
        add(&mut s, &[1, 2, 3, 4, 8]);
        assert_eq!((s.entries.len(), s.used()), (2, 12));
    }

    #[test]
    fn least_recently_used_entries_are_evicted_within_the_budget() {
        let mut s = PrefixCache::new(12);
        add(&mut s, &[1, 1, 1, 1, 1]);
        add(&mut s, &[2, 2, 2, 2, 2]);
        // Touch the first, so the second is the oldest.
        assert!(s.lookup(0, &[1, 1, 1, 1, 1, 1]).is_some());
        add(&mut s, &[3, 3, 3, 3, 3]);
        assert_eq!(s.used(), 10);
        assert!(s.lookup(0, &[2, 2, 2, 2, 2, 2]).is_none());
        assert!(s.lookup(0, &[1, 1, 1, 1, 1, 1]).is_some());
        assert!(s.lookup(0, &[3, 3, 3, 3, 3, 3]).is_some());
        // Larger than the whole budget: not stored, nothing evicted.
        add(&mut s, &[4; 13]);
        assert_eq!(s.used(), 10);
        // Needs everything.
        add(&mut s, &[5; 12]);
        assert_eq!((s.entries.len(), s.used()), (1, 12));
        // The snapshot holds the inserted keys.
        let (n, c) = s.lookup(0, &[5; 13]).unwrap();
        assert_eq!(n, 12);
        let mut five = [0u16];
        crate::llama::ops::to_f16_bits(&[5.0], &mut five);
        assert_eq!(c.head(1, 0).0[22], five[0]);
    }

    #[test]
    fn entries_serve_only_their_own_adapter() {
        let mut s = PrefixCache::new(100);
        let tokens = [1, 2, 3, 4, 5, 6];
        s.insert(7, &tokens, &cache_of(&tokens)).unwrap();
        // Under the base (key 0) or another adapter, the adapter's entry is not reused.
        assert!(s.lookup(0, &[1, 2, 3, 4, 5, 6, 7]).is_none());
        assert!(s.lookup(8, &[1, 2, 3, 4, 5, 6, 7]).is_none());
        assert_eq!(s.lookup(7, &[1, 2, 3, 4, 5, 6, 7]).unwrap().0, 6);
        // The same tokens under the base are a separate entry; extending one keeps the other.
        add(&mut s, &tokens);
        s.insert(
            7,
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &cache_of(&[1, 2, 3, 4, 5, 6, 7, 8]),
        )
        .unwrap();
        assert_eq!(s.lookup(0, &[1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap().0, 6);
        assert_eq!(s.lookup(7, &[1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap().0, 8);
        // Waiting only pays for a prefill under the same key.
        let system: Vec<u32> = (0..30).collect();
        let pre = [(7u64, system.as_slice())];
        assert!(s.worth_waiting(7, &system, 0, pre.iter().copied()));
        assert!(!s.worth_waiting(0, &system, 0, pre.iter().copied()));
    }
}
