//! Row-wise building blocks of the decoder, on f32 slices, each written to follow ggml's order of
//! operations where that matters for matching llama.cpp (sums of squares and softmax normalisers
//! in f64, RoPE angles by repeated multiplication).
//!
//! Every function works on one row (or one sequence's head) at a time, so results never depend on
//! which other sequences share a batch.

/// RMSNorm: `y = x / sqrt(mean(x²) + eps) · w` (ggml `rms_norm` then `mul`).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
        *y = (x * scale) * w;
    }
}

/// Rotary position embedding, "normal" (interleaved) mode as llama.cpp uses for Llama GGUF files:
/// pairs `(x[2i], x[2i+1])` of every head rotate by `pos · theta_base^(-2i/head_dim)`.
pub fn rope_interleaved(x: &mut [f32], head_dim: usize, pos: usize, theta_base: f32) {
    let mut table = vec![(0f32, 0f32); head_dim / 2];
    rope_table(head_dim, pos, theta_base, &mut table);
    rope_apply(x, head_dim, &table);
}

/// The `(sin, cos)` of [`rope_interleaved`]'s angles for position `pos` (`head_dim / 2` pairs),
/// computed once per position and reused by every layer and by queries and keys.
pub fn rope_table(head_dim: usize, pos: usize, theta_base: f32, table: &mut [(f32, f32)]) {
    let theta_scale = theta_base.powf(-2.0 / head_dim as f32);
    let mut theta = pos as f32;
    for sc in &mut table[..head_dim / 2] {
        *sc = theta.sin_cos();
        theta *= theta_scale;
    }
}

/// [`rope_interleaved`] with the angles' `(sin, cos)` from [`rope_table`].
pub fn rope_apply(x: &mut [f32], head_dim: usize, table: &[(f32, f32)]) {
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, &(sin, cos)) in head.chunks_exact_mut(2).zip(table) {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos - b * sin;
            pair[1] = a * sin + b * cos;
        }
    }
}

/// [`rope_apply`] in NeoX mode: value `i` of each head rotates with value `i + head_dim / 2`
/// (llama.cpp's `GGML_ROPE_TYPE_NEOX`, used by Gemma, Qwen and Phi), by the same angles.
pub fn rope_apply_neox(x: &mut [f32], head_dim: usize, table: &[(f32, f32)]) {
    let half = head_dim / 2;
    for head in x.chunks_exact_mut(head_dim) {
        let (lo, hi) = head.split_at_mut(half);
        for ((a, b), &(sin, cos)) in lo.iter_mut().zip(hi.iter_mut()).zip(table) {
            let (x0, x1) = (*a, *b);
            *a = x0 * cos - x1 * sin;
            *b = x0 * sin + x1 * cos;
        }
    }
}

/// [`rms_norm`] of each `w.len()`-wide head of `x`, in place (QK-norm).
pub fn rms_norm_heads(x: &mut [f32], w: &[f32], eps: f32) {
    let mut tmp = vec![0f32; w.len()];
    for head in x.chunks_exact_mut(w.len()) {
        tmp.copy_from_slice(head);
        rms_norm(&tmp, w, eps, head);
    }
}

/// [`rms_norm`] of each `w.len()`-wide row of `x`, in place (Gemma's post-norms).
pub fn rms_norm_rows(x: &mut [f32], w: &[f32], eps: f32) {
    let mut tmp = vec![0f32; w.len()];
    for row in x.chunks_exact_mut(w.len()) {
        tmp.copy_from_slice(row);
        rms_norm(&tmp, w, eps, row);
    }
}

/// GeGLU: `gelu(gate) · up`, with ggml's f16-table GELU ([`super::arch::gelu_ggml`]).
pub fn gelu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = super::arch::gelu_ggml(g) * u;
    }
}

/// `x·y` with eight partial sums (vectorises without fast-math).
#[inline(always)]
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut xc = x.chunks_exact(8);
    let mut yc = y.chunks_exact(8);
    for (a, b) in (&mut xc).zip(&mut yc) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]);
    for (a, b) in xc.remainder().iter().zip(yc.remainder()) {
        s += a * b;
    }
    s
}

