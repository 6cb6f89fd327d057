//! `lepton runs list`: sorting, filtering and the table.

use serde::Deserialize;

use crate::run::{RunInfo, Status};
use crate::table::{self, Table};

/// Sort keys of `runs list --sort`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SortKey {
    Name,
    Kind,
    Status,
    Epochs,
    /// Best monitored value, higher first (lower first for a `*loss*` metric).
    Best,
    Time,
    Size,
    /// Most recently changed first (the default).
    #[default]
    Updated,
}

impl std::str::FromStr for SortKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
            format!(
                "unknown sort key {s:?} (name, kind, status, epochs, best, time, size, updated)"
            )
        })
    }
}

/// Which runs `runs list` shows and in which order.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub sort: SortKey,
    pub reverse: bool,
    /// Keep runs whose name or id contains this (case-insensitive).
    pub filter: Option<String>,
    pub status: Option<Status>,
    pub kind: Option<String>,
}

impl ListQuery {
    /// Filter then sort `runs` in place.
    pub fn apply(&self, runs: &mut Vec<RunInfo>) {
        if let Some(f) = &self.filter {
            let f = f.to_lowercase();
            runs.retain(|r| r.name.to_lowercase().contains(&f) || r.id.to_lowercase().contains(&f));
        }
        if let Some(s) = self.status {
            runs.retain(|r| r.status == s);
        }
        if let Some(k) = &self.kind {
            runs.retain(|r| r.kind.eq_ignore_ascii_case(k));
        }
        let key = self.sort;
        runs.sort_by(|a, b| {
            use std::cmp::Ordering;
            let by_f64 = |x: Option<f64>, y: Option<f64>| {
                // Absent values last, whatever the direction.
                match (x, y) {
                    (Some(x), Some(y)) => y.total_cmp(&x),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                }
            };
            let ord = match key {
                SortKey::Name => a.name.cmp(&b.name),
                SortKey::Kind => a.kind.cmp(&b.kind),
                SortKey::Status => a.status.cmp(&b.status),
                SortKey::Epochs => b.epochs.cmp(&a.epochs),
                SortKey::Best => by_f64(best_score(a), best_score(b)),
                SortKey::Time => by_f64(Some(a.train_seconds), Some(b.train_seconds)),
                SortKey::Size => by_f64(
                    a.photon_bytes.map(|n| n as f64),
                    b.photon_bytes.map(|n| n as f64),
                ),
                SortKey::Updated => by_f64(a.updated, b.updated),
            };
            ord.then_with(|| a.id.cmp(&b.id))
        });
        if self.reverse {
            runs.reverse();
        }
    }
}

/// The best value oriented so that higher is better.
fn best_score(r: &RunInfo) -> Option<f64> {
    let b = r.best.as_ref()?;
    Some(if b.metric.contains("loss") || b.metric.contains("error") {
        -b.value
    } else {
        b.value
    })
}

/// The `runs list` table.
pub fn render(runs: &[RunInfo]) -> String {
    let mut t = Table::new([
        "NAME", "ID", "KIND", "STATUS", "EPOCHS", "BEST", "TIME", "SIZE",
    ]);
    for r in runs {
        let epochs = match r.epochs_planned {
            Some(p) => format!("{}/{p}", r.epochs),
            None => r.epochs.to_string(),
        };
        let best = r.best.as_ref().map_or_else(
            || "-".into(),
            |b| format!("{} {}", table::number(b.value), b.metric),
        );
        t.row([
            r.name.clone(),
            r.id.clone(),
            r.kind.clone(),
            r.status.as_str().into(),
            epochs,
            best,
            table::duration(r.train_seconds),
            r.photon_bytes.map_or_else(|| "-".into(), table::bytes),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Best;

    fn info(
        id: &str,
        kind: &str,
        status: Status,
        best: Option<(&str, f64)>,
        updated: f64,
    ) -> RunInfo {
        RunInfo {
            id: id.into(),
            path: id.into(),
            name: id.into(),
            kind: kind.into(),
            status,
            marker: None,
            error: None,
            epochs: 1,
            epochs_planned: None,
            steps: 1,
            best: best.map(|(m, v)| Best {
                metric: m.into(),
                value: v,
                epoch: 0,
            }),
            train_seconds: 1.0,
            updated: Some(updated),
            photon_bytes: None,
            weights_bytes: None,
            report: Default::default(),
            warnings: Vec::new(),
        }
    }

    fn ids(runs: &[RunInfo]) -> Vec<&str> {
        runs.iter().map(|r| r.id.as_str()).collect()
    }

    fn runs() -> Vec<RunInfo> {
        vec![
            info(
                "mnist-cnn",
                "cnn",
                Status::Done,
                Some(("val-accuracy", 0.99)),
                3.0,
            ),
            info(
                "iris-a",
                "mlp",
                Status::Failed,
                Some(("val-accuracy", 0.9)),
                1.0,
            ),
            info("iris-b", "mlp", Status::Running, None, 2.0),
        ]
    }

    #[test]
    fn default_order_is_most_recent_first() {
        let mut r = runs();
        ListQuery::default().apply(&mut r);
        assert_eq!(ids(&r), ["mnist-cnn", "iris-b", "iris-a"]);
    }

    #[test]
    fn best_sorts_higher_first_with_missing_last_and_loss_lower_first() {
        let mut r = runs();
        let q = ListQuery {
            sort: "best".parse().unwrap(),
            ..ListQuery::default()
        };
        q.apply(&mut r);
        assert_eq!(ids(&r), ["mnist-cnn", "iris-a", "iris-b"]);
        let mut losses = vec![
            info("a", "mlp", Status::Done, Some(("val-loss", 0.5)), 0.0),
            info("b", "mlp", Status::Done, Some(("val-loss", 0.1)), 0.0),
        ];
        q.apply(&mut losses);
        assert_eq!(ids(&losses), ["b", "a"]);
    }

    #[test]
    fn filters_combine_and_reverse_applies_last() {
        let mut r = runs();
        ListQuery {
            filter: Some("IRIS".into()),
            kind: Some("mlp".into()),
            sort: SortKey::Name,
            reverse: true,
            ..ListQuery::default()
        }
        .apply(&mut r);
        assert_eq!(ids(&r), ["iris-b", "iris-a"]);
        let mut r = runs();
        ListQuery {
            status: Some(Status::Done),
            ..ListQuery::default()
        }
        .apply(&mut r);
        assert_eq!(ids(&r), ["mnist-cnn"]);
    }

    #[test]
    fn unknown_sort_key_names_the_choices() {
        let err = "speed".parse::<SortKey>().unwrap_err();
        assert!(err.contains("speed") && err.contains("updated"), "{err}");
    }

    #[test]
    fn table_has_a_row_per_run() {
        let text = render(&runs());
        assert_eq!(text.lines().count(), 4);
        assert!(
            text.lines().nth(1).unwrap().contains("0.9900 val-accuracy"),
            "{text}"
        );
    }
}
