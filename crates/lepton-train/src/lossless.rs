//! Lossless `f64` fields in JSON state files.
//!
//! serde_json's default float parser may come back one ULP off (`0.9868995633187773` was read as
//! `…772`), and it writes NaN and infinities as `null`, which then fails to parse as `f64`. State
//! that must survive a restart bit for bit therefore stores each `f64` as a string holding Rust's
//! shortest round-trip form (`"0.9868995633187773"`, `"NaN"`, `"inf"`, `"-0"`), which
//! [`str::parse`] reads back exactly. A plain JSON number is still accepted when reading (files of
//! checkpoint format 1).
//!
//! Use with `#[serde(with = "crate::lossless::f64")]` or `crate::lossless::option_f64`.

use serde::{Deserialize, Deserializer, Serializer};

/// A float as written by format 2 (string) or format 1 (number).
#[derive(Deserialize)]
#[serde(untagged)]
enum Repr {
    Text(String),
    Number(f64),
}

impl Repr {
    fn value<E: serde::de::Error>(self) -> Result<f64, E> {
        match self {
            Repr::Number(v) => Ok(v),
            Repr::Text(s) => s
                .parse::<f64>()
                .map_err(|_| E::custom(format!("`{s}` is not a floating-point number"))),
        }
    }
}

/// `f64` <-> exact string.
pub mod f64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Repr::deserialize(d)?.value()
    }
}

/// `Option<f64>` <-> exact string or `null`.
pub mod option_f64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<Repr>::deserialize(d)?.map(Repr::value).transpose()
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize)]
    struct Exact {
        #[serde(with = "super::f64")]
        v: f64,
        #[serde(with = "super::option_f64")]
        o: Option<f64>,
    }

    /// Deterministic bit patterns: the issue's value, specials and an LCG over the finite range.
    fn samples() -> Vec<f64> {
        let mut out = vec![
            0.9868995633187773,
            0.1,
            -0.0,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = f64::from_bits(s);
            if v.is_finite() {
                out.push(v);
            }
            // Metric-like values in [0, 1).
            out.push((s >> 11) as f64 / (1u64 << 53) as f64);
        }
        out
    }

    #[test]
    fn every_float_round_trips_bit_for_bit() {
        for v in samples() {
            let json = serde_json::to_string(&Exact { v, o: Some(v) }).unwrap();
            let back: Exact = serde_json::from_str(&json).unwrap();
            assert_eq!(
                back.v.to_bits(),
                v.to_bits(),
                "{v:?} came back as {:?}",
                back.v
            );
            assert_eq!(back.o.map(f64::to_bits), Some(v.to_bits()), "{json}");
        }
        let none: Exact = serde_json::from_str(r#"{"v": "1", "o": null}"#).unwrap();
        assert_eq!(none.o, None);
    }

    #[test]
    fn format_1_numbers_are_still_read_and_garbage_is_refused() {
        let old: Exact = serde_json::from_str(r#"{"v": 0.5, "o": 2}"#).unwrap();
        assert_eq!((old.v, old.o), (0.5, Some(2.0)));
        let err = serde_json::from_str::<Exact>(r#"{"v": "fast", "o": null}"#).unwrap_err();
        assert!(err.to_string().contains("`fast`"), "{err}");
    }
}