/// `x·y` for f16 `y`, in the order of [`dot`].
#[inline(always)]
fn dot_f16(x: &[f32], y: &[u16]) -> f32 {
    let mut acc = [0f32; 8];
    let mut xc = x.chunks_exact(8);
    let mut yc = y.chunks_exact(8);
    for (a, b) in (&mut xc).zip(&mut yc) {
        for l in 0..8 {
            acc[l] += a[l] * f16_bits(b[l]);
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]);
    for (a, &b) in xc.remainder().iter().zip(yc.remainder()) {
        s += a * f16_bits(b);
    }
    s
}

#[inline(always)]
fn f16_bits(b: u16) -> f32 {
    half::f16::from_bits(b).to_f32()
}

/// Causal attention of one query head over `len` cached positions:
/// `out = softmax(q·Kᵀ · scale) V` with `K`, `V` rows of `head_dim` f16 values (bit patterns);
/// the attention weights are rounded to f16 before they multiply `V`, as llama.cpp's f16 cache.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    q: &[f32],
    k: &[u16],
    v: &[u16],
    len: usize,
    scale: f32,
    softcap: Option<f32>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if q.len() % 8 == 0
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("f16c")
    {
        // SAFETY: the CPU features were just checked.
        return unsafe { attend_avx2(q, k, v, len, scale, softcap, scores, out) };
    }
    attend_generic(q, k, v, len, scale, softcap, scores, out)
}

/// [`attend_generic`] with explicit AVX2/F16C vectors, bit-identical: the same lanes, the same
/// separate multiply and add (no FMA), the same final additions.
///
/// # Safety
/// The CPU must have AVX2 and F16C, and `q.len()` must be a multiple of 8 (the other lengths
/// are asserted before any pointer is read).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx2(
    q: &[f32],
    k: &[u16],
    v: &[u16],
    len: usize,
    scale: f32,
    softcap: Option<f32>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        use std::arch::x86_64::*;
        let d = q.len();
        assert!(k.len() >= len * d && v.len() >= len * d && out.len() == d);
        scores.clear();
        scores.reserve(len);
        let qp = q.as_ptr();
        for t in 0..len {
            let kp = k.as_ptr().add(t * d);
            let mut acc = _mm256_setzero_ps();
            for c in (0..d).step_by(8) {
                let kv = _mm256_cvtph_ps(_mm_loadu_si128(kp.add(c) as *const __m128i));
                acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(qp.add(c)), kv));
            }
            // (a0 + a4) + (a1 + a5) + (a2 + a6) + (a3 + a7), left to right.
            let h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
            let s = _mm_add_ss(h, _mm_movehdup_ps(h));
            let s = _mm_add_ss(s, _mm_movehl_ps(h, h));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<0b11>(h, h));
            scores.push(_mm_cvtss_f32(s) * scale);
        }
        let inv = softmax_weights(scores, softcap);
        if d == 64 {
            // SmolLM2's head size: the eight output vectors stay in registers.
            let mut o = [_mm256_setzero_ps(); 8];
            for (t, &p) in scores.iter().enumerate() {
                let p = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(
                    _mm_set_ss(p * inv),
                )));
                let pv = _mm256_set1_ps(p);
                let vp = v.as_ptr().add(t * 64);
                for (c, o) in o.iter_mut().enumerate() {
                    let vv = _mm256_cvtph_ps(_mm_loadu_si128(vp.add(8 * c) as *const __m128i));
                    *o = _mm256_add_ps(*o, _mm256_mul_ps(pv, vv));
                }
            }
            for (c, o) in o.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(8 * c), *o);
            }
            return;
        }
        out.fill(0.0);
        let op = out.as_mut_ptr();
        for (t, &p) in scores.iter().enumerate() {
            let p = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(
                _mm_set_ss(p * inv),
            )));
            let pv = _mm256_set1_ps(p);
            let vp = v.as_ptr().add(t * d);
            for c in (0..d).step_by(8) {
                let vv = _mm256_cvtph_ps(_mm_loadu_si128(vp.add(c) as *const __m128i));
                let o = _mm256_loadu_ps(op.add(c));
                _mm256_storeu_ps(op.add(c), _mm256_add_ps(o, _mm256_mul_ps(pv, vv)));
            }
        }
    }
}

