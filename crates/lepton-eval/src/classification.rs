//! Classification metrics from class probabilities.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub name: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// Averages over classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Averages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Everything about a classifier on one data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    pub samples: usize,
    pub accuracy: f64,
    /// `(k, accuracy)` of the true class being among the k most probable.
    pub top_k: Option<(usize, f64)>,
    /// Mean negative log-probability of the true class (probabilities clipped at 1e-15).
    pub log_loss: f64,
    pub per_class: Vec<ClassMetrics>,
    /// Unweighted mean over classes.
    pub macro_avg: Averages,
    /// Mean weighted by support.
    pub weighted_avg: Averages,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// Binary problems: area under the ROC curve of the second class's probability.
    pub roc_auc: Option<f64>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Metrics from true labels and `probs` (`[n, classes]` row-major).
pub fn classification(
    y_true: &[u32],
    probs: &[f32],
    class_names: &[String],
) -> Result<ClassificationReport> {
    let k = class_names.len();
    let n = y_true.len();
    if k == 0 || probs.len() != n * k {
        return Err(Error::Input(format!(
            "{} probabilities for {n} samples of {k} classes",
            probs.len()
        )));
    }
    if let Some(bad) = y_true.iter().find(|&&y| y as usize >= k) {
        return Err(Error::Input(format!(
            "label {bad} is out of range for {k} classes"
        )));
    }
    let rows: Vec<&[f32]> = probs.chunks(k).collect();
    let pred: Vec<usize> = rows
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .fold(0, |b, (i, &v)| if v > r[b] { i } else { b })
        })
        .collect();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&t, &p) in y_true.iter().zip(&pred) {
        confusion[t as usize][p] += 1;
    }
    let correct = (0..k).map(|c| confusion[c][c]).sum::<usize>();
    let mut per_class = Vec::with_capacity(k);
    for c in 0..k {
        let tp = confusion[c][c];
        let predicted: usize = (0..k).map(|t| confusion[t][c]).sum();
        let support: usize = confusion[c].iter().sum();
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        per_class.push(ClassMetrics {
            name: class_names[c].clone(),
            precision,
            recall,
            f1,
            support,
        });
    }
    let avg = |w: &dyn Fn(&ClassMetrics) -> f64| {
        let total: f64 = per_class.iter().map(w).sum();
        let f = |m: &dyn Fn(&ClassMetrics) -> f64| {
            if total > 0.0 {
                per_class.iter().map(|c| w(c) * m(c)).sum::<f64>() / total
            } else {
                0.0
            }
        };
        Averages {
            precision: f(&|c| c.precision),
            recall: f(&|c| c.recall),
            f1: f(&|c| c.f1),
        }
    };
    let macro_avg = avg(&|_| 1.0);
    let weighted_avg = avg(&|c| c.support as f64);
    let top_k = (k > 5).then(|| {
        let kk = 5;
        let hits = rows
            .iter()
            .zip(y_true)
            .filter(|(r, &t)| r.iter().filter(|&&v| v > r[t as usize]).count() < kk)
            .count();
        (kk, ratio(hits, n))
    });
    let log_loss = if n == 0 {
        0.0
    } else {
        rows.iter()
            .zip(y_true)
            .map(|(r, &t)| -(r[t as usize] as f64).clamp(1e-15, 1.0).ln())
            .sum::<f64>()
            / n as f64
    };
    let roc_auc = if k == 2 {
        let scores: Vec<f64> = rows.iter().map(|r| r[1] as f64).collect();
        let positive: Vec<bool> = y_true.iter().map(|&t| t == 1).collect();
        roc_auc(&scores, &positive)
    } else {
        None
    };
    Ok(ClassificationReport {
        samples: n,
        accuracy: ratio(correct, n),
        top_k,
        log_loss,
        per_class,
        macro_avg,
        weighted_avg,
        confusion,
        roc_auc,
    })
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (the Mann-Whitney statistic with average ranks, equal to the
/// trapezoidal area scikit-learn computes). `None` when one class is absent.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let pos = positive.iter().filter(|&&p| p).count();
    let neg = positive.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += order[i..=j].iter().filter(|&&o| positive[o]).count() as f64 * avg_rank;
        i = j + 1;
    }
    Some((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn hand_computed_three_class_case() {
        // true: 0 0 1 1 2 ; predicted: 0 1 1 1 0
        let probs = [
            0.8, 0.1, 0.1, 0.3, 0.6, 0.1, 0.1, 0.8, 0.1, 0.2, 0.7, 0.1, 0.5, 0.2, 0.3,
        ];
        let r = classification(&[0, 0, 1, 1, 2], &probs, &names(3)).unwrap();
        assert_eq!(
            r.confusion,
            vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]
        );
        assert!((r.accuracy - 0.6).abs() < 1e-12);
        assert!(
            (r.per_class[0].precision - 0.5).abs() < 1e-12
                && (r.per_class[0].recall - 0.5).abs() < 1e-12
        );
        assert!(
            (r.per_class[1].precision - 2.0 / 3.0).abs() < 1e-12 && r.per_class[1].recall == 1.0
        );
        assert_eq!(r.per_class[2].f1, 0.0);
        let f1_1 = 2.0 * (2.0 / 3.0) / (2.0 / 3.0 + 1.0);
        assert!((r.macro_avg.f1 - (0.5 + f1_1) / 3.0).abs() < 1e-12);
        assert!((r.weighted_avg.f1 - (0.5 * 2.0 + f1_1 * 2.0) / 5.0).abs() < 1e-12);
    }

    #[test]
    fn auc_with_ties_matches_the_pairwise_definition() {
        let scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4];
        let positive = [false, false, true, true, true, false];
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for i in 0..6 {
            for j in 0..6 {
                if positive[i] && !positive[j] {
                    pairs += 1.0;
                    wins += if scores[i] > scores[j] {
                        1.0
                    } else if scores[i] == scores[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        assert!((roc_auc(&scores, &positive).unwrap() - wins / pairs).abs() < 1e-12);
        assert_eq!(roc_auc(&[0.1], &[true]), None);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(classification(&[0, 3], &[0.5; 4], &names(2)).is_err());
        assert!(classification(&[0], &[0.5; 3], &names(2)).is_err());
    }
}
