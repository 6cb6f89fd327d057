//! Budgets a photon must fit before anything in it is allocated or built.

/// Upper bounds checked when a photon is opened, before the header is parsed or a tensor is
/// allocated. The defaults take every model the trainer writes with a wide margin (the MNIST CNN
/// needs 21,632 activation values per sample, a 224x224 RGB ResNet stem about 800,000) and refuse
/// files that would make `predict` or `serve` allocate gigabytes per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest header (the JSON manifest), in bytes. Default 16 MiB.
    pub max_header_bytes: u64,
    /// Largest safetensors header inside the weights, in bytes. Default 16 MiB.
    pub max_weights_header_bytes: u64,
    /// Most tensors in the weights. Default 65,536.
    pub max_tensors: usize,
    /// Most dimensions of any tensor or shape. Default 8.
    pub max_rank: usize,
    /// Most values per sample at the input and after any layer (shape inference over the model
    /// spec). Default 2^24 (64 MiB of f32 per sample), e.g. a 3x2048x2048 image.
    pub max_sample_values: usize,
    /// Most classes, table columns or categories of one column. Default 2^20. (Layer settings
    /// are bounded by lepton-nn's parameter and activation budget.)
    pub max_setting: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 << 20,
            max_weights_header_bytes: 16 << 20,
            max_tensors: 1 << 16,
            max_rank: 8,
            max_sample_values: 1 << 24,
            max_setting: 1 << 20,
        }
    }
}

impl Limits {
    /// Set [`Limits::max_sample_values`] (default 2^24).
    pub fn with_max_sample_values(mut self, n: usize) -> Self {
        self.max_sample_values = n;
        self
    }

    /// Set [`Limits::max_header_bytes`] (default 16 MiB).
    pub fn with_max_header_bytes(mut self, n: u64) -> Self {
        self.max_header_bytes = n;
        self
    }
}