/// [`attend`] for the `qs.len() / head_dim` query heads that share one KV head (grouped-query
/// attention): `out[h]` gets exactly what `attend(q[h], ..)` gives, but each cached key and value
/// row is loaded and widened from f16 once for the whole group rather than once per head.
/// `scores` is scratch for `heads × len` values.
#[allow(clippy::too_many_arguments)]
pub fn attend_group(
    qs: &[f32],
    head_dim: usize,
    k: &[u16],
    v: &[u16],
    len: usize,
    scale: f32,
    softcap: Option<f32>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let heads = qs.len() / head_dim;
    debug_assert_eq!(out.len(), qs.len());
    #[cfg(target_arch = "x86_64")]
    if head_dim == 64
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("f16c")
    {
        // SAFETY: the CPU features were just checked.
        match heads {
            2 => {
                return unsafe {
                    attend_group64_avx2::<2>(qs, k, v, len, scale, softcap, scores, out)
                }
            }
            3 => {
                return unsafe {
                    attend_group64_avx2::<3>(qs, k, v, len, scale, softcap, scores, out)
                }
            }
            4 => {
                return unsafe {
                    attend_group64_avx2::<4>(qs, k, v, len, scale, softcap, scores, out)
                }
            }
            _ => {}
        }
    }
    for (q, o) in qs
        .chunks_exact(head_dim)
        .zip(out.chunks_exact_mut(head_dim))
    {
        attend(q, k, v, len, scale, softcap, scores, o);
    }
}

/// [`attend_avx2`] on 64-wide heads for `G` query heads sharing the keys and values: the same
/// operations per head, in the same order (bit-identical), with each key and value vector
/// converted from f16 once per position.
///
/// # Safety
/// The CPU must have AVX2 and F16C (the lengths are asserted before any pointer is read).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_group64_avx2<const G: usize>(
    qs: &[f32],
    k: &[u16],
    v: &[u16],
    len: usize,
    scale: f32,
    softcap: Option<f32>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        use std::arch::x86_64::*;
        const D: usize = 64;
        assert!(qs.len() == G * D && out.len() == G * D);
        assert!(k.len() >= len * D && v.len() >= len * D);
        scores.clear();
        scores.resize(G * len, 0.0);
        let sp = scores.as_mut_ptr();
        let qp = qs.as_ptr();
        // Scores of `T` positions × `G` heads at a time: independent accumulation chains side by side
        // (one chain is eight dependent additions), each key vector widened once.
        /// # Safety
        /// The CPU must have AVX2 and F16C; `qp` must hold `G · 64` values, `k` the keys of positions
        /// `t0..t0 + T`, and `sp` room for `G · len` scores (the caller asserted the lengths).
        #[inline(always)]
        unsafe fn scores_at<const G: usize, const T: usize>(
            qp: *const f32,
            k: *const u16,
            t0: usize,
            len: usize,
            scale: f32,
            sp: *mut f32,
        ) {
            // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
            // pointer ranges), which is what every unsafe operation below relies on.
            unsafe {
                let mut acc = [[_mm256_setzero_ps(); T]; G];
                for c in 0..D / 8 {
                    let kv: [__m256; T] = std::array::from_fn(|t| {
                        _mm256_cvtph_ps(_mm_loadu_si128(
                            k.add((t0 + t) * D + 8 * c) as *const __m128i
                        ))
                    });
                    for (h, acc) in acc.iter_mut().enumerate() {
                        let q = _mm256_loadu_ps(qp.add(h * D + 8 * c));
                        for t in 0..T {
                            acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(q, kv[t]));
                        }
                    }
                }
                for (h, acc) in acc.iter().enumerate() {
                    for (t, acc) in acc.iter().enumerate() {
                        // (a0 + a4) + (a1 + a5) + (a2 + a6) + (a3 + a7), left to right, as attend_avx2.
                        let hh = _mm_add_ps(
                            _mm256_castps256_ps128(*acc),
                            _mm256_extractf128_ps::<1>(*acc),
                        );
                        let s = _mm_add_ss(hh, _mm_movehdup_ps(hh));
                        let s = _mm_add_ss(s, _mm_movehl_ps(hh, hh));
                        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b11>(hh, hh));
                        *sp.add(h * len + t0 + t) = _mm_cvtss_f32(s) * scale;
                    }
                }
            }
        }
        let mut t = 0;
        while t + 3 <= len {
            scores_at::<G, 3>(qp, k.as_ptr(), t, len, scale, sp);
            t += 3;
        }
        while t < len {
            scores_at::<G, 1>(qp, k.as_ptr(), t, len, scale, sp);
            t += 1;
        }
        // Per head: softmax, then the weights rounded to f16 as attend_avx2 rounds them.
        for h in 0..G {
            let row = &mut scores[h * len..(h + 1) * len];
            let inv = softmax_weights(row, softcap);
            for p in row.iter_mut() {
                *p = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(
                    _mm_set_ss(*p * inv),
                )));
            }
        }
        // out[h][c] = Σ_t p[h][t] · v[t][c] in position order, `C` 8-wide columns at a time for every
        // head (`C · G` independent accumulation chains).
        const C: usize = 2;
        let sp = scores.as_ptr();
        for c0 in (0..D / 8).step_by(C) {
            let mut o = [[_mm256_setzero_ps(); C]; G];
            for t in 0..len {
                let vp = v.as_ptr().add(t * D + 8 * c0);
                let vv: [__m256; C] = std::array::from_fn(|c| {
                    _mm256_cvtph_ps(_mm_loadu_si128(vp.add(8 * c) as *const __m128i))
                });
                for (h, o) in o.iter_mut().enumerate() {
                    let pv = _mm256_set1_ps(*sp.add(h * len + t));
                    for c in 0..C {
                        o[c] = _mm256_add_ps(o[c], _mm256_mul_ps(pv, vv[c]));
                    }
                }
            }
            for (h, o) in o.iter().enumerate() {
                for (c, o) in o.iter().enumerate() {
                    _mm256_storeu_ps(out.as_mut_ptr().add(h * D + 8 * (c0 + c)), *o);
                }
            }
        }
    }
}

