//! Choosing the next token from logits: repetition penalty, temperature, top-k, top-p, seeded RNG.
//!
//! Order (as Hugging Face `generate`): repetition penalty on the logits of tokens already in the
//! sequence (prompt included; positive logits divided by the penalty, negative ones multiplied),
//! then greedy argmax when `temperature == 0`, else softmax(logits / temperature), keep the `top_k`
//! most likely tokens, keep the smallest prefix whose probability reaches `top_p`, renormalise and
//! draw with a ChaCha8 generator seeded per request.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use lepton_infer::SamplingParams;

/// The per-sequence sampler: parameters plus the seeded generator.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Scratch: (token, logit then weight) candidates, the ones kept for the nucleus, and the
    /// distinct previous tokens.
    candidates: Vec<(u32, f32)>,
    kept: Vec<(u32, f32)>,
    seen: Vec<u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(|| rand::rng().random());
        Self {
            params,
            rng: ChaCha8Rng::seed_from_u64(seed),
            candidates: Vec::new(),
            kept: Vec::new(),
            seen: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Pick the next token. `logits` is modified in place; `previous` are the sequence's tokens so far.
    pub fn sample(&mut self, logits: &mut [f32], previous: &[u32]) -> u32 {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            apply_repetition_penalty(logits, previous, p.repetition_penalty, &mut self.seen);
        }
        if p.temperature == 0.0 {
            return argmax(logits);
        }
        let c = &mut self.candidates;
        c.clear();
        c.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        if p.top_k > 0 && p.top_k < c.len() {
            c.select_nth_unstable_by(p.top_k - 1, by_logit);
            c.truncate(p.top_k);
        }
        let max = c.iter().fold(f32::NEG_INFINITY, |m, &(_, l)| m.max(l));
        softmax_weights(c, max, p.temperature);
        let mut total = 0f64;
        for &(_, w) in c.iter() {
            total += w as f64;
        }
        // The nucleus is the shortest prefix, in order of decreasing probability, whose mass reaches
        // top_p. Rather than sorting the whole vocabulary, sort only the tokens above a threshold,
        // lowered until they hold the mass: they are a prefix of the full order, so the prefix
        // found is the same.
        let kept = &mut self.kept;
        let mut threshold = 1e-2f32;
        loop {
            kept.clear();
            kept.extend(c.iter().filter(|&&(_, w)| w >= threshold));
            let mass: f64 = kept.iter().map(|&(_, w)| w as f64).sum();
            if mass >= p.top_p as f64 * total || threshold == 0.0 {
                break;
            }
            threshold = if threshold < 1e-30 {
                0.0
            } else {
                threshold / 64.0
            };
        }
        kept.sort_unstable_by(by_logit);
        let mut cum = 0f64;
        let n = kept.len();
        let mut keep = n;
        for (i, (_, pr)) in kept.iter_mut().enumerate() {
            *pr = (*pr as f64 / total) as f32;
            cum += *pr as f64;
            if cum >= p.top_p as f64 && keep == n {
                keep = i + 1;
            }
        }
        kept.truncate(keep);
        let mass: f64 = kept.iter().map(|&(_, pr)| pr as f64).sum();
        let mut u = self.rng.random::<f64>() * mass;
        for &(id, pr) in kept.iter() {
            u -= pr as f64;
            if u < 0.0 {
                return id;
            }
        }
        kept[kept.len() - 1].0
    }
}

/// `w ← exp((l − max) / temperature)` for every candidate, with [`exp`] (vectorised on AVX2).
fn softmax_weights(c: &mut [(u32, f32)], max: f32, temperature: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU feature was just checked.
        return unsafe { softmax_weights_avx2(c, max, temperature) };
    }
    softmax_weights_generic(c, max, temperature)
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_weights_avx2(c: &mut [(u32, f32)], max: f32, temperature: f32) {
    softmax_weights_generic(c, max, temperature)
}

#[inline(always)]
fn softmax_weights_generic(c: &mut [(u32, f32)], max: f32, temperature: f32) {
    for (_, l) in c.iter_mut() {
        *l = exp((*l - max) / temperature);
    }
}

