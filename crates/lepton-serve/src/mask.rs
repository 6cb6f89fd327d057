//! Masking of logged payloads: e-mail addresses, runs of four or more digits, and the values of
//! configured JSON keys.

use serde_json::Value;

/// Mask e-mail addresses and runs of 4+ digits in a string.
pub fn mask_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_inclusive(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '"') {
        let (body, tail) = word.split_at(
            word.trim_end_matches(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '"')
                .len(),
        );
        if body.contains('@') && body.rsplit('@').next().is_some_and(|d| d.contains('.')) {
            out.push_str("***@***");
        } else {
            let mut run = 0;
            let mut buf = String::new();
            for ch in body.chars() {
                if ch.is_ascii_digit() {
                    run += 1;
                    buf.push(ch);
                } else {
                    out.push_str(&if run >= 4 {
                        "*".repeat(run)
                    } else {
                        std::mem::take(&mut buf)
                    });
                    buf.clear();
                    run = 0;
                    out.push(ch);
                }
            }
            out.push_str(&if run >= 4 { "*".repeat(run) } else { buf });
        }
        out.push_str(tail);
    }
    out
}

/// Mask a JSON value: configured keys entirely, strings by [`mask_text`], long numbers.
pub fn mask_json(v: &Value, keys: &[String]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        if keys.iter().any(|x| x == k) {
                            Value::String("***".into())
                        } else {
                            mask_json(v, keys)
                        },
                    )
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| mask_json(v, keys)).collect()),
        Value::String(s) => Value::String(mask_text(s)),
        Value::Number(n) if n.to_string().chars().filter(char::is_ascii_digit).count() >= 4 => {
            Value::String("****".into())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_emails_digits_and_keys() {
        assert_eq!(mask_text("mail bob@example.com now"), "mail ***@*** now");
        assert_eq!(
            mask_text("card 4111111111111111, pin 12"),
            "card ****************, pin 12"
        );
        let v = serde_json::json!({"name": "Ann", "ssn": "x", "note": "call 5551234", "n": 123456});
        let m = mask_json(&v, &["ssn".to_string()]);
        assert_eq!(
            m,
            serde_json::json!({"name": "Ann", "ssn": "***", "note": "call *******", "n": "****"})
        );
    }
}
