//! Regression metrics.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionReport {
    pub samples: usize,
    pub mse: f64,
    pub rmse: f64,
    pub mae: f64,
    /// Coefficient of determination, `1 - SS_res / SS_tot` (0 when the targets are constant).
    pub r2: f64,
}

pub fn regression(y_true: &[f32], y_pred: &[f32]) -> Result<RegressionReport> {
    if y_true.len() != y_pred.len() || y_true.is_empty() {
        return Err(Error::Input(format!(
            "{} targets and {} predictions",
            y_true.len(),
            y_pred.len()
        )));
    }
    let n = y_true.len() as f64;
    let mean = y_true.iter().map(|&v| v as f64).sum::<f64>() / n;
    let ss_res: f64 = y_true
        .iter()
        .zip(y_pred)
        .map(|(&t, &p)| (t as f64 - p as f64).powi(2))
        .sum();
    let ss_tot: f64 = y_true.iter().map(|&t| (t as f64 - mean).powi(2)).sum();
    let mse = ss_res / n;
    Ok(RegressionReport {
        samples: y_true.len(),
        mse,
        rmse: mse.sqrt(),
        mae: y_true
            .iter()
            .zip(y_pred)
            .map(|(&t, &p)| (t as f64 - p as f64).abs())
            .sum::<f64>()
            / n,
        r2: if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        let r = regression(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]).unwrap();
        assert!((r.mse - 0.375).abs() < 1e-12);
        assert!((r.mae - 0.5).abs() < 1e-12);
        // scikit-learn's r2_score documentation example: 0.948...
        assert!((r.r2 - 0.9486081370449679).abs() < 1e-12);
    }
}
