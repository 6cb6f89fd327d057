//! The tensor datatypes of the Open Inference Protocol v2 and their decoding to `f32`, from JSON
//! `data` or little-endian binary, with each datatype's own rules: integers must be integers
//! within their type's range (INT8 = 1000.5 is refused, not truncated), BOOL is `true`/`false`
//! in JSON and byte 0 or 1 in binary, FP16 JSON values must fit FP16, and the binary forms of
//! FP16/BF16 decode exactly (NaN and infinities are refused with the value's index).

use serde_json::Value;

use crate::error::ApiError;

/// A v2 datatype (`BYTES` is not one: this server takes numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    Bf16,
    F32,
    F64,
}

impl DataType {
    /// Parse a `datatype` field; `what` names the tensor.
    pub fn parse(s: &str, what: &str) -> Result<Self, ApiError> {
        Ok(match s {
            "BOOL" => DataType::Bool,
            "UINT8" => DataType::U8,
            "UINT16" => DataType::U16,
            "UINT32" => DataType::U32,
            "UINT64" => DataType::U64,
            "INT8" => DataType::I8,
            "INT16" => DataType::I16,
            "INT32" => DataType::I32,
            "INT64" => DataType::I64,
            "FP16" => DataType::F16,
            "BF16" => DataType::Bf16,
            "FP32" => DataType::F32,
            "FP64" => DataType::F64,
            other => {
                return Err(ApiError::Unprocessable(format!(
                    "{what}: datatype {other} is not supported (BOOL, UINT8-64, INT8-64, FP16, BF16, FP32, FP64)"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::Bf16 => "BF16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
        }
    }

    /// Bytes per element in the binary form.
    pub fn size(self) -> usize {
        match self {
            DataType::Bool | DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 | DataType::F16 | DataType::Bf16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::U64 | DataType::I64 | DataType::F64 => 8,
        }
    }

    /// The inclusive range of an integer type.
    fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            DataType::U8 => (0, u8::MAX as i128),
            DataType::U16 => (0, u16::MAX as i128),
            DataType::U32 => (0, u32::MAX as i128),
            DataType::U64 => (0, u64::MAX as i128),
            DataType::I8 => (i8::MIN as i128, i8::MAX as i128),
            DataType::I16 => (i16::MIN as i128, i16::MAX as i128),
            DataType::I32 => (i32::MIN as i128, i32::MAX as i128),
            DataType::I64 => (i64::MIN as i128, i64::MAX as i128),
            _ => return None,
        })
    }

    /// Decode the binary form (`bytes.len()` must be a multiple of [`Self::size`]).
    pub fn from_binary(self, bytes: &[u8], what: &str) -> Result<Vec<f32>, ApiError> {
        let size = self.size();
        if bytes.len() % size != 0 {
            return Err(ApiError::Unprocessable(format!(
                "{what}: {} bytes is not a multiple of the {size}-byte {}",
                bytes.len(),
                self.name()
            )));
        }
        let mut out = Vec::with_capacity(bytes.len() / size);
        for (i, c) in bytes.chunks_exact(size).enumerate() {
            let v = match self {
                DataType::Bool => match c[0] {
                    0 => 0.0,
                    1 => 1.0,
                    b => {
                        return Err(ApiError::Unprocessable(format!(
                            "{what}: BOOL value {i} is byte {b}, not 0 or 1"
                        )))
                    }
                },
                DataType::U8 => c[0] as f32,
                DataType::I8 => c[0] as i8 as f32,
                DataType::U16 => u16::from_le_bytes([c[0], c[1]]) as f32,
                DataType::I16 => i16::from_le_bytes([c[0], c[1]]) as f32,
                DataType::F16 => f16_to_f32(u16::from_le_bytes([c[0], c[1]])),
                DataType::Bf16 => f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16),
                DataType::U32 => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32,
                DataType::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32,
                DataType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                DataType::U64 => u64::from_le_bytes(c.try_into().expect("8 bytes")) as f32,
                DataType::I64 => i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32,
                DataType::F64 => f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32,
            };
            out.push(v);
        }
        Ok(out)
    }

    /// Decode JSON `data` (a flat or nested array, row-major) into `out`.
    pub fn from_json(self, v: &Value, out: &mut Vec<f32>, what: &str) -> Result<(), ApiError> {
        match v {
            Value::Array(a) => a.iter().try_for_each(|x| self.from_json(x, out, what)),
            Value::Bool(b) if self == DataType::Bool => {
                out.push(if *b { 1.0 } else { 0.0 });
                Ok(())
            }
            Value::Number(n) if self != DataType::Bool => {
                let i = out.len();
                let bad =
                    |msg: String| ApiError::Unprocessable(format!("{what}: value {i} ({n}) {msg}"));
                if let Some((lo, hi)) = self.int_range() {
                    let x = n
                        .as_i64()
                        .map(i128::from)
                        .or_else(|| n.as_u64().map(i128::from))
                        .ok_or_else(|| {
                            bad(format!("is not an integer, as {} needs", self.name()))
                        })?;
                    if x < lo || x > hi {
                        return Err(bad(format!(
                            "is outside the {} range [{lo}, {hi}]",
                            self.name()
                        )));
                    }
                    out.push(x as f32);
                } else {
                    let x = n.as_f64().ok_or_else(|| bad("is not a number".into()))?;
                    if self == DataType::F16 && x.abs() > 65504.0 {
                        return Err(bad("is outside the FP16 range [-65504, 65504]".into()));
                    }
                    out.push(x as f32);
                }
                Ok(())
            }
            other => Err(ApiError::Unprocessable(format!(
                "{what}: data must be {}, got {other}",
                if self == DataType::Bool {
                    "true/false for BOOL"
                } else {
                    "numbers"
                }
            ))),
        }
    }
}

/// IEEE 754 half precision to f32, exactly (NaN stays NaN, so the finiteness check names it).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 if frac == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn json_err(t: DataType, v: Value) -> String {
        t.from_json(&v, &mut Vec::new(), "x")
            .unwrap_err()
            .to_string()
    }

    /// Issue 12 finding 10: INT8 = 1000.5 and BOOL = 255 were accepted.
    #[test]
    fn integers_must_be_integers_in_range() {
        assert!(json_err(DataType::I8, json!([1, 1000.5]))
            .contains("value 1 (1000.5) is not an integer"));
        assert!(json_err(DataType::I8, json!([128])).contains("outside the INT8 range [-128, 127]"));
        assert!(json_err(DataType::U8, json!([-1])).contains("UINT8 range"));
        assert!(json_err(DataType::Bool, json!([255])).contains("true/false"));
        assert!(json_err(DataType::F16, json!([70000.0])).contains("FP16 range"));
        let mut out = Vec::new();
        DataType::I8
            .from_json(&json!([[-128, 127]]), &mut out, "x")
            .unwrap();
        DataType::Bool
            .from_json(&json!([true, false]), &mut out, "x")
            .unwrap();
        DataType::U64
            .from_json(&json!([u64::MAX]), &mut out, "x")
            .unwrap();
        assert_eq!(&out[..4], &[-128.0, 127.0, 1.0, 0.0]);
        let e = DataType::Bool
            .from_binary(&[0, 1, 255], "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("BOOL value 2 is byte 255"), "{e}");
    }

    #[test]
    fn half_floats_decode_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
        // BF16 is the top half of an f32.
        let b = DataType::Bf16
            .from_binary(&[0x80, 0x3f, 0xc0, 0x7f], "x")
            .unwrap();
        assert_eq!(b[0], 1.0);
        assert!(b[1].is_nan());
        assert!(DataType::parse("BYTES", "x")
            .unwrap_err()
            .to_string()
            .contains("not supported"));
    }
}
