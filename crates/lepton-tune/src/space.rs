//! The search space: a TOML file mapping dotted spec keys to ranges.
//!
//! ```toml
//! "optimizer.lr" = { kind = "log", low = 1e-4, high = 1e-1 }
//! "model.layers.1.out-features" = { kind = "int", low = 32, high = 512 }   # array index 1
//! "train.batch-size" = { kind = "choice", values = [32, 64, 128] }
//! "optimizer.momentum" = { kind = "linear", low = 0.0, high = 0.95, points = 4 }
//! ```
//!
//! Kinds: `log` (uniform in `ln`), `linear`, `int` (inclusive bounds), `choice` (any TOML values).
//! `points` (default 3) is how many values a grid search takes from a `log`, `linear` or `int`
//! range. A key must already be written in the spec (with any value): a typo is an error before
//! any training.
//!
//! Every parameter maps a unit value `u` in `[0, 1)` to its value, so samplers work on the unit
//! cube: `log` is `exp(ln low + u (ln high - ln low))`, `int` is `low + floor(u (high - low + 1))`,
//! `choice` is `values[floor(u n)]`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// One parameter's range.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Range {
    /// Log-uniform over `[low, high]`, `0 < low < high`.
    Log {
        low: f64,
        high: f64,
        #[serde(default = "default_points")]
        points: usize,
    },
    /// Uniform over `[low, high]`, `low < high`.
    Linear {
        low: f64,
        high: f64,
        #[serde(default = "default_points")]
        points: usize,
    },
    /// Integers `low..=high`, `low <= high`.
    Int {
        low: i64,
        high: i64,
        #[serde(default = "default_points")]
        points: usize,
    },
    /// One of `values` (at least one).
    Choice { values: Vec<toml::Value> },
}

fn default_points() -> usize {
    3
}

impl Range {
    fn validate(&self, key: &str) -> Result<()> {
        let bad = |m: String| {
            Err(Error::Range {
                key: key.into(),
                message: m,
            })
        };
        match self {
            Range::Log { low, high, points } | Range::Linear { low, high, points } => {
                if !(low.is_finite() && high.is_finite() && low < high) {
                    return bad(format!("empty range: low {low} must be below high {high}"));
                }
                if matches!(self, Range::Log { .. }) && *low <= 0.0 {
                    return bad(format!("a log range needs low > 0, got {low}"));
                }
                if *points < 2 {
                    return bad(format!("points must be at least 2, got {points}"));
                }
            }
            Range::Int { low, high, points } => {
                if low > high {
                    return bad(format!("empty range: low {low} is above high {high}"));
                }
                if *points < 1 {
                    return bad("points must be at least 1".into());
                }
            }
            Range::Choice { values } => {
                if values.is_empty() {
                    return bad("empty range: values is empty".into());
                }
            }
        }
        Ok(())
    }

    /// The value at unit coordinate `u` in `[0, 1)`.
    pub fn value(&self, u: f64) -> toml::Value {
        let u = u.clamp(0.0, 1.0);
        match self {
            Range::Log { low, high, .. } => toml::Value::Float(
                (low.ln() + u * (high.ln() - low.ln()))
                    .exp()
                    .clamp(*low, *high),
            ),
            Range::Linear { low, high, .. } => {
                toml::Value::Float((low + u * (high - low)).clamp(*low, *high))
            }
            Range::Int { low, high, .. } => {
                let n = (high - low + 1) as f64;
                toml::Value::Integer((low + (u * n).floor() as i64).min(*high))
            }
            Range::Choice { values } => {
                let i = ((u * values.len() as f64).floor() as usize).min(values.len() - 1);
                values[i].clone()
            }
        }
    }

    /// The unit coordinates a grid search visits.
    pub fn grid(&self) -> Vec<f64> {
        let even = |n: usize| -> Vec<f64> {
            if n == 1 {
                return vec![0.5];
            }
            (0..n).map(|i| i as f64 / (n - 1) as f64).collect()
        };
        match self {
            Range::Log { points, .. } | Range::Linear { points, .. } => even(*points),
            Range::Int { low, high, points } => {
                let n = (high - low + 1) as usize;
                // The centre of each integer's cell, or `points` of them spread out.
                let take = n.min(*points);
                let idx: Vec<usize> = if take == n {
                    (0..n).collect()
                } else {
                    even(take)
                        .into_iter()
                        .map(|u| (u * (n - 1) as f64).round() as usize)
                        .collect()
                };
                idx.into_iter()
                    .map(|i| (i as f64 + 0.5) / n as f64)
                    .collect()
            }
            Range::Choice { values } => {
                let n = values.len();
                (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect()
            }
        }
    }
}

/// Parameters by dotted key, in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub params: BTreeMap<String, Range>,
}

impl Space {
    /// Read and validate a space file.
    pub fn from_file(path: &Path) -> Result<Space> {
        let text = fs_err::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
        Space::parse(&text, path)
    }

    /// Parse space TOML (`path` names it in errors). Nested tables are flattened into dotted
    /// keys, so `[optimizer] lr = {...}` and `"optimizer.lr" = {...}` are the same.
    pub fn parse(text: &str, path: &Path) -> Result<Space> {
        let perr = |message: String| Error::SpaceParse {
            path: path.into(),
            message,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| perr(e.to_string()))?;
        let mut params = BTreeMap::new();
        flatten(&table, "", &mut params, &perr)?;
        if params.is_empty() {
            return Err(perr("no parameters: the space is empty".into()));
        }
        for (k, r) in &params {
            r.validate(k)?;
        }
        Ok(Space { params })
    }