/// `scores ← exp(scores − max)`; returns `1 / Σ scores` (summed in f64). With a soft cap `c`
/// each score `s` first becomes `c · tanh(s / c)` (Gemma 2, as llama.cpp before its softmax).
#[inline(always)]
fn softmax_weights(scores: &mut [f32], softcap: Option<f32>) -> f32 {
    if let Some(c) = softcap {
        // As ggml: scale by 1/c, tanh, scale by c.
        let inv = 1.0 / c;
        scores.iter_mut().for_each(|s| *s = (*s * inv).tanh() * c);
    }
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
    }
    let mut sum = 0f64;
    for s in scores.iter() {
        sum += *s as f64;
    }
    (1.0 / sum) as f32
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_generic(
    q: &[f32],
    k: &[u16],
    v: &[u16],
    len: usize,
    scale: f32,
    softcap: Option<f32>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = q.len();
    scores.clear();
    scores.extend(
        k[..len * d]
            .chunks_exact(d)
            .map(|kt| dot_f16(q, kt) * scale),
    );
    let inv = softmax_weights(scores, softcap);
    out.fill(0.0);
    for (p, vt) in scores.iter().zip(v[..len * d].chunks_exact(d)) {
        let p = half::f16::from_f32(p * inv).to_f32();
        for (o, &vv) in out.iter_mut().zip(vt) {
            *o += p * f16_bits(vv);
        }
    }
}

/// Round to the nearest f16 value, keeping f32 storage (llama.cpp's default f16 KV cache: keys,
/// values, and the queries and attention weights multiplied with them are rounded to f16).
pub fn round_f16(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("f16c") {
        // SAFETY: the CPU feature was just checked.
        return unsafe { round_f16_f16c(x) };
    }
    for v in x {
        *v = half::f16::from_f32(*v).to_f32();
    }
}

