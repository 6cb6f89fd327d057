//! Saliency maps (Simonyan et al. 2014): the gradient of the target score with respect to the
//! input, `|∂y_t/∂x|` (captum's `Saliency` with `abs=True`, its default), or gradient × input
//! `x ⊙ ∂y_t/∂x` (captum's `InputXGradient`). One forward and one backward pass.
//!
//! # Shapes
//! `x`: one sample, the model's per-sample shape; the attribution has the same shape.

use candle_core::Tensor;
use serde_json::json;

use crate::attribution::{Attribution, Method};
use crate::error::{during, Result};
use crate::scorer::{batch_of_one, target_gradient, values, Scorer};

/// The saliency (`times_input = false`) or gradient × input (`true`) of `target` at `x`.
pub fn saliency(
    model: &dyn Scorer,
    x: &Tensor,
    target: usize,
    times_input: bool,
) -> Result<Attribution> {
    let (g, score) = target_gradient(model, &batch_of_one(x)?, target)?;
    let g = g.squeeze(0).map_err(during("reading the gradient"))?;
    let a = if times_input {
        (&g * x).map_err(during("gradient times input"))?
    } else {
        g.abs().map_err(during("absolute gradient"))?
    };
    Ok(Attribution {
        method: if times_input {
            Method::GradientXInput
        } else {
            Method::Saliency
        },
        target,
        shape: x.dims().to_vec(),
        attributions: values(&a)?,
        score: score[0],
        params: json!({}),
        checks: json!({}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::FnScorer;
    use candle_core::{Device, D};

    #[test]
    fn the_saliency_of_a_quadratic_is_its_analytic_gradient() {
        // y_0 = Σ x², y_1 = Σ 3x: ∂y_0/∂x = 2x, ∂y_1/∂x = 3.
        let m = FnScorer(|x: &Tensor| {
            Tensor::cat(
                &[
                    &x.sqr()?.sum_keepdim(D::Minus1)?,
                    &x.affine(3.0, 0.0)?.sum_keepdim(D::Minus1)?,
                ],
                1,
            )
        });
        let x = Tensor::new(&[1f32, -2.0, 0.5], &Device::Cpu).unwrap();
        let s = saliency(&m, &x, 0, false).unwrap();
        assert_eq!(s.attributions, vec![2.0, 4.0, 1.0]);
        assert_eq!(s.score, 5.25);
        let gi = saliency(&m, &x, 0, true).unwrap();
        assert_eq!(gi.attributions, vec![2.0, 8.0, 0.5]);
        assert_eq!(
            saliency(&m, &x, 1, false).unwrap().attributions,
            vec![3.0; 3]
        );
        let e = saliency(&m, &x, 2, false).unwrap_err().to_string();
        assert!(e.contains("invalid target"), "{e}");
    }
}