    /// Check every key against the spec's TOML (`spec_path` names it in errors).
    pub fn check_keys(&self, spec: &toml::Table, spec_path: &Path) -> Result<()> {
        for key in self.params.keys() {
            if lookup(spec, key).is_none() {
                return Err(Error::UnknownKey {
                    key: key.clone(),
                    spec: spec_path.into(),
                });
            }
        }
        Ok(())
    }

    /// The values at unit coordinates `u` (one per parameter, in key order).
    pub fn values(&self, u: &[f64]) -> BTreeMap<String, toml::Value> {
        self.params
            .iter()
            .zip(u)
            .map(|((k, r), &u)| (k.clone(), r.value(u)))
            .collect()
    }
}

fn flatten(
    table: &toml::Table,
    prefix: &str,
    out: &mut BTreeMap<String, Range>,
    perr: &dyn Fn(String) -> Error,
) -> Result<()> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if t.contains_key("kind") => {
                let r: Range = toml::Value::Table(t.clone())
                    .try_into()
                    .map_err(|e: toml::de::Error| perr(format!("`{key}`: {}", e.message())))?;
                out.insert(key, r);
            }
            toml::Value::Table(t) => flatten(t, &key, out, perr)?,
            _ => {
                return Err(perr(format!(
                    "`{key}`: expected a range table such as {{ kind = \"log\", low = 1e-4, high = 0.1 }}"
                )))
            }
        }
    }
    Ok(())
}

/// The value at a dotted key (numeric segments index arrays).
pub fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut cur = table.get(parts.next()?)?;
    for p in parts {
        cur = match cur {
            toml::Value::Table(t) => t.get(p)?,
            toml::Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Overwrite the value at a dotted key that [`lookup`] finds.
pub fn assign(table: &mut toml::Table, key: &str, value: toml::Value) -> bool {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else {
        return false;
    };
    let mut cur: &mut toml::Value = match parts.first() {
        Some(first) => match table.get_mut(*first) {
            Some(v) => v,
            None => return false,
        },
        None => {
            return table.get_mut(last).map(|v| *v = value).is_some();
        }
    };
    for p in &parts[1..] {
        cur = match cur {
            toml::Value::Table(t) => match t.get_mut(*p) {
                Some(v) => v,
                None => return false,
            },
            toml::Value::Array(a) => match p.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    let slot = match cur {
        toml::Value::Table(t) => t.get_mut(last),
        toml::Value::Array(a) => last.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    };
    slot.map(|v| *v = value).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Space> {
        Space::parse(s, Path::new("space.toml"))
    }

    #[test]
    fn ranges_map_the_unit_interval() {
        let s = parse(
            r#""optimizer.lr" = { kind = "log", low = 1e-4, high = 1e-2 }
               [model.layers.0]
               out-features = { kind = "int", low = 2, high = 4 }
               [train]
               batch-size = { kind = "choice", values = [16, 32] }"#,
        )
        .unwrap();
        let keys: Vec<_> = s.params.keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "model.layers.0.out-features",
                "optimizer.lr",
                "train.batch-size"
            ]
        );
        let v = s.values(&[0.0, 0.5, 0.99]);
        assert_eq!(v["model.layers.0.out-features"], toml::Value::Integer(2));
        assert!((v["optimizer.lr"].as_float().unwrap() - 1e-3).abs() < 1e-12);
        assert_eq!(v["train.batch-size"], toml::Value::Integer(32));
        assert_eq!(s.params["model.layers.0.out-features"].grid().len(), 3);
    }

    #[test]
    fn empty_ranges_are_refused_naming_the_key() {
        for (text, want) in [
            (
                r#""optimizer.lr" = { kind = "log", low = 0.1, high = 0.1 }"#,
                "low 0.1 must be below",
            ),
            (
                r#""a.b" = { kind = "int", low = 5, high = 4 }"#,
                "low 5 is above high 4",
            ),
            (
                r#""a.b" = { kind = "choice", values = [] }"#,
                "values is empty",
            ),
            (
                r#""a.b" = { kind = "log", low = 0.0, high = 1.0 }"#,
                "low > 0",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains('`'), "{err}");
        }
        let err = parse(r#""a.b" = { kind = "logg", low = 1, high = 2 }"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`a.b`") && err.contains("logg"), "{err}");
        let err = parse(r#""a.b" = { kind = "log", low = 1, high = 2, hgih = 3 }"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("hgih"), "{err}");
    }

    #[test]
    fn keys_must_exist_in_the_spec_and_assign_in_place() {
        let mut spec: toml::Table =
            toml::from_str("[optimizer]\nlr = 0.1\n[model]\n[[model.layers]]\nout-features = 8\n")
                .unwrap();
        let s = parse(r#""optimizer.lrr" = { kind = "log", low = 1e-4, high = 1e-2 }"#).unwrap();
        let err = s
            .check_keys(&spec, Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`optimizer.lrr` is not in the spec m.toml"),
            "{err}"
        );
        assert!(assign(
            &mut spec,
            "model.layers.0.out-features",
            toml::Value::Integer(3)
        ));
        assert_eq!(
            lookup(&spec, "model.layers.0.out-features")
                .unwrap()
                .as_integer(),
            Some(3)
        );
        assert!(!assign(
            &mut spec,
            "model.layers.1.out-features",
            toml::Value::Integer(3)
        ));
    }
}
