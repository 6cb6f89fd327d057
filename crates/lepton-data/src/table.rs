//! CSV tables: reading raw cells, choosing the label column and the task.

use std::path::{Path, PathBuf};

use crate::budget::{open_file, MAX_FILE_BYTES};
use crate::error::{Error, Result};
use crate::spec::{DataSpec, Task};

/// A CSV file read as strings: feature columns and the label column. Empty cells are `None`.
#[derive(Debug, Clone)]
pub struct Table {
    pub path: PathBuf,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    pub label_name: String,
    pub labels: Vec<String>,
    /// 1-based line numbers of the rows in the file, for error messages.
    pub lines: Vec<u64>,
}

/// Parse CSV text from any reader. `label` names or indexes the label column.
pub fn read_table<R: std::io::Read>(
    reader: R,
    path: &Path,
    header: bool,
    label: Option<&str>,
    label_index: Option<i64>,
    drop: &[String],
) -> Result<Table> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let mut records = rdr.records();
    let first = match records.next() {
        Some(r) => r.map_err(|e| Error::format(path, format!("line 1: {e}")))?,
        None => return Err(Error::format(path, "the file is empty")),
    };
    let width = first.len();
    let (names, mut pending): (Vec<String>, Option<csv::StringRecord>) = if header {
        (first.iter().map(str::to_string).collect(), None)
    } else {
        (
            (0..width).map(|i| format!("column_{i}")).collect(),
            Some(first),
        )
    };
    if width < 2 {
        return Err(Error::format(
            path,
            format!("needs at least two columns (features and a label), found {width}"),
        ));
    }
    check_header(path, &names)?;
    let label_col = match (label, label_index) {
        (Some(name), _) => names.iter().position(|n| n == name).ok_or_else(|| {
            Error::format(
                path,
                format!(
                    "no label column named '{name}' (columns: {})",
                    names.join(", ")
                ),
            )
        })?,
        (None, Some(i)) => {
            let idx = if i < 0 { width as i64 + i } else { i };
            if idx < 0 || idx >= width as i64 {
                return Err(Error::format(
                    path,
                    format!("label-index {i} is out of range for {width} columns"),
                ));
            }
            idx as usize
        }
        (None, None) => width - 1,
    };
    for (i, d) in drop.iter().enumerate() {
        if drop[..i].contains(d) {
            return Err(Error::format(path, format!("data.drop names '{d}' twice")));
        }
        if !names.contains(d) {
            return Err(Error::format(
                path,
                format!("data.drop names '{d}', which is not a column"),
            ));
        }
    }
    let keep: Vec<usize> = (0..width)
        .filter(|&i| i != label_col && !drop.contains(&names[i]))
        .collect();
    let mut table = Table {
        path: path.to_path_buf(),
        columns: keep.iter().map(|&i| names[i].clone()).collect(),
        rows: Vec::new(),
        label_name: names[label_col].clone(),
        labels: Vec::new(),
        lines: Vec::new(),
    };
    let mut line = if header { 1 } else { 0 };
    loop {
        let rec = match pending.take() {
            Some(r) => r,
            None => match records.next() {
                Some(r) => r.map_err(|e| Error::format(path, format!("line {}: {e}", line + 1)))?,
                None => break,
            },
        };
        line += 1;
        if rec.len() == 1 && rec.get(0) == Some("") {
            continue;
        }
        if rec.len() != width {
            return Err(Error::format(
                path,
                format!("line {line}: {} fields, the header has {width}", rec.len()),
            ));
        }
        let label = rec.get(label_col).unwrap_or_default();
        if label.is_empty() {
            return Err(Error::format(
                path,
                format!(
                    "line {line}: the label column '{}' is empty",
                    table.label_name
                ),
            ));
        }
        table.labels.push(label.to_string());
        table.rows.push(
            keep.iter()
                .map(|&i| rec.get(i).filter(|s| !s.is_empty()).map(str::to_string))
                .collect(),
        );
        table.lines.push(line);
    }
    if table.rows.is_empty() {
        return Err(Error::format(path, "no data rows"));
    }
    Ok(table)
}

/// Header names must be unique and non-empty: a duplicate would make `data.label`, `data.drop`
/// and `data.categorical` ambiguous and the preprocessor's column schema wrong.
fn check_header(path: &Path, names: &[String]) -> Result<()> {
    let mut seen = std::collections::HashMap::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(Error::format(
                path,
                format!("line 1: header column {} has no name", i + 1),
            ));
        }
        if let Some(first) = seen.insert(name.as_str(), i) {
            return Err(Error::format(
                path,
                format!(
                    "line 1: duplicate header column '{name}' (columns {} and {})",
                    first + 1,
                    i + 1
                ),
            ));
        }
    }
    Ok(())
}

