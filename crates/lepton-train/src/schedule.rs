//! Learning-rate schedules, evaluated per optimizer step.
//!
//! With base rate `lr`, `T` total steps, `W` warm-up steps and `t` the 0-based step:
//!
//! | kind | rate at step `t` |
//! |---|---|
//! | constant | `lr` |
//! | step | `lr * gamma^floor(t / (step-size * steps-per-epoch))` (step-size in epochs, as `StepLR` stepped per epoch) |
//! | cosine | `min-lr + (lr - min-lr) * (1 + cos(pi * (t - W) / (T - W))) / 2` (`CosineAnnealingLR`) |
//! | one-cycle | `OneCycleLR` with cosine annealing: from `max-lr / div-factor` up to `max-lr` over the first `pct-start * T` steps, then down to `max-lr / (div-factor * final-div-factor)` |
//!
//! Linear warm-up multiplies the rate by `(t + 1) / W` for `t < W`.

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

use crate::error::{Error, Result};

/// The shape of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// The optimizer's `lr` throughout. The default.
    #[default]
    Constant,
    /// Multiply by `gamma` every `step-size` epochs.
    Step,
    /// Cosine annealing from `lr` to `min-lr` over the run (after warm-up).
    Cosine,
    /// The one-cycle policy (Smith 2018) with cosine annealing.
    OneCycle,
}

/// The `[schedule]` section of a spec. Keys that do not belong to the chosen `kind` are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScheduleSpec {
    /// Default constant.
    #[serde(default)]
    pub kind: ScheduleKind,
    /// Linear warm-up over this many steps. Default 0.
    #[serde(default)]
    pub warmup_steps: u64,
    /// step: epochs between decays. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_size: Option<usize>,
    /// step: decay factor in (0, 1]. Default 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// cosine: final learning rate. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_lr: Option<f64>,
    /// one-cycle: peak learning rate. Default: the optimizer's `lr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lr: Option<f64>,
    /// one-cycle: fraction of the run spent increasing the rate. Default 0.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pct_start: Option<f64>,
    /// one-cycle: initial rate = `max-lr / div-factor`. Default 25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub div_factor: Option<f64>,
    /// one-cycle: final rate = initial rate / `final-div-factor`. Default 1e4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_div_factor: Option<f64>,
}

impl ScheduleSpec {
    /// Range checks, and keys that do not apply to `kind`; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let allowed: &[&str] = match self.kind {
            ScheduleKind::Constant => &[],
            ScheduleKind::Step => &["step-size", "gamma"],
            ScheduleKind::Cosine => &["min-lr"],
            ScheduleKind::OneCycle => &["max-lr", "pct-start", "div-factor", "final-div-factor"],
        };
        let present = [
            ("step-size", self.step_size.is_some()),
            ("gamma", self.gamma.is_some()),
            ("min-lr", self.min_lr.is_some()),
            ("max-lr", self.max_lr.is_some()),
            ("pct-start", self.pct_start.is_some()),
            ("div-factor", self.div_factor.is_some()),
            ("final-div-factor", self.final_div_factor.is_some()),
        ];
        for (key, set) in present {
            if set && !allowed.contains(&key) {
                return Err(Error::spec(
                    format!("schedule.{key}"),
                    format!("does not apply to kind = \"{}\"", kind_name(self.kind)),
                ));
            }
        }
        let check = |ok: bool, key: &str, msg: String| {
            if ok {
                Ok(())
            } else {
                Err(Error::spec(format!("schedule.{key}"), msg))
            }
        };
        if let Some(s) = self.step_size {
            check(s >= 1, "step-size", "must be at least 1".into())?;
        }
        if let Some(g) = self.gamma {
            check(
                g > 0.0 && g <= 1.0,
                "gamma",
                format!("must be in (0, 1], got {g}"),
            )?;
        }
        if let Some(m) = self.min_lr {
            check(m >= 0.0, "min-lr", format!("must be >= 0, got {m}"))?;
        }
        if let Some(m) = self.max_lr {
            check(
                m > 0.0 && m.is_finite(),
                "max-lr",
                format!("must be > 0, got {m}"),
            )?;
        }
        if let Some(p) = self.pct_start {
            check(
                p > 0.0 && p < 1.0,
                "pct-start",
                format!("must be in (0, 1), got {p}"),
            )?;
        }
        if let Some(d) = self.div_factor {
            check(d > 0.0, "div-factor", format!("must be > 0, got {d}"))?;
        }
        if let Some(d) = self.final_div_factor {
            check(d > 0.0, "final-div-factor", format!("must be > 0, got {d}"))?;
        }
        Ok(())
    }
}

