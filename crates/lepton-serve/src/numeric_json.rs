//! The common JSON request, `{"inputs": [[n, n, ...], ...]}` of plain numbers, read straight into
//! `f32`s: no `serde_json::Value` per number and no second pass. Anything else (texts, `instances`,
//! a string among the numbers, a non-finite value, duplicate keys) is not read here: the caller
//! takes the general path through `Value`, which words every error with its exact path.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The numbers of every sample, concatenated, and where each sample ends in them.
#[derive(Debug, Default, PartialEq)]
pub struct NumericInputs {
    pub values: Vec<f32>,
    pub ends: Vec<usize>,
}

impl NumericInputs {
    /// The samples, one slice each.
    pub fn samples(&self) -> impl Iterator<Item = &[f32]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.values[a..b])
    }
}

/// `Some` when `bytes` is exactly the numeric form with at most `max_samples` samples; `None`
/// sends the request down the general path (which also reports a batch above the limit).
pub fn parse(bytes: &[u8], max_samples: usize) -> Option<NumericInputs> {
    let mut out = NumericInputs::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.deserialize_map(Body {
        out: &mut out,
        max_samples,
    })
    .ok()?;
    de.end().ok()?;
    (!out.ends.is_empty()).then_some(out)
}

/// Not the numeric form: the general path decides what the request means.
fn other<E: de::Error>() -> E {
    E::custom("not the numeric form")
}

struct Body<'a> {
    out: &'a mut NumericInputs,
    max_samples: usize,
}

impl<'de> Visitor<'de> for Body<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with 'inputs'")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "inputs" if !seen => {
                    seen = true;
                    map.next_value_seed(Samples {
                        out: &mut *self.out,
                        max_samples: self.max_samples,
                    })?;
                }
                // Both fields, or `inputs` twice: the general path's error.
                "inputs" | "instances" => return Err(other()),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if seen {
            Ok(())
        } else {
            Err(other())
        }
    }
}

struct Samples<'a> {
    out: &'a mut NumericInputs,
    max_samples: usize,
}

impl<'de> DeserializeSeed<'de> for Samples<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Samples<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of samples")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Numbers(&mut self.out.values))?
            .is_some()
        {
            self.out.ends.push(self.out.values.len());
            if self.out.ends.len() > self.max_samples {
                return Err(other());
            }
        }
        Ok(())
    }
}

/// A number or nested arrays of numbers, appended in order.
struct Numbers<'a>(&'a mut Vec<f32>);

impl<'de> DeserializeSeed<'de> for Numbers<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Numbers<'_> {
    fn push<E: de::Error>(self, x: f64) -> Result<(), E> {
        let x = x as f32;
        if !x.is_finite() {
            return Err(other());
        }
        self.0.push(x);
        Ok(())
    }
}

impl<'de> Visitor<'de> for Numbers<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("numbers")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(v as f64)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Numbers(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_everything_else_to_the_general_path() {
        for body in [
            r#"{"instances": [{"a": 1}]}"#,
            r#"{"inputs": [[1]], "instances": []}"#,
            r#"{"inputs": [[1]], "inputs": [[2]]}"#,
            r#"{"inputs": ["some text"]}"#,
            r#"{"inputs": [[1, "2"]]}"#,
            r#"{"inputs": [[1, null]]}"#,
            r#"{"inputs": [[1e39]]}"#,
            r#"{"inputs": [{"a": 1}]}"#,
            r#"{"inputs": []}"#,
            r#"{"inputs": 3}"#,
            r#"{"inputs": [[1]]} trailing"#,
            r#"[[1, 2]]"#,
            r#"{"inputs": [[1], [2], [3]]}"#,
        ] {
            let max = 2;
            assert_eq!(parse(body.as_bytes(), max), None, "{body}");
        }
    }
}