/// Read a CSV file as the spec says (a regular file within [`MAX_FILE_BYTES`]).
pub fn load_table(path: &Path, spec: &DataSpec) -> Result<Table> {
    let (file, _) = open_file(path, MAX_FILE_BYTES)?;
    read_table(
        std::io::BufReader::new(file),
        path,
        spec.header,
        spec.label.as_deref(),
        spec.label_index,
        &spec.drop,
    )
}

/// Classification when labels are not numbers or are at most 20 distinct integers.
pub fn infer_task(labels: &[String]) -> Task {
    let mut distinct = std::collections::BTreeSet::new();
    for l in labels {
        match l.parse::<f64>() {
            Ok(v) if v.fract() == 0.0 => {
                distinct.insert(l.as_str());
            }
            Ok(_) => return Task::Regression,
            Err(_) => return Task::Classification,
        }
    }
    if distinct.len() <= 20 {
        Task::Classification
    } else {
        Task::Regression
    }
}

/// Sorted class names; numeric labels sort numerically.
pub fn class_names(labels: &[String]) -> Vec<String> {
    let mut names: Vec<String> = labels
        .iter()
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if names.iter().all(|n| n.parse::<f64>().is_ok()) {
        names.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap_or(0.0)
                .total_cmp(&b.parse::<f64>().unwrap_or(0.0))
        });
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, header: bool, label: Option<&str>) -> Result<Table> {
        read_table(
            text.as_bytes(),
            Path::new("t.csv"),
            header,
            label,
            None,
            &[],
        )
    }

    #[test]
    fn reads_header_label_and_missing_cells() {
        let t = parse("a,b,y\n1,,x\n2,3,y\n", true, Some("y")).unwrap();
        assert_eq!(t.columns, vec!["a", "b"]);
        assert_eq!(t.labels, vec!["x", "y"]);
        assert_eq!(t.rows[0], vec![Some("1".into()), None]);
        assert_eq!(t.lines, vec![2, 3]);
    }

    #[test]
    fn no_header_uses_last_column() {
        let t = parse("1,2,0\n3,4,1\n", false, None).unwrap();
        assert_eq!(t.columns, vec!["column_0", "column_1"]);
        assert_eq!(t.labels, vec!["0", "1"]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("a,b,y\n1,2\n", true, None).unwrap_err().to_string();
        assert!(e.contains("t.csv") && e.contains("line 2"), "{e}");
        let e = parse("a,b,y\n1,2,3\n", true, Some("z"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no label column named 'z'"), "{e}");
        assert!(parse("", true, None)
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }

    /// Finding 10 (issue 12): a duplicate or empty header name is refused naming the column;
    /// so is a column dropped twice. (Ragged rows and a missing label column already were.)
    #[test]
    fn duplicate_and_empty_header_names_are_refused() {
        let err = parse("a,b,a,label\n1,2,3,x\n", true, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.csv")
                && err.contains("duplicate header column 'a'")
                && err.contains("columns 1 and 3"),
            "{err}"
        );
        let err = parse("a,,label\n1,2,x\n", true, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("header column 2 has no name"), "{err}");
        let err = parse("a,b,label\n1,2\n", true, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("2 fields"), "{err}");
        let err = parse("a,b,x\n1,2,3\n", true, Some("label"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no label column named 'label'"), "{err}");
        let err = read_table(
            "a,b,label\n1,2,x\n".as_bytes(),
            Path::new("test.csv"),
            true,
            None,
            None,
            &["a".into(), "a".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("'a' twice"), "{err}");
        // Without a header the generated names are unique: duplicates in row 1 are data.
        assert!(parse("1,1,x\n2,2,y\n", false, None).is_ok());
    }

    #[test]
    fn task_inference() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(infer_task(&s(&["a", "b"])), Task::Classification);
        assert_eq!(infer_task(&s(&["0", "1", "1"])), Task::Classification);
        assert_eq!(infer_task(&s(&["0.5", "1"])), Task::Regression);
        let many: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        assert_eq!(infer_task(&many), Task::Regression);
        assert_eq!(class_names(&s(&["10", "9", "2"])), vec!["2", "9", "10"]);
    }
}
