//! Seeded, stratified splits and k-fold cross-validation.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A deterministic RNG for `(seed, stream)`.
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Indices grouped by stratum (class), each group shuffled with the seed.
fn shuffled_strata(strata: &[u32], seed: u64) -> Vec<Vec<usize>> {
    let k = strata.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut groups = vec![Vec::new(); k];
    for (i, &s) in strata.iter().enumerate() {
        groups[s as usize].push(i);
    }
    let mut r = rng(seed, 0x5917);
    for g in &mut groups {
        g.shuffle(&mut r);
    }
    groups
}

/// Split indices `0..strata.len()` into (kept, held out) with `fraction` of every stratum held out
/// (rounded, at least one sample per stratum when the fraction is positive and the stratum has two).
pub fn stratified_split(strata: &[u32], fraction: f32, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut keep = Vec::new();
    let mut held = Vec::new();
    for g in shuffled_strata(strata, seed) {
        let mut n = (g.len() as f32 * fraction).round() as usize;
        if fraction > 0.0 && n == 0 && g.len() >= 2 {
            n = 1;
        }
        held.extend_from_slice(&g[..n]);
        keep.extend_from_slice(&g[n..]);
    }
    keep.sort_unstable();
    held.sort_unstable();
    (keep, held)
}

/// Stratified k-fold: `k` pairs of (train, held-out) indices; every index is held out exactly once.
pub fn kfold(strata: &[u32], k: usize, seed: u64) -> Vec<(Vec<usize>, Vec<usize>)> {
    let mut folds = vec![Vec::new(); k];
    let mut next = 0;
    for g in shuffled_strata(strata, seed) {
        for i in g {
            folds[next % k].push(i);
            next += 1;
        }
    }
    (0..k)
        .map(|f| {
            let mut held = folds[f].clone();
            held.sort_unstable();
            let mut train: Vec<usize> = (0..k)
                .filter(|&o| o != f)
                .flat_map(|o| folds[o].iter().copied())
                .collect();
            train.sort_unstable();
            (train, held)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_split_keeps_proportions() {
        let strata: Vec<u32> = (0..1000).map(|i| if i < 800 { 0 } else { 1 }).collect();
        let (keep, held) = stratified_split(&strata, 0.1, 7);
        assert_eq!(held.len(), 100);
        assert_eq!(held.iter().filter(|&&i| strata[i] == 1).count(), 20);
        assert_eq!(keep.len() + held.len(), 1000);
        assert_eq!((keep, held.clone()), stratified_split(&strata, 0.1, 7));
        assert_ne!(held, stratified_split(&strata, 0.1, 8).1);
    }

    #[test]
    fn kfold_covers_every_index_once() {
        let strata: Vec<u32> = (0..103).map(|i| (i % 3) as u32).collect();
        let folds = kfold(&strata, 5, 1);
        let mut seen = vec![0; 103];
        for (train, held) in &folds {
            assert_eq!(train.len() + held.len(), 103);
            assert!(held.iter().all(|i| !train.contains(i)));
            for &i in held {
                seen[i] += 1;
            }
            let ones = held.iter().filter(|&&i| strata[i] == 1).count();
            assert!((6..=8).contains(&ones), "fold not stratified: {ones}");
        }
        assert!(seen.iter().all(|&c| c == 1));
    }
}
