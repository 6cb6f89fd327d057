//! Size budgets, checked by shape inference before a model allocates anything.
//!
//! Every size in a spec goes through checked arithmetic; the totals are then compared with a
//! [`Budget`]: the number of values in the model's tensors (parameters and buffers such as batch
//! norm's running statistics) and the number of activation values one sample produces across all
//! layers (what a training step keeps alive per sample). A spec such as `out-features = 1e12`
//! gets an error naming the field instead of a multi-terabyte allocation.

/// Default [`Budget::max_parameters`]: 2³⁰ values (4 GiB in f32).
pub const DEFAULT_MAX_PARAMETERS: u64 = 1 << 30;
/// Default [`Budget::max_activations`]: 2²⁸ values per sample (1 GiB in f32).
pub const DEFAULT_MAX_ACTIVATIONS: u64 = 1 << 28;

/// Limits on a model's size, checked by [`crate::ModelSpec::shapes_within`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The most values in the model's parameters and buffers together.
    /// Default [`DEFAULT_MAX_PARAMETERS`].
    pub max_parameters: u64,
    /// The most activation values one sample may produce over all layers (input excluded).
    /// Default [`DEFAULT_MAX_ACTIVATIONS`].
    pub max_activations: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_parameters: DEFAULT_MAX_PARAMETERS,
            max_activations: DEFAULT_MAX_ACTIVATIONS,
        }
    }
}

impl Budget {
    /// The default budget with another parameter limit.
    pub fn with_max_parameters(mut self, max: u64) -> Self {
        self.max_parameters = max;
        self
    }

    /// The default budget with another per-sample activation limit.
    pub fn with_max_activations(mut self, max: u64) -> Self {
        self.max_activations = max;
        self
    }
}

/// The number of elements of `shape`, or `None` when it overflows `u64`.
pub fn elements(shape: &[usize]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_overflow_is_none() {
        assert_eq!(elements(&[2, 3, 4]), Some(24));
        assert_eq!(elements(&[]), Some(1));
        assert_eq!(elements(&[usize::MAX, usize::MAX]), None);
    }
}
