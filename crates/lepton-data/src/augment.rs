//! Seeded image augmentation on normalised `[C, H, W]` features.
//!
//! Random crop with padding, rotation, shift and scale are composed into one affine map, sampled
//! bilinearly; pixels from outside the image take the channel's `fill` value (the normalised
//! black). The randomness comes from `(seed, epoch, sample index)` only.

use rand::Rng;

use crate::spec::AugmentSpec;
use crate::split::rng;

impl AugmentSpec {
    /// True when the spec changes nothing.
    pub fn is_identity(&self) -> bool {
        self.random_crop_padding == 0
            && self.rotate_degrees == 0.0
            && self.shift == 0.0
            && self.scale == 0.0
            && !self.horizontal_flip
    }
}

/// Augment one image in place. `img` is `[C, H, W]`; `fill` has one value per channel.
pub fn augment(
    spec: &AugmentSpec,
    img: &mut [f32],
    shape: [usize; 3],
    fill: &[f32],
    seed: u64,
    epoch: u64,
    index: u64,
) {
    if spec.is_identity() {
        return;
    }
    let [c, h, w] = shape;
    let mut r = rng(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15), index);
    let pad = spec.random_crop_padding as f32;
    let mut tx = if pad > 0.0 {
        r.random_range(-(pad as i64)..=pad as i64) as f32
    } else {
        0.0
    };
    let mut ty = if pad > 0.0 {
        r.random_range(-(pad as i64)..=pad as i64) as f32
    } else {
        0.0
    };
    if spec.shift > 0.0 {
        tx += r.random_range(-spec.shift..=spec.shift) * w as f32;
        ty += r.random_range(-spec.shift..=spec.shift) * h as f32;
    }
    let theta = if spec.rotate_degrees > 0.0 {
        r.random_range(-spec.rotate_degrees..=spec.rotate_degrees)
            .to_radians()
    } else {
        0.0
    };
    let s = if spec.scale > 0.0 {
        r.random_range(1.0 - spec.scale..=1.0 + spec.scale)
    } else {
        1.0
    };
    let flip = spec.horizontal_flip && r.random_bool(0.5);
    let (cos, sin) = (theta.cos(), theta.sin());
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let src = img.to_vec();
    for y in 0..h {
        for x in 0..w {
            // Output -> source: undo translation, then rotation and scale about the centre.
            let ox = if flip { (w - 1 - x) as f32 } else { x as f32 };
            let (dx, dy) = (ox - cx - tx, y as f32 - cy - ty);
            let sx = (cos * dx + sin * dy) / s + cx;
            let sy = (-sin * dx + cos * dy) / s + cy;
            for ch in 0..c {
                let plane = &src[ch * h * w..(ch + 1) * h * w];
                img[ch * h * w + y * w + x] = bilinear(plane, h, w, sx, sy, fill[ch]);
            }
        }
    }
}

fn bilinear(plane: &[f32], h: usize, w: usize, x: f32, y: f32, fill: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |xi: f32, yi: f32| {
        if xi < 0.0 || yi < 0.0 || xi >= w as f32 || yi >= h as f32 {
            fill
        } else {
            plane[yi as usize * w + xi as usize]
        }
    };
    let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx;
    let bottom = at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx;
    top * (1.0 - fy) + bottom * fy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_spec_changes_nothing_and_augmentation_is_seeded() {
        let img: Vec<f32> = (0..2 * 5 * 5).map(|i| i as f32).collect();
        let mut a = img.clone();
        augment(
            &AugmentSpec::default(),
            &mut a,
            [2, 5, 5],
            &[0.0, 0.0],
            1,
            0,
            0,
        );
        assert_eq!(a, img);
        let spec = AugmentSpec {
            random_crop_padding: 1,
            rotate_degrees: 10.0,
            ..Default::default()
        };
        let (mut b, mut c, mut d) = (img.clone(), img.clone(), img.clone());
        augment(&spec, &mut b, [2, 5, 5], &[0.0, 0.0], 1, 0, 3);
        augment(&spec, &mut c, [2, 5, 5], &[0.0, 0.0], 1, 0, 3);
        augment(&spec, &mut d, [2, 5, 5], &[0.0, 0.0], 1, 1, 3);
        assert_eq!(b, c);
        assert_ne!(b, d);
    }

    #[test]
    fn pure_shift_moves_pixels_by_whole_steps() {
        // A shift of exactly one pixel: the flip of a 1x3 ramp is its reverse.
        let spec = AugmentSpec {
            horizontal_flip: true,
            ..Default::default()
        };
        let img = vec![1.0, 2.0, 3.0];
        let mut flipped = false;
        for i in 0..16 {
            let mut a = img.clone();
            augment(&spec, &mut a, [1, 1, 3], &[0.0], 0, 0, i);
            assert!(a == img || a == vec![3.0, 2.0, 1.0], "{a:?}");
            flipped |= a != img;
        }
        assert!(flipped);
    }
}