/// [`round_f16`] eight at a time with F16C's round-to-nearest-even conversions (the ones `half`
/// uses per value on this CPU: the same bits).
///
/// # Safety
/// The CPU must have AVX and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn round_f16_f16c(x: &mut [f32]) {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        use std::arch::x86_64::*;
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(c.as_ptr()));
            _mm256_storeu_ps(c.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
        for v in chunks.into_remainder() {
            *v = half::f16::from_f32(*v).to_f32();
        }
    }
}

/// f16 bit patterns of `x` (round to nearest even), eight at a time where F16C is available.
pub fn to_f16_bits(x: &[f32], out: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("f16c") {
        // SAFETY: the CPU feature was just checked.
        return unsafe { to_f16_bits_f16c(x, out) };
    }
    for (o, v) in out.iter_mut().zip(x) {
        *o = half::f16::from_f32(*v).to_bits();
    }
}

/// # Safety
/// The CPU must have AVX and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn to_f16_bits_f16c(x: &[f32], out: &mut [u16]) {
    // SAFETY: the caller upholds this function's `# Safety` contract (CPU features,
    // pointer ranges), which is what every unsafe operation below relies on.
    unsafe {
        use std::arch::x86_64::*;
        let n = x.len().min(out.len());
        let (x, out) = (&x[..n], &mut out[..n]);
        let mut i = 0;
        while i + 8 <= n {
            let h =
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(x.as_ptr().add(i)));
            _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut __m128i, h);
            i += 8;
        }
        for (o, v) in out[i..].iter_mut().zip(&x[i..]) {
            *o = half::f16::from_f32(*v).to_bits();
        }
    }
}

/// SwiGLU: `gate · sigmoid(gate) · up`.
pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU features were just checked.
        return unsafe { silu_mul_avx2(gate, up, out) };
    }
    silu_mul_generic(gate, up, out)
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_mul_avx2(gate: &[f32], up: &[f32], out: &mut [f32]) {
    silu_mul_generic(gate, up, out)
}