/// `e^x` for sampling weights (x ≤ 0 here): Cephes' `expf` polynomial (about 1 ulp), written with
/// separate multiplies and adds so that the plain and the vectorised builds give the same bits;
/// arguments below -87 give e^-87 (≈ 1.6e-38, never a sampled token's weight).
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let y = p * z + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Sort descending by value; ties by token id so the order is fully determined.
fn by_logit(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn apply_repetition_penalty(
    logits: &mut [f32],
    previous: &[u32],
    penalty: f32,
    seen: &mut Vec<u32>,
) {
    seen.clear();
    seen.extend_from_slice(previous);
    seen.sort_unstable();
    seen.dedup();
    for &t in seen.iter() {
        if let Some(l) = logits.get_mut(t as usize) {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplingParams::greedy(1));
        assert_eq!(s.sample(&mut [0.1, 2.0, 2.0, -1.0], &[]), 1);
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative() {
        let mut l = [2.0, -1.0, 3.0];
        apply_repetition_penalty(&mut l, &[0, 1, 1], 2.0, &mut Vec::new());
        assert_eq!(l, [1.0, -2.0, 3.0]);
        // Greedy with a penalty switches to the unpenalised token.
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy(1)
        });
        assert_eq!(s.sample(&mut [3.0, 2.0], &[0]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_same_seed_same_draws() {
        let logits = [0.5f32, 1.5, 1.0, -0.3];
        let mut s = Sampler::new(SamplingParams {
            top_k: 1,
            seed: Some(3),
            ..Default::default()
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&mut logits.clone(), &[]), 1);
        }
        let draw = |seed| {
            let mut s = Sampler::new(SamplingParams {
                seed: Some(seed),
                ..Default::default()
            });
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_p_keeps_the_smallest_prefix_reaching_the_mass() {
        // Probabilities ~ [0.64, 0.24, 0.09, 0.03]: top_p 0.5 keeps only the first token.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut s = Sampler::new(SamplingParams {
            top_p: 0.5,
            seed: Some(1),
            ..Default::default()
        });
        for _ in 0..50 {
            assert_eq!(s.sample(&mut logits.clone(), &[]), 0);
        }
        // top_p 0.8 keeps two: both appear, the third never does.
        let mut s = Sampler::new(SamplingParams {
            top_p: 0.8,
            seed: Some(1),
            ..Default::default()
        });
        let draws: Vec<u32> = (0..400)
            .map(|_| s.sample(&mut logits.clone(), &[]))
            .collect();
        assert!(draws.contains(&0) && draws.contains(&1));
        assert!(draws.iter().all(|&t| t < 2));
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        for i in 0..20_000 {
            let x = -87.0 + i as f32 * (95.0 / 20_000.0);
            let (a, b) = (exp(x), x.exp());
            assert!((a - b).abs() <= 2.5e-7 * b, "exp({x}) = {a} vs {b}");
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37);
    }

    /// The thresholded nucleus against sorting the whole vocabulary, draw by draw.
    #[test]
    fn nucleus_equals_the_full_sort() {
        let mut x = 7u64;
        let logits: Vec<f32> = (0..5000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 12.0 - 6.0
            })
            .collect();
        for (top_p, temperature) in [(0.95f32, 0.8f32), (0.5, 1.0), (0.999, 2.0), (0.1, 0.3)] {
            let params = SamplingParams {
                top_p,
                temperature,
                seed: Some(5),
                ..Default::default()
            };
            let mut s = Sampler::new(params);
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l));
            let mut all: Vec<(u32, f32)> = logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, exp((l - max) / temperature)))
                .collect();
            let total: f64 = all.iter().map(|&(_, w)| w as f64).sum();
            all.sort_by(by_logit);
            let mut cum = 0f64;
            let probs: Vec<(u32, f32)> = all
                .iter()
                .map(|&(id, w)| (id, (w as f64 / total) as f32))
                .collect();
            let keep = probs
                .iter()
                .position(|&(_, pr)| {
                    cum += pr as f64;
                    cum >= top_p as f64
                })
                .map_or(probs.len(), |i| i + 1);
            let nucleus = &probs[..keep];
            let mass: f64 = nucleus.iter().map(|&(_, pr)| pr as f64).sum();
            for _ in 0..200 {
                let mut u = rng.random::<f64>() * mass;
                let want = nucleus
                    .iter()
                    .find(|&&(_, pr)| {
                        u -= pr as f64;
                        u < 0.0
                    })
                    .map_or(nucleus[keep - 1].0, |&(id, _)| id);
                assert_eq!(s.sample(&mut logits.clone(), &[]), want, "top_p {top_p}");
            }
        }
    }

    #[test]
    fn sampling_frequencies_follow_the_softmax() {
        let logits = [0.0f32, (3.0f32).ln()]; // probabilities 1/4, 3/4
        let mut s = Sampler::new(SamplingParams {
            seed: Some(11),
            ..Default::default()
        });
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| s.sample(&mut logits.clone(), &[]) == 1)
            .count();
        let f = ones as f64 / n as f64;
        assert!((f - 0.75).abs() < 0.015, "{f}");
    }
}
