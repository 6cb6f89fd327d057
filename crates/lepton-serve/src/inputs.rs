//! Request bodies to features: JSON arrays or named columns, images (raw body or multipart),
//! all checked against the limits before any heavy work.

use serde_json::Value;

use crate::backend::Backend;
use crate::config::Limits;
use crate::error::ApiError;

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

/// Parse a JSON body after the depth check.
pub fn parse_json(bytes: &[u8], limits: &Limits) -> Result<Value, ApiError> {
    let d = json_depth(bytes);
    if d > limits.max_json_depth {
        return Err(ApiError::BadRequest(format!(
            "JSON nesting depth {d} exceeds the limit of {}",
            limits.max_json_depth
        )));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))
}

fn flatten_numbers(v: &Value, out: &mut Vec<f32>, path: &str) -> Result<(), ApiError> {
    match v {
        Value::Number(n) => {
            let x = n
                .as_f64()
                .ok_or_else(|| ApiError::Unprocessable(format!("{path}: not a number")))?;
            if !(x as f32).is_finite() {
                return Err(ApiError::Unprocessable(format!(
                    "{path}: not a finite 32-bit float"
                )));
            }
            out.push(x as f32);
            Ok(())
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| flatten_numbers(x, out, &format!("{path}[{i}]"))),
        other => Err(ApiError::Unprocessable(format!(
            "{path}: expected a number or an array of numbers, got {}",
            kind(other)
        ))),
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
            let mut raw = Vec::new();
            flatten_numbers(item, &mut raw, &path)?;
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

    #[test]
    fn depth_scanner_skips_strings() {
        assert_eq!(json_depth(br#"{"a": [[1], "[[[["]}"#), 3);
        assert_eq!(json_depth(br#""\"[""#), 0);
    }
}