#[inline(always)]
fn silu_mul_generic(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NeoX RoPE rotates value i with value i + d/2 (hand-computed: a quarter turn at position 1
    /// for the first pair when theta is chosen so that angle = pi/2).
    #[test]
    fn neox_rope_pairs_halves() {
        let mut x = [1.0f32, 2.0, 3.0, 4.0];
        let table = [(1.0f32, 0.0f32), (0.0, 1.0)]; // (sin, cos): 90 degrees, then 0
        rope_apply_neox(&mut x, 4, &table);
        // pair (x0, x2) = (1, 3) turns by 90 degrees: (-3, 1); pair (x1, x3) stays.
        assert_eq!(x, [-3.0, 2.0, 1.0, 4.0]);
    }

    #[test]
    fn rms_norm_per_head_and_per_row() {
        let mut x = [3.0f32, 4.0, 0.0, 2.0];
        rms_norm_heads(&mut x, &[1.0, 10.0], 0.0);
        // head (3, 4): rms = sqrt(12.5); head (0, 2): rms = sqrt(2).
        let (a, b) = (12.5f32.sqrt(), 2f32.sqrt());
        let want = [3.0 / a, 40.0 / a, 0.0, 20.0 / b];
        for (g, w) in x.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{x:?}");
        }
        let mut rows = [3.0f32, 4.0, 0.0, 2.0];
        rms_norm_rows(&mut rows, &[1.0, 10.0], 0.0);
        assert_eq!(rows, x);
    }

    #[test]
    fn rms_norm_by_hand() {
        // mean(x²) = (9 + 16) / 2 = 12.5
        let mut y = [0f32; 2];
        rms_norm(&[3.0, -4.0], &[1.0, 2.0], 0.0, &mut y);
        let r = 12.5f32.sqrt();
        assert!((y[0] - 3.0 / r).abs() < 1e-6 && (y[1] + 8.0 / r).abs() < 1e-6);
    }

    #[test]
    fn rope_rotates_pairs_and_keeps_norms() {
        let mut x = [1.0f32, 0.0, 1.0, 0.0];
        rope_interleaved(&mut x, 4, 1, 10_000.0);
        // pair 0 rotates by 1 rad, pair 1 by 1/100 rad.
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        assert!((x[2] - 0.01f32.cos()).abs() < 1e-6 && (x[3] - 0.01f32.sin()).abs() < 1e-6);
        let mut y = [0.3f32, -0.7, 2.0, 0.5];
        rope_interleaved(&mut y, 4, 17, 10_000.0);
        assert!(((y[0] * y[0] + y[1] * y[1]) - 0.58).abs() < 1e-5);
    }

    fn f16s(x: &[f32]) -> Vec<u16> {
        x.iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect()
    }

    #[test]
    fn attention_by_hand() {
        // Two keys; q·k = [0, 1] → weights [1/(1+e), e/(1+e)].
        let q = [1.0f32, 0.0];
        let k = f16s(&[0.0, 0.0, 1.0, 0.0]);
        let v = f16s(&[4.0, 0.0, 0.0, 8.0]);
        let mut out = [0f32; 2];
        attend(&q, &k, &v, 2, 1.0, None, &mut Vec::new(), &mut out);
        let e = 1f32.exp();
        let w0 = half::f16::from_f32(1.0 / (1.0 + e)).to_f32();
        let w1 = half::f16::from_f32(e / (1.0 + e)).to_f32();
        assert!(
            (out[0] - 4.0 * w0).abs() < 1e-6 && (out[1] - 8.0 * w1).abs() < 1e-6,
            "{out:?}"
        );
        // Only the first position visible: its value comes back unchanged.
        attend(&q, &k, &v, 1, 1.0, None, &mut Vec::new(), &mut out);
        assert_eq!(out, [4.0, 0.0]);
    }

    #[test]
    fn soft_capped_attention_by_hand() {
        // Scores [0, 3] capped at 0.5 become [0, 0.5 · tanh(6)]: the weights are far more even
        // than without the cap.
        let q = [3.0f32, 0.0];
        let k = f16s(&[0.0, 0.0, 1.0, 0.0]);
        let v = f16s(&[4.0, 0.0, 0.0, 8.0]);
        let mut out = [0f32; 2];
        attend(&q, &k, &v, 2, 1.0, Some(0.5), &mut Vec::new(), &mut out);
        let e = (0.5 * 6f32.tanh()).exp();
        let w0 = half::f16::from_f32(1.0 / (1.0 + e)).to_f32();
        let w1 = half::f16::from_f32(e / (1.0 + e)).to_f32();
        assert!(
            (out[0] - 4.0 * w0).abs() < 1e-6 && (out[1] - 8.0 * w1).abs() < 1e-6,
            "{out:?}"
        );
        let mut uncapped = [0f32; 2];
        attend(&q, &k, &v, 2, 1.0, None, &mut Vec::new(), &mut uncapped);
        assert!(uncapped[0] < 0.5 * out[0], "{uncapped:?} {out:?}");
    }

    /// The AVX2 path against the plain one, bit for bit, on 64- and 32-wide heads.
    #[test]
    fn attention_simd_equals_generic() {
        attention_simd_equals_generic_for(64);
        attention_simd_equals_generic_for(32);
    }

    fn attention_simd_equals_generic_for(d: usize) {
        let len = 37;
        let val = |i: usize| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.8;
        let q: Vec<f32> = (0..d)
            .map(|i| half::f16::from_f32(val(i + 3)).to_f32())
            .collect();
        let k = f16s(&(0..len * d).map(|i| val(i * 3 + 1)).collect::<Vec<_>>());
        let v = f16s(&(0..len * d).map(|i| val(i * 5 + 2)).collect::<Vec<_>>());
        let mut a = vec![0f32; d];
        let mut b = vec![0f32; d];
        for cap in [None, Some(0.3)] {
            attend(&q, &k, &v, len, 0.125, cap, &mut Vec::new(), &mut a);
            attend_generic(&q, &k, &v, len, 0.125, cap, &mut Vec::new(), &mut b);
            assert_eq!(a, b);
        }
    }

    /// The grouped kernel against one `attend` per head, bit for bit (3 heads share the KV head,
    /// as SmolLM2; 2 and 4; and a 32-wide head, which takes the per-head path).
    #[test]
    fn grouped_attention_equals_attention_per_head() {
        let val = |i: usize| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.9;
        for (d, heads, len, cap) in [
            (64, 3, 41, None),
            (64, 2, 1, None),
            (64, 4, 9, Some(0.4)),
            (32, 3, 17, Some(0.4)),
        ] {
            let qs: Vec<f32> = (0..heads * d)
                .map(|i| half::f16::from_f32(val(i + 11)).to_f32())
                .collect();
            let k = f16s(&(0..len * d).map(|i| val(i * 3 + 1)).collect::<Vec<_>>());
            let v = f16s(&(0..len * d).map(|i| val(i * 5 + 2)).collect::<Vec<_>>());
            let mut grouped = vec![0f32; heads * d];
            attend_group(
                &qs,
                d,
                &k,
                &v,
                len,
                0.125,
                cap,
                &mut Vec::new(),
                &mut grouped,
            );
            for h in 0..heads {
                let mut one = vec![0f32; d];
                attend(
                    &qs[h * d..(h + 1) * d],
                    &k,
                    &v,
                    len,
                    0.125,
                    cap,
                    &mut Vec::new(),
                    &mut one,
                );
                assert_eq!(
                    one,
                    grouped[h * d..(h + 1) * d],
                    "d {d} head {h} of {heads}"
                );
            }
        }
    }

    /// The F16C paths against `half`'s per-value conversions, bit for bit, on values that round
    /// (ties, subnormals, overflow to infinity) and lengths that leave a remainder.
    #[test]
    fn f16_rounding_and_bits_match_half() {
        let mut x: Vec<f32> = (0..203)
            .map(|i| ((i * 7919 % 2000) as f32 - 1000.0) * 0.37 / (1 + i % 13) as f32)
            .collect();
        x.extend([1.0 + 1.0 / 2048.0, 65520.0, -7e4, 3e-6, -5.96e-8, 0.0, -0.0]);
        let mut rounded = x.clone();
        round_f16(&mut rounded);
        let mut bits = vec![0u16; x.len()];
        to_f16_bits(&x, &mut bits);
        for ((v, r), b) in x.iter().zip(&rounded).zip(&bits) {
            let h = half::f16::from_f32(*v);
            assert_eq!(r.to_bits(), h.to_f32().to_bits(), "{v}");
            assert_eq!(*b, h.to_bits(), "{v}");
        }
    }

    /// One table per position gives what rotating with freshly computed angles gives.
    #[test]
    fn rope_table_reused_equals_rope() {
        // black_box: constant angles would be folded at compile time with different rounding.
        let (d, pos, theta) = std::hint::black_box((64, 37, 10_000f32));
        let x: Vec<f32> = (0..3 * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut table = vec![(0f32, 0f32); d / 2];
        rope_table(d, pos, theta, &mut table);
        let mut a = x.clone();
        rope_apply(&mut a, d, &table);
        let mut b = x.clone();
        let t = theta.powf(-2.0 / d as f32);
        let mut angle = pos as f32;
        for i in 0..d / 2 {
            let (sin, cos) = angle.sin_cos();
            for h in 0..3 {
                let (p, q) = (x[h * d + 2 * i], x[h * d + 2 * i + 1]);
                b[h * d + 2 * i] = p * cos - q * sin;
                b[h * d + 2 * i + 1] = p * sin + q * cos;
            }
            angle *= t;
        }
        assert_eq!(a, b);
    }

    #[test]
    fn dot_and_silu() {
        let x: Vec<f32> = (0..19).map(|i| i as f32).collect();
        assert_eq!(dot(&x, &x), (0..19).map(|i| (i * i) as f32).sum::<f32>());
        let mut o = [0f32; 2];
        silu_mul(&[0.0, 2.0], &[5.0, 3.0], &mut o);
        assert_eq!(o[0], 0.0);
        assert!((o[1] - 2.0 / (1.0 + (-2f32).exp()) * 3.0).abs() < 1e-6);
    }
}