fn kind_name(k: ScheduleKind) -> &'static str {
    match k {
        ScheduleKind::Constant => "constant",
        ScheduleKind::Step => "step",
        ScheduleKind::Cosine => "cosine",
        ScheduleKind::OneCycle => "one-cycle",
    }
}

/// A schedule resolved for one run.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: ScheduleSpec,
    base_lr: f64,
    total_steps: u64,
    steps_per_epoch: u64,
}

impl Schedule {
    pub fn new(spec: &ScheduleSpec, base_lr: f64, total_steps: u64, steps_per_epoch: u64) -> Self {
        Self {
            spec: spec.clone(),
            base_lr,
            total_steps: total_steps.max(1),
            steps_per_epoch: steps_per_epoch.max(1),
        }
    }

    /// The learning rate for 0-based step `t`.
    pub fn lr(&self, t: u64) -> f64 {
        let w = self.spec.warmup_steps;
        let sp = &self.spec;
        let lr = match sp.kind {
            ScheduleKind::Constant => self.base_lr,
            ScheduleKind::Step => {
                let k = t / (sp.step_size.unwrap_or(1) as u64 * self.steps_per_epoch);
                self.base_lr * sp.gamma.unwrap_or(0.1).powi(k.min(i32::MAX as u64) as i32)
            }
            ScheduleKind::Cosine => {
                let min_lr = sp.min_lr.unwrap_or(0.0);
                let span = self.total_steps.saturating_sub(w).max(1) as f64;
                let x = (t.saturating_sub(w) as f64 / span).min(1.0);
                min_lr + (self.base_lr - min_lr) * (1.0 + (PI * x).cos()) / 2.0
            }
            ScheduleKind::OneCycle => {
                let max_lr = sp.max_lr.unwrap_or(self.base_lr);
                let initial = max_lr / sp.div_factor.unwrap_or(25.0);
                let min_lr = initial / sp.final_div_factor.unwrap_or(1e4);
                // As OneCycleLR: the phases end at steps pct_start * T - 1 and T - 1.
                let total = self.total_steps as f64;
                let end_up = (sp.pct_start.unwrap_or(0.3) * total - 1.0).max(1.0);
                let end_down = (total - 1.0).max(end_up + 1.0);
                let t = t as f64;
                let cos = |start: f64, end: f64, pct: f64| {
                    end + (start - end) / 2.0 * ((PI * pct.clamp(0.0, 1.0)).cos() + 1.0)
                };
                if t <= end_up {
                    cos(initial, max_lr, t / end_up)
                } else {
                    cos(max_lr, min_lr, (t - end_up) / (end_down - end_up))
                }
            }
        };
        if t < w {
            lr * (t + 1) as f64 / w as f64
        } else {
            lr
        }
    }
}

#[cfg(test)]
mod tests {
    //! Against PyTorch's schedulers (`bench/parity/make_optim_golden.py`).
    use super::*;

    const GOLDEN: &str = include_str!("../../../bench/parity/optim_golden.json");

    #[test]
    fn schedules_match_pytorch() {
        let g: serde_json::Value = serde_json::from_str(GOLDEN).unwrap();
        let cases = g["schedules"].as_object().unwrap();
        assert_eq!(cases.len(), 4);
        for (name, case) in cases {
            let json = serde_json::to_string(&case["spec"])
                .unwrap()
                .replace('_', "-");
            let spec: ScheduleSpec = serde_json::from_str(&json).unwrap();
            spec.validate().unwrap();
            let want: Vec<f64> = case["lrs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let s = Schedule::new(
                &spec,
                0.1,
                want.len() as u64,
                case["steps_per_epoch"].as_u64().unwrap(),
            );
            for (t, w) in want.iter().enumerate() {
                let got = s.lr(t as u64);
                assert!(
                    (got - w).abs() < 1e-9 + 1e-7 * w.abs(),
                    "{name} step {t}: ours {got}, torch {w}"
                );
            }
        }
    }

    #[test]
    fn keys_of_another_kind_are_refused() {
        let spec: ScheduleSpec = toml::from_str("kind = \"cosine\"\ngamma = 0.5").unwrap();
        let err = spec.validate().unwrap_err().to_string();
        assert!(
            err.contains("schedule.gamma") && err.contains("cosine"),
            "{err}"
        );
        let err = toml::from_str::<ScheduleSpec>("kind = \"cosine\"\nmin-rl = 0.5")
            .unwrap_err()
            .to_string();
        assert!(err.contains("min-rl"), "{err}");
    }
}
