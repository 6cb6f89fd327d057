//! In-memory datasets of preprocessed `f32` features.

use serde::{Deserialize, Serialize};

/// What the model predicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Targets {
    /// Class indices into `class_names`.
    Classes {
        labels: Vec<u32>,
        class_names: Vec<String>,
    },
    /// One real value per sample (standardised when the preprocessor says so).
    Regression { values: Vec<f32> },
}

impl Targets {
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Regression { values } => values.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The class index of every sample (all zeros for regression, which has no strata).
    pub fn strata(&self) -> Vec<u32> {
        match self {
            Targets::Classes { labels, .. } => labels.clone(),
            Targets::Regression { values } => vec![0; values.len()],
        }
    }
    fn select(&self, idx: &[usize]) -> Targets {
        match self {
            Targets::Classes {
                labels,
                class_names,
            } => Targets::Classes {
                labels: idx.iter().map(|&i| labels[i]).collect(),
                class_names: class_names.clone(),
            },
            Targets::Regression { values } => Targets::Regression {
                values: idx.iter().map(|&i| values[i]).collect(),
            },
        }
    }
}

/// Samples with features of one shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `[N, ...sample_shape]`, row-major.
    pub features: Vec<f32>,
    pub sample_shape: Vec<usize>,
    pub targets: Targets,
    /// Per-sample loss weights (class re-weighting), when enabled.
    pub weights: Option<Vec<f32>>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.targets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of `f32` values per sample.
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }
    /// The features of sample `i`.
    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.features[i * n..(i + 1) * n]
    }
    /// A new dataset with the given samples, in that order.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(idx.len() * self.sample_len());
        for &i in idx {
            features.extend_from_slice(self.sample(i));
        }
        Dataset {
            features,
            sample_shape: self.sample_shape.clone(),
            targets: self.targets.select(idx),
            weights: self
                .weights
                .as_ref()
                .map(|w| idx.iter().map(|&i| w[i]).collect()),
        }
    }
    /// Class re-weighting (`balance = "reweight"`): each sample weighs
    /// `n / (classes * count(its class))`; regression data are left as they are.
    pub fn reweight_classes(&mut self) {
        if let Targets::Classes {
            labels,
            class_names,
        } = &self.targets
        {
            let k = class_names.len().max(1);
            let mut counts = vec![0usize; k];
            for &l in labels {
                counts[l as usize] += 1;
            }
            let n = labels.len() as f32;
            self.weights = Some(
                labels
                    .iter()
                    .map(|&l| n / (k as f32 * counts[l as usize].max(1) as f32))
                    .collect(),
            );
        }
    }

    /// Class names for classification, empty for regression.
    pub fn class_names(&self) -> &[String] {
        match &self.targets {
            Targets::Classes { class_names, .. } => class_names,
            Targets::Regression { .. } => &[],
        }
    }
}
