//! Request bodies to features: JSON arrays or named columns, images (raw body or multipart),
//! all checked against the limits before any heavy work.

use serde_json::Value;

use crate::backend::Backend;
use crate::config::Limits;
use crate::error::ApiError;
use crate::numeric_json;

/// Nesting depth of a JSON document, scanned without parsing (strings skipped).
pub fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Refuse a body nested deeper than the limit, before any parsing.
fn check_depth(bytes: &[u8], limits: &Limits) -> Result<(), ApiError> {
    let d = json_depth(bytes);
    if d > limits.max_json_depth {
        return Err(ApiError::BadRequest(format!(
            "JSON nesting depth {d} exceeds the limit of {}",
            limits.max_json_depth
        )));
    }
    Ok(())
}

/// Parse a JSON body after the depth check.
pub fn parse_json(bytes: &[u8], limits: &Limits) -> Result<Value, ApiError> {
    check_depth(bytes, limits)?;
    parse_checked(bytes)
}

/// Parse a JSON body whose depth was checked.
fn parse_checked(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))
}

/// Append the numbers of `v` (a number or nested arrays of numbers) to `out`. On an error,
/// `at` holds the indices of the offending element below the sample, so the path is formatted
/// only then (a per-number path string was a tenth of a JSON request's server time).
fn flatten_numbers(v: &Value, out: &mut Vec<f32>, at: &mut Vec<usize>) -> Result<(), String> {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(x) if (x as f32).is_finite() => {
                out.push(x as f32);
                Ok(())
            }
            Some(_) => Err("not a finite 32-bit float".into()),
            None => Err("not a number".into()),
        },
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                at.push(i);
                flatten_numbers(x, out, at)?;
                at.pop();
            }
            Ok(())
        }
        other => Err(format!(
            "expected a number or an array of numbers, got {}",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The features of a JSON prediction body. The common numeric form is read straight into numbers
/// ([`numeric_json`]); every other form (and every error) goes through [`json_features`]. `log`
/// sees the parsed body when payload logging wants it (then the general path is taken).
pub fn body_features(
    bytes: &[u8],
    backend: &dyn Backend,
    limits: &Limits,
    log: Option<&dyn Fn(&Value)>,
) -> Result<(Vec<f32>, usize), ApiError> {
    check_depth(bytes, limits)?;
    if log.is_none() {
        if let Some(inputs) = numeric_json::parse(bytes, limits.max_batch_inputs) {
            let mut features = Vec::with_capacity(inputs.values.len());
            for (i, raw) in inputs.samples().enumerate() {
                let f = backend
                    .raw_features(raw)
                    .map_err(|e| crate::llm::input_error(&format!("inputs[{i}]"), e))?;
                features.extend(f);
            }
            return Ok((features, inputs.ends.len()));
        }
    }
    let body = parse_checked(bytes)?;
    if let Some(log) = log {
        log(&body);
    }
    json_features(&body, backend, limits)
}

/// `{"inputs": [[...], ...]}` (raw numbers per sample, or token ids for a text model),
/// `{"inputs": ["text", ...]}` (text models) or `{"instances": [{"column": value}, ...]}`.
/// Returns the concatenated features and the sample count.
pub fn json_features(
    body: &Value,
    backend: &dyn Backend,
    limits: &Limits,
) -> Result<(Vec<f32>, usize), ApiError> {
    let obj = body.as_object().ok_or_else(|| {
        ApiError::Unprocessable("body: expected a JSON object with 'inputs' or 'instances'".into())
    })?;
    let (items, field) = match (obj.get("inputs"), obj.get("instances")) {
        (Some(v), None) => (v, "inputs"),
        (None, Some(v)) => (v, "instances"),
        (Some(_), Some(_)) => {
            return Err(ApiError::Unprocessable(
                "body: give either 'inputs' or 'instances', not both".into(),
            ))
        }
        (None, None) => return Err(ApiError::Unprocessable(
            "body: missing 'inputs' (arrays of numbers) or 'instances' (objects of named values)"
                .into(),
        )),
    };
    let items = items
        .as_array()
        .ok_or_else(|| ApiError::Unprocessable(format!("{field}: expected an array of samples")))?;
    if items.is_empty() {
        return Err(ApiError::Unprocessable(format!("{field}: no samples")));
    }
    if items.len() > limits.max_batch_inputs {
        return Err(ApiError::PayloadTooLarge(format!(
            "{field}: {} samples, the limit is {}",
            items.len(),
            limits.max_batch_inputs
        )));
    }
    let mut features = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{field}[{i}]");
        let f = if let (Value::String(text), "inputs") = (item, field) {
            if text.is_empty() {
                return Err(ApiError::Unprocessable(format!(
                    "{path}: the text is empty"
                )));
            }
            backend.text_features(text)
        } else if field == "inputs" {
            let (mut raw, mut at) = (Vec::new(), Vec::new());
            flatten_numbers(item, &mut raw, &mut at).map_err(|m| {
                let idx: String = at.iter().map(|i| format!("[{i}]")).collect();
                ApiError::Unprocessable(format!("{path}{idx}: {m}"))
            })?;
            backend.raw_features(&raw)
        } else {
            let o = item.as_object().ok_or_else(|| {
                ApiError::Unprocessable(format!("{path}: expected an object of column values"))
            })?;
            let mut row = Vec::with_capacity(o.len());
            for (k, v) in o {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Null => String::new(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(ApiError::Unprocessable(format!(
                            "{path}.{k}: expected a number or a string, got {}",
                            kind(other)
                        )))
                    }
                };
                row.push((k.clone(), s));
            }
            backend.row_features(&row)
        }
        .map_err(|e| crate::llm::input_error(&path, e))?;
        features.extend(f);
    }
    Ok((features, items.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The samples of a `{"inputs": [...]}` body as the general path reads them.
    fn general_numbers(body: &str) -> Vec<Vec<f32>> {
        let v: Value = serde_json::from_str(body).unwrap();
        v["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                let mut out = Vec::new();
                flatten_numbers(item, &mut out, &mut Vec::new()).unwrap();
                out
            })
            .collect()
    }

    #[test]
    fn reads_the_numeric_form_like_the_general_path() {
        for body in [
            r#"{"inputs": [[1, 2.5, -3e2], [4, 5, 6]]}"#,
            r#"{"model": "x", "inputs": [[[0, 255], [7, 8]]], "top_k": 3}"#,
            r#"{"inputs": [1.5, 2]}"#,
            r#"{"inputs": [[18446744073709551615, -9223372036854775808, 1e-40]]}"#,
        ] {
            let fast = numeric_json::parse(body.as_bytes(), 64).unwrap_or_else(|| panic!("{body}"));
            let general = general_numbers(body);
            let samples: Vec<Vec<f32>> = fast.samples().map(<[f32]>::to_vec).collect();
            assert_eq!(samples, general, "{body}");
        }
    }

    #[test]
    fn a_bad_number_is_named_by_its_full_path() {
        let v: Value = serde_json::from_str(r#"[[1, 2], [3, "x"]]"#).unwrap();
        let mut at = Vec::new();
        let e = flatten_numbers(&v, &mut Vec::new(), &mut at).unwrap_err();
        assert_eq!(at, [1, 1]);
        assert!(e.contains("got a string"), "{e}");
    }

    #[test]
    fn depth_scanner_skips_strings() {
        assert_eq!(json_depth(br#"{"a": [[1], "[[[["]}"#), 3);
        assert_eq!(json_depth(br#""\"[""#), 0);
    }
}
